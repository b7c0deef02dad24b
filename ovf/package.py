"""Access to the files of an OVF package: an OVA (tar, read in place) or a directory.

Nothing is ever extracted to disk. Every OVA member is checked when the archive is opened:
absolute or ``..`` names, symbolic and hard links, device files, FIFOs and absurd sizes make
the whole package unreadable (InputError), because a consumer that later unpacks it would
write outside its target or hang. Names inside a package are POSIX paths relative to the
package root; hrefs are resolved relative to the descriptor's folder.
"""

from __future__ import annotations

import abc
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from ediv import xmlsafe
from ediv.errors import InputError

from . import limits

READ_CHUNK = 1 << 20
MAX_MEMBER_BYTES = 16 * 2**40  # 16 TiB: more is a corrupt or hostile header
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class Package(abc.ABC):
    """Files of one package. Subclasses implement the storage; names are package-relative."""

    kind = "package"

    def __init__(self, source: str):
        self.source = source
        self.descriptor_name = ""
        self.warnings: list[str] = []

    # storage primitives
    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every file of the package, as package-relative POSIX names."""

    @abc.abstractmethod
    def size(self, name: str) -> int | None:
        """Size in bytes, or None when ``name`` is not a regular file of the package."""

    @abc.abstractmethod
    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """A binary stream of ``name`` (a context manager)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the package holds open."""

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # shared logic
    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def read(self, name: str, limit: int = xmlsafe.MAX_XML_BYTES) -> bytes:
        # Chunked: read(limit) would allocate ``limit`` bytes up front, whatever the file size.
        parts: list[bytes] = []
        total = 0
        with self.open(name) as f:
            while total <= limit:
                block = f.read(READ_CHUNK)
                if not block:
                    break
                parts.append(block)
                total += len(block)
        if total > limit:
            raise InputError(f"{name}: larger than {limit} bytes", self.source)
        return b"".join(parts)

    def descriptor_bytes(self) -> bytes:
        cap = limits.active().max_descriptor_bytes
        size = self.size(self.descriptor_name) or 0
        if size > cap:
            raise limits.refuse(f"descriptor {self.descriptor_name}: size", size, cap,
                                "descriptor_bytes", self.source)
        return self.read(self.descriptor_name, cap)

    @property
    def base_dir(self) -> str:
        return posixpath.dirname(self.descriptor_name)

    def resolve(self, href: str, base: str | None = None) -> str | None:
        """Package name of ``href`` (relative to ``base``, default the descriptor's folder);
        None for URLs and for hrefs that would leave the package."""
        if not href or urlsplit(href).scheme not in ("", "file") or href.startswith("/"):
            return None
        if urlsplit(href).scheme == "file":
            return None
        joined = posixpath.normpath(posixpath.join(self.base_dir if base is None else base,
                                                   href.replace("\\", "/")))
        if joined.startswith("../") or joined == ".." or joined.startswith("/"):
            return None
        return joined

    def find(self, name: str) -> str | None:
        """``name`` if present, else a unique case-insensitive match, else None."""
        if self.exists(name):
            return name
        folded = [n for n in self.names() if n.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None

    def chunks(self, name: str) -> list[str]:
        """Members ``name.000000000``, ``name.000000001``... of a chunked file, in order."""
        prefix = name + "."
        found = [n for n in self.names()
                 if n.startswith(prefix) and n[len(prefix):].isdigit()]
        return sorted(found, key=lambda n: int(n[len(prefix):]))

    def storage_order(self, names: list[str]) -> list[str]:
        return list(names)

    def location(self, name: str) -> tuple[Path, int, int] | None:
        """(file, offset, length) where ``name``'s bytes lie as they are, or None when they
        cannot be read in place (a member of a compressed or sparse archive)."""
        return None


class TarPackage(Package):
    """An OVA: a tar archive (gzip/bzip2/xz wrapping tolerated with a warning)."""

    kind = "ova"

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"not an OVA: cannot read it as a tar archive ({exc})",
                             str(path)) from None
        try:
            self._members = self._check_members()
        except BaseException:
            self._tar.close()
            raise
        self._pick_descriptor()

    def _check_members(self) -> dict[str, tarfile.TarInfo]:
        with self.path.open("rb") as f:
            head = f.read(6)
        compressed = self._compressed = head.startswith(_COMPRESSED_MAGIC)
        if compressed:
            self.warnings.append("OVA is a compressed tar (DSP0243 requires plain ustar); "
                                 "reading it anyway")
        archive_size = self.path.stat().st_size
        max_members = limits.active().max_members
        members: dict[str, tarfile.TarInfo] = {}
        count = 0
        try:
            for info in self._tar:
                count += 1
                if count > max_members:
                    raise InputError(f"more than {max_members} archive members: refused "
                                     f"(raise the limit with --limit members=N or "
                                     f"{limits.LIMITS_VAR})", self.source)
                name = _member_name(info, self.source)
                if info.isdir():
                    continue
                if info.issym() or info.islnk():
                    what = "symbolic" if info.issym() else "hard"
                    raise InputError(f"member {info.name!r} is a {what} link (to "
                                     f"{info.linkname!r}): links are refused in an OVA",
                                     self.source)
                if not info.isfile():
                    raise InputError(f"member {info.name!r} is a device, FIFO or other "
                                     "special file: refused", self.source)
                if info.size > MAX_MEMBER_BYTES:
                    raise InputError(f"member {info.name!r} claims {info.size} bytes: refused",
                                     self.source)
                if (not compressed and not info.sparse
                        and info.offset_data + info.size > archive_size):
                    raise InputError(f"member {info.name!r} extends past the end of the archive "
                                     "(truncated OVA)", self.source)
                if name in members:
                    self.warnings.append(f"member {name!r} appears twice; the last one is used")
                members[name] = info
        except tarfile.TarError as exc:
            raise InputError(f"corrupt tar archive: {exc}", self.source) from None
        return members

    def _pick_descriptor(self) -> None:
        ovfs = [n for n in self._members if n.lower().endswith(".ovf")]
        if not ovfs:
            raise InputError("no .ovf descriptor in the archive (members: "
                             f"{', '.join(list(self._members)[:10]) or 'none'})", self.source)
        self.descriptor_name = ovfs[0]
        first = next(iter(self._members))
        if first != ovfs[0]:
            self.warnings.append(f"descriptor {ovfs[0]!r} is not the first member of the OVA "
                                 f"({first!r} is)")
        if len(ovfs) > 1:
            self.warnings.append(f"{len(ovfs)} .ovf members ({', '.join(ovfs)}); "
                                 f"using the first, {ovfs[0]!r}")

    def names(self) -> list[str]:
        return list(self._members)

    def size(self, name: str) -> int | None:
        info = self._members.get(name)
        return info.size if info is not None else None

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        info = self._members.get(name)
        stream = self._tar.extractfile(info) if info is not None else None
        if stream is None:
            raise InputError(f"{name}: not in the archive", self.source)
        try:
            yield stream
        finally:
            stream.close()

    def location(self, name: str) -> tuple[Path, int, int] | None:
        info = self._members.get(name)
        if info is None or info.sparse or self._compressed:
            return None
        return self.path, info.offset_data, info.size

    def storage_order(self, names: list[str]) -> list[str]:
        """Archive order, so that a compressed OVA is never decompressed backwards."""
        return sorted(names, key=lambda n: self._members[n].offset if n in self._members
                      else -1)

    def close(self) -> None:
        self._tar.close()


class DirPackage(Package):
    """A descriptor in a folder, with the files it references beside it."""

    kind = "directory"

    def __init__(self, descriptor: Path):
        super().__init__(str(descriptor))
        self.root = descriptor.parent.resolve()
        self.descriptor_name = descriptor.name
        self._listing: list[str] | None = None

    def _path(self, name: str) -> Path | None:
        """The file for ``name`` if it is a regular file that stays inside the folder."""
        candidate = self.root / name
        try:
            real = candidate.resolve()
            st = real.stat()
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or not stat.S_ISREG(st.st_mode):
            return None
        return real

    def names(self) -> list[str]:
        if self._listing is None:
            listing = []
            for dirpath, _dirs, files in os.walk(self.root):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                listing.extend(f if rel == "." else f"{rel}/{f}" for f in files)
                if len(listing) > limits.active().max_members:
                    break
            self._listing = sorted(listing)
        return self._listing

    def size(self, name: str) -> int | None:
        p = self._path(name)
        return p.stat().st_size if p is not None else None

    def find(self, name: str) -> str | None:
        if self.exists(name):
            return name
        folder, base = posixpath.split(name)
        try:
            entries = os.listdir(self.root / folder if folder else self.root)
        except OSError:
            return None
        folded = [e for e in entries if e.lower() == base.lower()]
        if len(folded) == 1:
            return posixpath.join(folder, folded[0]) if folder else folded[0]
        return None

    def chunks(self, name: str) -> list[str]:
        folder, base = posixpath.split(name)
        try:
            entries = os.listdir(self.root / folder if folder else self.root)
        except OSError:
            return []
        prefix = base + "."
        found = sorted((e for e in entries if e.startswith(prefix)
                        and e[len(prefix):].isdigit()), key=lambda e: int(e[len(prefix):]))
        return [posixpath.join(folder, e) if folder else e for e in found]

    def close(self) -> None:
        self._listing = None  # files are opened per read; nothing else is held

    def location(self, name: str) -> tuple[Path, int, int] | None:
        p = self._path(name)
        return (p, 0, p.stat().st_size) if p is not None else None

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        p = self._path(name)
        if p is None:
            raise InputError(f"{name}: not in the package folder", self.source)
        with p.open("rb") as f:
            yield f


def open_package(path: str | Path) -> Package:
    """An OVA file, a descriptor file, or a folder holding exactly one descriptor."""
    p = Path(path)
    if p.is_dir():
        ovfs = sorted(p.glob("*.ovf"))
        if len(ovfs) != 1:
            found = ", ".join(o.name for o in ovfs) if ovfs else "none"
            raise InputError(f"a package folder must hold exactly one .ovf (found: {found})",
                             str(p))
        return DirPackage(ovfs[0])
    try:
        with p.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(p)) from None
    if _looks_like_xml(head) or p.suffix.lower() == ".ovf":
        pkg = DirPackage(p)
        if p.suffix.lower() != ".ovf":
            pkg.warnings.append(f"descriptor file name ends in {p.suffix or '(nothing)'!r}, "
                                "not '.ovf'")
        return pkg
    if head.startswith(_COMPRESSED_MAGIC) or head[257:262] == b"ustar" or tarfile.is_tarfile(p):
        return TarPackage(p)
    raise InputError("neither an OVA (tar archive) nor an OVF descriptor (XML)", str(p))


def _looks_like_xml(head: bytes) -> bool:
    text = head.removeprefix(b"\xef\xbb\xbf")
    if text.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    return text.lstrip().startswith(b"<")


def _member_name(info: tarfile.TarInfo, source: str) -> str:
    raw = info.name
    name = raw.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"member {raw!r} has an absolute or '..' path (path traversal): "
                         "refused", source)
    norm = posixpath.normpath(name)
    return "" if norm == "." else norm.removeprefix("./")
