"""Safety inspection of a disk image before qemu-img converts it.

An image may name other files of this machine, which ``qemu-img convert`` would then read
into the (readable) output: a qcow2 or VMDK backing file (``parentFileNameHint``), a qcow2
external data file (``-o data_file=``), VMDK extents in other files (monolithicFlat or
twoGbMaxExtent text descriptors). Every such image is refused. qemu-img only ever sees the
package's own bytes: it runs with ``-U`` (no locks taken or waited for) and the format forced
with ``--image-opts driver=FMT,file.filename=...`` (never probed), and a qcow2's data file
is replaced by qemu's ``null-co`` driver, so that not even ``info`` opens the file its header
names. The virtual size is checked against ``Limits.max_disk_bytes``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ediv.errors import EdivError, InputError

from .limits import LIMITS_VAR, Limits, active

INFO_TIMEOUT = 120
FORMATS = ("raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi")
_DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"


@dataclass
class ImageInfo:
    format: str
    virtual_size: int


def image_opts(path: Path, fmt: str, *, header_only: bool = False) -> str:
    """``--image-opts`` text that opens ``path`` as ``fmt``. ``header_only`` (for ``info``):
    a qcow2's data file is qemu's null driver, so the file its header names is never opened
    (qemu refuses that option for I/O on images without a data file, which is what
    ``check_image`` lets through to conversion)."""
    if fmt not in FORMATS:
        raise InputError(f"disk format {fmt!r} is not one ediv converts", str(path))
    name = str(path).replace(",", ",,")  # QemuOpts escapes commas by doubling them
    opts = f"driver={fmt},file.driver=file,file.filename={name}"
    if fmt == "qcow2" and header_only:
        opts += ",data-file.driver=null-co"
    return opts


def source_args(path: Path, fmt: str, *, header_only: bool = False) -> list[str]:
    """qemu-img arguments naming ``path`` as a source image: ``-U --image-opts OPTS``."""
    return ["-U", "--image-opts", image_opts(path, fmt, header_only=header_only)]


def check_image(path: Path, fmt: str, limits: Limits | None = None) -> ImageInfo:
    """InputError unless ``path`` (format ``fmt``) is a self-contained image within the
    size cap; its virtual size otherwise."""
    lim = limits or active()
    with path.open("rb") as f:
        head = f.read(len(_DESCRIPTOR_MAGIC))
    if head == _DESCRIPTOR_MAGIC:
        raise InputError("disk is a VMDK text descriptor that refers to other files "
                         "(monolithicFlat/twoGbMaxExtent extents): refused; only single-file "
                         "VMDKs are accepted", str(path))
    info = _info(path, fmt)
    if info.get("format") != fmt:
        raise InputError(f"qemu-img read the disk as {info.get('format')!r}, not {fmt!r}: "
                         "refused", str(path))
    external = external_files(info, path)
    if external:
        raise InputError(f"the {fmt} disk names {external[0]}: refused (converting it would "
                         "read a file of this machine)", str(path))
    size = int(info.get("virtual-size") or 0)
    if size > lim.max_disk_bytes:
        raise InputError(f"the {fmt} disk has a virtual size of {size} bytes, more than the "
                         f"limit of {lim.max_disk_bytes} (raise it with --limit disk_bytes=N "
                         f"or {LIMITS_VAR})", str(path))
    return ImageInfo(fmt, size)


def external_files(info: dict, path: Path) -> list[str]:
    """What in ``qemu-img info`` JSON names a file other than ``path``."""
    found = []
    for key in ("backing-filename", "full-backing-filename"):
        if info.get(key):
            found.append(f"a backing file {info[key]!r}")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        found.append(f"an external data file {data['data-file']!r}")
    for extent in data.get("extents") or []:
        name = extent.get("filename")
        if name and os.path.realpath(name) != os.path.realpath(path):
            found.append(f"an extent in another file {name!r}")
    return found


def _info(path: Path, fmt: str) -> dict:
    qemu = shutil.which("qemu-img")
    if qemu is None:
        raise EdivError("qemu-img not found: converting disk images needs it "
                        "(apt-get install qemu-utils)")
    argv = [qemu, "info", "--output=json", *source_args(path, fmt, header_only=True)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=INFO_TIMEOUT,
                              env=env, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EdivError(f"reading the {fmt} header: qemu-img did not finish in "
                        f"{INFO_TIMEOUT} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else "qemu-img failed"
        raise InputError(f"reading the {fmt} header failed: {detail}", str(path))
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise InputError("qemu-img info gave unreadable output", str(path)) from None
