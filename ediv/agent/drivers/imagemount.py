"""Image files as container lower layers: one read-only loop mount per image and host, shared.

A container VM whose ``<filesystem>`` is an image file (a VNUML root_fs, an ``ediv image
build`` image shipped to the host's store) gets it as its overlay lower layer. The file is
loop-mounted once per agent state directory (one per host), read-only, ``nodev,nosuid``, as
ext4 only (the kernel's parser of one well-tested filesystem sees the untrusted bytes, not
whatever ``mount`` would probe for), at ``<state>/.image-mounts/<id>/root``; every VM using it
(of any scenario) id-map binds that mount as its lower directory (``confine.idmapped_bind``).

``<id>`` names the file's identity (real path, device, inode, size, mtime): an image
replaced at the same path gets a mount of its own, the old one stays for whoever uses it.
References are files ``refs/<scenario key>`` beside the mount, changed under one lock
(a flock on the state directory): a scenario's release drops its reference and the last one
unmounts; ``purge`` drops references of scenarios the agent no longer knows (a crash) too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from ediv.agent.proc import base_env
from ediv.errors import EdivError

MOUNTS_DIR = ".image-mounts"  # not a scenario key (list_keys skips dot names)
EXT_MAGIC_OFFSET = 1080  # s_magic of the ext2/3/4 superblock (1024 + 56)
EXT_MAGIC = b"\x53\xef"
QCOW2_MAGIC = b"QFI\xfb"


def image_kind(path: str | Path) -> str:
    """``ext`` (mountable), ``qcow2`` or ``unknown``."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(EXT_MAGIC_OFFSET)
        magic = f.read(2)
    if head == QCOW2_MAGIC:
        return "qcow2"
    return "ext" if magic == EXT_MAGIC else "unknown"


def image_id(path: str | Path) -> str:
    real = os.path.realpath(path)
    st = os.stat(real)
    ident = f"{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def _root(state_root: str | Path) -> Path:
    return Path(state_root) / MOUNTS_DIR


def mount_point(state_root: str | Path, path: str | Path) -> Path:
    return _root(state_root) / image_id(path) / "root"


@contextlib.contextmanager
def _locked(state_root: str | Path) -> Iterator[Path]:
    """The image mounts' lock: a flock on the state directory itself, so that the mounts'
    directory can go when the last image is unmounted (a release leaves no file)."""
    root = _root(state_root)
    Path(state_root).mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
        with contextlib.suppress(OSError):
            root.rmdir()  # only when empty
    finally:
        os.close(fd)


def _mounted(point: Path) -> bool:
    text = str(point)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].encode().decode("unicode_escape") == text for line in f)


def acquire(state_root: str | Path, path: str | Path, key: str) -> Path:
    """The read-only mount of image ``path`` (made when it is the first user), with a
    reference of scenario ``key``; returns the mount point."""
    ident = image_id(path)
    with _locked(state_root) as root:
        d = root / ident
        root.mkdir(mode=0o700, exist_ok=True)
        (d / "refs").mkdir(mode=0o700, parents=True, exist_ok=True)
        point = d / "root"
        point.mkdir(mode=0o755, exist_ok=True)
        if not _mounted(point):
            real = os.path.realpath(path)
            (d / "image.json").write_text(json.dumps({"path": real}) + "\n")
            r = subprocess.run(["mount", "-t", "ext4", "-o", "loop,ro,nodev,nosuid", real,
                                str(point)], capture_output=True, text=True, env=base_env(),
                               check=False)
            if r.returncode != 0:
                _remove_unused(d)
                raise EdivError(f"image {real}: read-only loop mount failed: "
                                f"{(r.stderr or r.stdout).strip()}")
        (d / "refs" / key).touch(mode=0o600)
    return point


def _remove_unused(d: Path) -> bool:
    """Unmount and delete image dir ``d`` when it holds no reference (lock held)."""
    refs = d / "refs"
    if refs.is_dir() and any(refs.iterdir()):
        return False
    point = d / "root"
    if _mounted(point):
        r = subprocess.run(["umount", str(point)], capture_output=True, text=True,
                           env=base_env(), check=False)
        if r.returncode != 0:
            # still busy (a VM's bind of it survived): detach it, the kernel frees the
            # loop device when its last user goes
            subprocess.run(["umount", "-l", str(point)], capture_output=True, env=base_env(),
                           check=False)
    if _mounted(point):
        return False
    shutil.rmtree(d, ignore_errors=True)
    return True


def release(state_root: str | Path, ident: str, key: str) -> bool:
    """Drop scenario ``key``'s reference to image mount ``ident``; True when this unmounted it."""
    if not _root(state_root).is_dir():
        return False
    with _locked(state_root) as root:
        d = root / ident
        if not d.is_dir():
            return False
        (d / "refs" / key).unlink(missing_ok=True)
        return _remove_unused(d)


def sweep(state_root: str | Path, live_keys: Iterable[str]) -> int:
    """Drop references of scenarios not in ``live_keys`` and unmount what nobody uses;
    returns how many image mounts went."""
    if not _root(state_root).is_dir():
        return 0
    live = set(live_keys)
    gone = 0
    with _locked(state_root) as root:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            refs = d / "refs"
            for ref in (refs.iterdir() if refs.is_dir() else ()):
                if ref.name not in live:
                    ref.unlink(missing_ok=True)
            gone += _remove_unused(d)
    return gone


def users(state_root: str | Path, path: str | Path) -> set[str]:
    """Keys of the scenarios holding image ``path``'s mount (for status and tests)."""
    refs = _root(state_root) / image_id(path) / "refs"
    return {p.name for p in refs.iterdir()} if refs.is_dir() else set()
