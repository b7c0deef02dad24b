"""sha256 digests of image files, streamed (images are hundreds of MB), and their spelling."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from ediv.errors import EdivError

CHUNK = 1 << 20
PREFIX = "sha256:"
_HEX = re.compile(r"[0-9a-f]{64}")


def normalize(digest: str) -> str:
    """``sha256:<64 hex>`` from either that or the bare hex; EdivError otherwise."""
    text = digest.strip().lower()
    hexpart = text[len(PREFIX):] if text.startswith(PREFIX) else text
    if not _HEX.fullmatch(hexpart):
        raise EdivError(f"not a sha256 digest: {digest!r}")
    return PREFIX + hexpart


def hex_of(digest: str) -> str:
    """The 64 hex digits of a digest (the file name of its blob)."""
    return normalize(digest)[len(PREFIX):]


def file_digest(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of the file, read in 1 MiB chunks; ``progress(bytes_so_far)``."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    return PREFIX + h.hexdigest()
