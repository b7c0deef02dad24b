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

from . import envelope as m
from .limits import LIMITS_VAR, Limits, active
from .package import Package

INFO_TIMEOUT = 120
FORMATS = ("raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi")
_DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
# magic bytes -> qemu-img format name
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"KDMV", "vmdk"),
    (0, b"QFI\xfb", "qcow2"),
    (0, b"conectix", "vpc"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"<<< Oracle VM VirtualBox Disk Image >>>", "vdi"),
    (0, _DESCRIPTOR_MAGIC, "vmdk-descriptor"),
)


@dataclass
class ImageInfo:
    format: str
    virtual_size: int


def image_opts(path: Path, fmt: str, *, header_only: bool = False,
               span: tuple[int, int] | None = None) -> str:
    """``--image-opts`` text that opens ``path`` as ``fmt``. ``header_only`` (for ``info``):
    a qcow2's data file is qemu's null driver, so the file its header names is never opened
    (qemu refuses that option for I/O on images without a data file, which is what
    ``check_image`` lets through to conversion). ``span`` (offset, length): the image is
    that part of ``path`` (an OVA member, read in place)."""
    if fmt not in FORMATS:
        raise InputError(f"disk format {fmt!r} is not one ediv converts", str(path))
    name = str(path).replace(",", ",,")  # QemuOpts escapes commas by doubling them
    if span is None:
        opts = f"driver={fmt},file.driver=file,file.filename={name}"
    else:
        offset, length = span
        length = -(-length // 512) * 512  # qemu's raw driver wants sectors (tar pads to them)
        opts = (f"driver={fmt},file.driver=raw,file.offset={offset},file.size={length},"
                f"file.file.driver=file,file.file.filename={name}")
    if fmt == "qcow2" and header_only:
        opts += ",data-file.driver=null-co"
    return opts


def source_args(path: Path, fmt: str, *, header_only: bool = False) -> list[str]:
    """qemu-img arguments naming ``path`` as a source image: ``-U --image-opts OPTS``."""
    return ["-U", "--image-opts", image_opts(path, fmt, header_only=header_only)]


def format_of(head: bytes) -> str:
    """qemu-img format from an image's first bytes; "raw" when no known header is there."""
    for offset, magic, fmt in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return fmt
    return "raw"


def check_image(path: Path, fmt: str, limits: Limits | None = None) -> ImageInfo:
    """InputError unless ``path`` (format ``fmt``) is a self-contained image within the
    size cap; its virtual size otherwise."""
    with path.open("rb") as f:
        head = f.read(len(_DESCRIPTOR_MAGIC))
    if head == _DESCRIPTOR_MAGIC:
        _refuse_descriptor(str(path))
    info = _info(image_opts(path, fmt, header_only=True), fmt, str(path))
    return _verdict(info, fmt, path, 0, str(path), limits or active())


def check_package_disks(pkg: Package, env: m.Envelope, warnings: list[str],
                        limits: Limits | None = None) -> None:
    """Inspect the package's disk files where they are stored (no copy), as ``inspect``
    does: InputError for an image that names another file or is beyond the size cap; a
    header qemu-img cannot read is a warning. Compressed or chunked files, and members of a
    compressed OVA, are inspected when they are converted (``check_image``)."""
    lim = limits or active()
    for disk in env.disks:
        ref = env.file(disk.file_ref) if disk.file_ref else None
        if ref is None or ref.compression not in (None, "", "identity") or ref.chunk_size:
            continue
        target = pkg.resolve(ref.href)
        name = pkg.find(target) if target else None
        where = pkg.location(name) if name else None
        if where is None:
            continue
        path, offset, length = where
        if shutil.which("qemu-img") is None:
            warnings.append("qemu-img not found: disk images not inspected")
            return
        with pkg.open(name) as f:
            head = f.read(512)
        fmt = format_of(head)
        label = f"{pkg.source}: disk {ref.href}"
        if fmt == "vmdk-descriptor":
            _refuse_descriptor(label)
        if fmt == "raw":
            if length > lim.max_disk_bytes:
                raise _too_big(fmt, length, lim, label)
            continue
        try:
            info = _info(image_opts(path, fmt, header_only=True, span=(offset, length)), fmt,
                         label)
        except InputError as exc:
            warnings.append(f"disk {ref.href}: " + "; ".join(d.message
                                                             for d in exc.diagnostics))
            continue
        _verdict(info, fmt, path, offset, label, lim)


def _refuse_descriptor(label: str) -> None:
    raise InputError("disk is a VMDK text descriptor that refers to other files "
                     "(monolithicFlat/twoGbMaxExtent extents): refused; only single-file "
                     "VMDKs are accepted", label)


def _too_big(fmt: str, size: int, lim: Limits, label: str) -> InputError:
    return InputError(f"the {fmt} disk has a virtual size of {size} bytes, more than the "
                      f"limit of {lim.max_disk_bytes} (raise it with --limit disk_bytes=N "
                      f"or {LIMITS_VAR})", label)


def _verdict(info: dict, fmt: str, path: Path, offset: int, label: str,
             lim: Limits) -> ImageInfo:
    if info.get("format") != fmt:
        raise InputError(f"qemu-img read the disk as {info.get('format')!r}, not {fmt!r}: "
                         "refused", label)
    external = external_files(info, path, offset)
    if external:
        raise InputError(f"the {fmt} disk names {external[0]}: refused (converting it would "
                         "read a file of this machine)", label)
    size = int(info.get("virtual-size") or 0)
    if size > lim.max_disk_bytes:
        raise _too_big(fmt, size, lim, label)
    return ImageInfo(fmt, size)


def external_files(info: dict, path: Path, offset: int = 0) -> list[str]:
    """What in ``qemu-img info`` JSON names a file other than ``path`` (at ``offset``)."""
    found = []
    for key in ("backing-filename", "full-backing-filename"):
        if info.get(key):
            found.append(f"a backing file {info[key]!r}")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        found.append(f"an external data file {data['data-file']!r}")
    for extent in data.get("extents") or []:
        name = extent.get("filename")
        if name and not _same_file(name, path, offset):
            found.append(f"an extent in another file {name!r}")
    return found


def _same_file(name: str, path: Path, offset: int) -> bool:
    """``name`` (a qemu filename, or ``json:{...}`` for a member read in place) is
    ``path`` at ``offset``."""
    if name.startswith("json:"):
        try:
            node = json.loads(name[len("json:"):])
        except ValueError:
            return False
        at = 0
        while isinstance(node, dict) and "filename" not in node:
            at += int(node.get("offset") or 0)
            node = node.get("file")
        filename = node.get("filename") if isinstance(node, dict) else None
        return filename is not None and at == offset and \
            os.path.realpath(filename) == os.path.realpath(path)
    return offset == 0 and os.path.realpath(name) == os.path.realpath(path)


def _info(opts: str, fmt: str, label: str) -> dict:
    qemu = shutil.which("qemu-img")
    if qemu is None:
        raise EdivError("qemu-img not found: converting disk images needs it "
                        "(apt-get install qemu-utils)")
    argv = [qemu, "info", "--output=json", "-U", "--image-opts", opts]
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
        raise InputError(f"reading the {fmt} header failed: {detail}", label)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise InputError("qemu-img info gave unreadable output", label) from None
