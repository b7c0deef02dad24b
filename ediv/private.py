"""Files that hold specs, outputs, keys or bundles are private: 0600 files, 0700 dirs.

Modes are set explicitly (not left to the umask) and tightened on files and dirs this user
owns that an older ediv left readable; nothing owned by someone else is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """``path`` (and missing parents) created 0700; an existing one of ours tightened."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for p in missing:  # mkdir's mode only reaches the last one, and through the umask
        os.chmod(p, DIR_MODE)
    tighten(path, DIR_MODE)
    return path


def tighten(path: str | Path, mode: int = FILE_MODE) -> None:
    """chmod ``path`` to ``mode`` when it exists, is ours and is more open than that."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if st.st_uid == os.geteuid() and (st.st_mode & 0o777) & ~mode:
        os.chmod(path, mode)


def write_private(path: str | Path, data: bytes | str) -> None:
    """Write ``path`` with mode 0600 (also when it already existed with another mode)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(raw)
    finally:
        if fd >= 0:
            os.close(fd)
