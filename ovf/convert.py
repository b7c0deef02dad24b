"""Disk images of OVF packages: stream them out of the package, convert them with qemu-img.

Import: a disk file is copied out of the package (OVA member, folder file, gzip-compressed or
chunked) to a temporary file in fixed-size blocks, never held in memory, and hashed on the way
so that what is converted is exactly what the manifest vouched for. Its format is taken from
the file's magic bytes (the descriptor's format URI is only a cross-check), and anything that
is not raw is converted with ``qemu-img convert -O raw`` (Debian qemu-utils): streamOptimized
or sparse VMDK, qcow2, VHD/VHDX. Every image is inspected first (``ovf.diskcheck``): one that
would make qemu-img open other host files (a backing file, a qcow2 data file, a VMDK with a
separate descriptor or extents) or whose virtual size is beyond the cap is refused. Images
written are 0600.

Export: ``raw_to_vmdk`` writes a streamOptimized VMDK with qemu-img.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ediv.errors import EdivError, InputError

from . import envelope as m
from .diskcheck import check_image, format_of, source_args
from .package import Package
from .stream import open_file

BLOCK = 1 << 20
QEMU_IMG_TIMEOUT = 3600
VMDK_STREAM_URI = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
RAW_URI = "http://en.wikipedia.org/wiki/Byte"  # raw images, as oVirt/RHV write it
QCOW2_URI = "http://www.gnome.org/~markmc/qcow-image-format.html"

@dataclass
class ExtractedFile:
    path: Path
    size: int
    digests: dict[str, str]  # manifest algorithm name ("SHA256") -> hex, of the *stored* bytes


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise EdivError("qemu-img not found: converting disk images needs it "
                        "(apt-get install qemu-utils)")
    return path


def format_from_uri(uri: str | None) -> str | None:
    """qemu-img format an OVF ``Disk@format`` URI names, or None when it says nothing known."""
    if not uri:
        return None
    low = uri.lower()
    if "vmdk" in low:
        return "vmdk"
    if "qcow" in low:
        return "qcow2"
    if "vhdx" in low:
        return "vhdx"
    if "bb676673" in low or low.endswith(".vhd") or "#vhd" in low:
        return "vpc"
    if low.endswith(("wiki/byte", "#raw", "/raw")):
        return "raw"
    return None


def detect_format(path: Path) -> str:
    """qemu-img format from the file's first bytes; "raw" when no known header is there."""
    with path.open("rb") as f:
        return format_of(f.read(512))


def extract_file(pkg: Package, ref: m.FileRef, dest: Path,
                 algorithms: tuple[str, ...] = ("SHA256",)) -> ExtractedFile:
    """Copy the package file ``ref`` to ``dest`` (chunks joined, then decompressed, as
    ``ovf.stream`` reads it), streaming; ``dest`` is created private (0600).

    ``digests`` are of the stored bytes (what a manifest lists), keyed ``"ALG:member"`` for
    every stored member (the file itself, or each of its chunks).
    """
    with open_file(pkg, ref, algorithms) as plain, _private_file(dest) as out:
        size = _copy(plain, out)
    digests = {f"{alg}:{member}": hexdigest for member, per in plain.digests.items()
               for alg, hexdigest in per.items()}
    return ExtractedFile(dest, size, digests)


def _private_file(path: Path) -> BinaryIO:
    """A new file only its owner can read (disk images are private data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def to_raw(src: Path, dest: Path, declared: str | None = None,
           warnings: list[str] | None = None) -> str:
    """Write ``src`` as a raw image at ``dest``; returns the source format.

    A raw source is moved (or copied) as is; anything else goes through ``qemu-img convert``.
    The output appears under its name only when complete.
    """
    fmt = detect_format(src)
    if fmt == "vmdk-descriptor":
        check_image(src, "vmdk")  # refuses it, with the reason
    hinted = format_from_uri(declared)
    if hinted is not None and hinted != fmt and warnings is not None:
        warnings.append(f"disk format URI {declared!r} says {hinted}, the file is {fmt}; "
                        f"converted as {fmt}")
    partial = dest.with_name(dest.name + ".partial")
    check_image(src, fmt)
    try:
        if fmt == "raw":
            shutil.copyfile(src, partial)
        else:
            _run([qemu_img(), "convert", "-q", *source_args(src, fmt), "-O", "raw",
                  str(partial)], f"converting the {fmt} disk to raw")
        os.chmod(partial, 0o600)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return fmt


def raw_to_vmdk(src: Path, dest: Path) -> None:
    """A streamOptimized VMDK of the raw image ``src`` (the format OVF consumers expect)."""
    partial = dest.with_name(dest.name + ".partial")
    try:
        _run([qemu_img(), "convert", "-q", "-f", "raw", "-O", "vmdk", "-o",
              "subformat=streamOptimized", str(src), str(partial)],
             "converting the raw disk to a streamOptimized VMDK")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def _run(argv: list[str], what: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        raise EdivError(f"{what}: qemu-img did not finish in {QEMU_IMG_TIMEOUT} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(f"{what} failed: {detail[-1] if detail else 'qemu-img failed'}",
                         argv[-1])
    return proc.stdout


def _copy(src: BinaryIO, out: BinaryIO) -> int:
    total = 0
    while True:
        block = src.read(BLOCK)
        if not block:
            return total
        out.write(block)
        total += len(block)
