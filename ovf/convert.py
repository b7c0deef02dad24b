"""Disk images of OVF packages: stream them out of the package, convert them with qemu-img.

Import: a disk file is copied out of the package (OVA member, folder file, gzip-compressed or
chunked) in one pass of large blocks, never held in memory, and hashed on the way so that what
is converted is exactly what the manifest vouched for (the importer defers the manifest check
of disk files to this pass, so the package is read once). Blocks of zeros are not written but
skipped (a sparse file), so a raw disk costs only its data; a raw disk is then renamed into
place, not copied. Its format is taken from
the file's magic bytes (the descriptor's format URI is only a cross-check), and anything that
is not raw is converted with ``qemu-img convert -O raw`` (Debian qemu-utils): streamOptimized
or sparse VMDK, qcow2, VHD/VHDX. Images that would make qemu-img open other host files (a
qcow2 backing file, a VMDK with a separate descriptor or extents) are refused.

Export: ``raw_to_vmdk`` writes a streamOptimized VMDK with qemu-img.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ediv.errors import EdivError, InputError

from . import envelope as m
from .package import Package

BLOCK = 1 << 18  # 256 KiB: few system calls, and the block stays in the CPU cache
SPARSE_BLOCK = 1 << 16  # zero runs of this size become holes in the written file
_ZERO = bytes(SPARSE_BLOCK)
QEMU_IMG_TIMEOUT = 3600
VMDK_STREAM_URI = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
RAW_URI = "http://en.wikipedia.org/wiki/Byte"  # raw images, as oVirt/RHV write it
QCOW2_URI = "http://www.gnome.org/~markmc/qcow-image-format.html"

# magic bytes -> qemu-img format name
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"KDMV", "vmdk"),
    (0, b"QFI\xfb", "qcow2"),
    (0, b"conectix", "vpc"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"<<< Oracle VM VirtualBox Disk Image >>>", "vdi"),
    (0, b"# Disk DescriptorFile", "vmdk-descriptor"),
)


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
        head = f.read(512)
    for offset, magic, fmt in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return fmt
    return "raw"


def extract_file(pkg: Package, ref: m.FileRef, dest: Path,
                 algorithms: tuple[str, ...] = ("SHA256",)) -> ExtractedFile:
    """Copy the package file ``ref`` to ``dest`` (decompressed, chunks joined), streaming.

    ``digests`` are of the stored bytes (what a manifest lists), per stored member; for a
    chunked file they are keyed ``"ALG:member"``.
    """
    target = pkg.resolve(ref.href)
    if target is None:
        raise InputError(f"file {ref.id!r}: href {ref.href!r} is external or leaves the "
                         "package; refused", pkg.source)
    members = pkg.chunks(target) if ref.chunk_size else []
    if not members:
        found = pkg.find(target)
        if found is None:
            raise InputError(f"file {ref.id!r} ({ref.href}) is not in the package", pkg.source)
        members = [found]
    digests: dict[str, str] = {}
    size = 0
    buf = bytearray(BLOCK)
    with open(dest, "wb", opener=_private) as out:
        for member in members:
            hashers = {alg: hashlib.new(alg.lower()) for alg in algorithms}
            with pkg.open(member) as stored:
                if ref.compression == "gzip":
                    tee = _HashingReader(stored, hashers)
                    with gzip.GzipFile(fileobj=tee, mode="rb") as plain:
                        size += _copy(plain, out, buf)
                    tee.drain()
                else:
                    size += _copy(stored, out, buf, list(hashers.values()))
            for alg, h in hashers.items():
                key = alg if len(members) == 1 else f"{alg}:{member}"
                digests[key] = h.hexdigest()
        out.truncate()  # the file ends at the last byte, even after a trailing hole
    return ExtractedFile(dest, size, digests)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def to_raw(src: Path, dest: Path, declared: str | None = None,
           warnings: list[str] | None = None, *, move: bool = False) -> str:
    """Write ``src`` as a raw image at ``dest``; returns the source format.

    A raw source is copied as is (renamed when ``move``: ``src`` is a temporary file on the
    same filesystem); anything else goes through ``qemu-img convert``, which writes zeros as
    holes. The output appears under its name only when complete.
    """
    fmt = detect_format(src)
    if fmt == "vmdk-descriptor":
        raise InputError("disk is a VMDK text descriptor that refers to other files "
                         "(monolithicFlat/split); only single-file VMDKs are accepted",
                         str(src))
    hinted = format_from_uri(declared)
    if hinted is not None and hinted != fmt and warnings is not None:
        warnings.append(f"disk format URI {declared!r} says {hinted}, the file is {fmt}; "
                        f"converted as {fmt}")
    partial = dest.with_name(dest.name + ".partial")
    try:
        if fmt == "raw" and move:
            os.replace(src, partial)
        elif fmt == "raw":
            shutil.copyfile(src, partial)
        else:
            _refuse_external_files(src, fmt)
            _run([qemu_img(), "convert", "-q", "-f", fmt, "-O", "raw", str(src), str(partial)],
                 f"converting the {fmt} disk to raw")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return fmt


def raw_to_vmdk(src: Path, dest: Path) -> None:
    """A streamOptimized VMDK of the raw image ``src`` (the format OVF consumers expect).

    The image is opened without qemu's locks (``file.locking=off``): a deployed UML VM
    holds a POSIX lock on it (ubd), which qemu's own locks (even with ``-U``) conflict
    with ("Failed to lock byte 100"); the VM only reads it when it has a COW file."""
    partial = dest.with_name(dest.name + ".partial")
    opts = ("driver=raw,file.driver=file,file.locking=off,file.filename="
            + str(src).replace(",", ",,"))
    try:
        _run([qemu_img(), "convert", "-q", "--image-opts", opts, "-O", "vmdk", "-o",
              "subformat=streamOptimized", str(partial)],
             "converting the raw disk to a streamOptimized VMDK")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def copy_sparse(src: Path, dest: Path) -> int:
    """Copy the file ``src`` to ``dest`` (0600), zero blocks as holes; its size."""
    with src.open("rb") as f, open(dest, "wb", opener=_private) as out:
        size = _copy(f, out, bytearray(BLOCK))
        out.truncate()
    return size


def image_info(path: Path, fmt: str) -> dict:
    out = _run([qemu_img(), "info", "--output=json", "-f", fmt, str(path)],
               f"reading the {fmt} header")
    try:
        return json.loads(out)
    except ValueError:
        raise InputError(f"qemu-img info gave unreadable output for {path}", str(path)) from None


def _refuse_external_files(path: Path, fmt: str) -> None:
    info = image_info(path, fmt)
    backing = info.get("backing-filename") or info.get("full-backing-filename")
    if backing:
        raise InputError(f"the {fmt} disk names a backing file {backing!r}: refused (it would "
                         "read a file of this machine)", str(path))
    data = (info.get("format-specific") or {}).get("data") or {}
    for extent in data.get("extents", []):
        name = extent.get("filename")
        if name and os.path.realpath(name) != os.path.realpath(path):
            raise InputError(f"the {fmt} disk has an extent in another file {name!r}: refused",
                             str(path))


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


def _copy(src: BinaryIO, out: BinaryIO, buf: bytearray,
          hashers: list[hashlib._Hash] = ()) -> int:
    """Copy ``src`` to ``out`` through ``buf``, hashing what is read and seeking over
    blocks of zeros (the caller truncates ``out`` at the end). Cache-sized blocks, one
    thread: reading, hashing and the zero check then touch the data while it is in the CPU
    cache (a second hashing thread on 4 MiB blocks cost 30% more CPU and, on a loaded
    machine, more time)."""
    view = memoryview(buf)
    readinto = getattr(src, "readinto", None)
    total = 0
    while True:
        if readinto is not None:
            n = readinto(buf)
        else:
            block = src.read(len(buf))
            n = len(block)
            buf[:n] = block
        if not n:
            return total
        for h in hashers:
            h.update(view[:n])
        _write_sparse(out, buf, view, n)
        total += n


def _write_sparse(out: BinaryIO, buf: bytearray, view: memoryview, n: int) -> None:
    """Write ``buf[:n]``, runs of data in one write each, whole zero blocks as holes."""
    start: int | None = None  # beginning of the pending run of data
    pos = 0
    while pos < n:
        end = min(pos + SPARSE_BLOCK, n)
        if end - pos == SPARSE_BLOCK and buf.startswith(_ZERO, pos):
            if start is not None:
                out.write(view[start:pos])
                start = None
            out.seek(SPARSE_BLOCK, os.SEEK_CUR)
        elif start is None:
            start = pos
        pos = end
    if start is not None:
        out.write(view[start:n])


class _HashingReader:
    """A read-only stream that hashes what passes through it (for gzip's reads too)."""

    def __init__(self, stream: BinaryIO, hashers: dict[str, hashlib._Hash]):
        self._stream = stream
        self._hashers = hashers

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        for h in self._hashers.values():
            h.update(data)
        return data

    def drain(self) -> None:
        """Hash what the reader left unread (gzip trailers, padding)."""
        while self.read(BLOCK):
            pass

    def readable(self) -> bool:
        return True
