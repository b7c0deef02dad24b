"""The bytes of one package file as DSP0243 stores them: chunked, gzip-compressed, or both.

DSP0243 (``ovf:chunkSize``, ``ovf:compression``): a file is compressed first, then the
compressed stream is cut into chunks ``href.000000000``, ``href.000000001``... So the chunks
are joined in order *then* gunzipped, as one stream; a single chunk is a valid chunked file.
The manifest lists each stored member (chunk) with its own digest, so each member is hashed
as it passes. Everything is streamed in fixed-size blocks; a corrupt or truncated gzip
stream, a missing chunk or output beyond the decompression caps (``ovf.limits``) is one
InputError naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO

from ediv.errors import InputError

from . import envelope as m
from .limits import LIMITS_VAR, Limits, active
from .package import Package

BLOCK = 1 << 20


def stored_members(pkg: Package, ref: m.FileRef) -> list[str]:
    """Package names holding ``ref``, in order: its chunks, else the file itself."""
    target = pkg.resolve(ref.href)
    if target is None:
        raise InputError(f"file {ref.id!r}: href {ref.href!r} is external or leaves the "
                         "package; refused", pkg.source)
    members = pkg.chunks(target) if ref.chunk_size else []
    if members:
        prefix = len(target) + 1
        for index, member in enumerate(members):
            if int(member[prefix:]) != index:
                raise InputError(f"file {ref.id!r} ({ref.href}): chunk {index:09d} is missing "
                                 f"(found {member!r})", pkg.source)
            size = pkg.size(member) or 0
            if member != members[-1] and size != ref.chunk_size:
                raise InputError(f"file {ref.id!r} ({ref.href}): chunk {member!r} holds {size} "
                                 f"bytes; every chunk but the last must hold ovf:chunkSize "
                                 f"({ref.chunk_size})", pkg.source)
        return members
    found = pkg.find(target)
    if found is None:
        raise InputError(f"file {ref.id!r} ({ref.href}) is not in the package", pkg.source)
    return [found]


class _Joined:
    """The stored members one after the other, each hashed with every algorithm."""

    def __init__(self, pkg: Package, members: list[str], algorithms: tuple[str, ...]):
        self._pkg = pkg
        self._pending = list(members)
        self._algorithms = algorithms
        self._member: AbstractContextManager[BinaryIO] | None = None
        self._current: BinaryIO | None = None
        self._name = ""
        self._hashers: dict[str, hashlib._Hash] = {}
        self.digests: dict[str, dict[str, str]] = {}  # member -> algorithm -> hex
        self.stored_bytes = 0

    def _next(self) -> bool:
        self._finish()
        if not self._pending:
            return False
        self._name = self._pending.pop(0)
        self._member = self._pkg.open(self._name)
        self._current = self._member.__enter__()
        self._hashers = {alg: hashlib.new(alg.lower()) for alg in self._algorithms}
        return True

    def _finish(self) -> None:
        if self._current is not None:
            self.digests[self._name] = {a: h.hexdigest() for a, h in self._hashers.items()}
        self.close()

    def close(self) -> None:
        """Close the member being read (one is open at a time, however many chunks)."""
        if self._member is not None:
            self._member.__exit__(None, None, None)
        self._member = self._current = None

    def read(self, n: int = -1) -> bytes:
        n = BLOCK if n is None or n < 0 else n
        while True:
            if self._current is None and not self._next():
                return b""
            data = self._current.read(n)
            if data:
                for h in self._hashers.values():
                    h.update(data)
                self.stored_bytes += len(data)
                return data
            self._finish()

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Hash what the reader left unread (gzip trailers, padding, later members)."""
        while self.read(BLOCK):
            pass


class FileStream:
    """A readable stream of a package file's plain bytes; ``digests`` (per stored member)
    are complete once the stream is read to its end (``read`` returned b"")."""

    def __init__(self, pkg: Package, ref: m.FileRef, members: list[str],
                 algorithms: tuple[str, ...], limits: Limits):
        self.ref = ref
        self.members = members
        self.source = pkg.source
        self._joined = _Joined(pkg, members, algorithms)
        self._limits = limits
        self._stored_total = sum(pkg.size(n) or 0 for n in members)
        self._gzip = (gzip.GzipFile(fileobj=self._joined, mode="rb")
                      if ref.compression == "gzip" else None)
        self.size = 0

    @property
    def digests(self) -> dict[str, dict[str, str]]:
        return self._joined.digests

    def read(self, n: int = BLOCK) -> bytes:
        if self._gzip is None:
            data = self._joined.read(n)
        else:
            try:
                data = self._gzip.read(n)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(f"file {self.ref.id!r} ({self.ref.href}): corrupt gzip "
                                 f"stream: {exc or type(exc).__name__}", self.source) from None
            self._check_expansion(len(data))
        self.size += len(data)
        if not data:
            self._joined.drain()
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._joined.close()

    def _check_expansion(self, more: int) -> None:
        total = self.size + more
        lim = self._limits
        what = f"file {self.ref.id!r} ({self.ref.href}): gzip expands to more than"
        if total > lim.max_expanded_bytes:
            raise InputError(f"{what} {lim.max_expanded_bytes} bytes: refused (limit "
                             f"expanded_bytes; raise it with --limit expanded_bytes=N or "
                             f"{LIMITS_VAR})", self.source)
        if total > lim.ratio_floor and total > lim.max_ratio * max(self._stored_total, 1):
            raise InputError(f"{what} {lim.max_ratio} times its {self._stored_total} stored "
                             f"bytes: refused as a decompression bomb (limit ratio; raise it "
                             f"with --limit ratio=N or {LIMITS_VAR})", self.source)


@contextmanager
def open_file(pkg: Package, ref: m.FileRef, algorithms: tuple[str, ...] = ("SHA256",),
              limits: Limits | None = None) -> Iterator[FileStream]:
    """The plain bytes of ``ref`` (chunks joined, then gunzipped), streamed."""
    members = stored_members(pkg, ref)
    if ref.compression not in (None, "", "identity", "gzip"):
        raise InputError(f"file {ref.id!r} ({ref.href}): compression {ref.compression!r} is "
                         "not one DSP0243 defines (gzip): refused", pkg.source)
    stream = FileStream(pkg, ref, members, algorithms, limits or active())
    try:
        yield stream
    finally:
        stream.close()
