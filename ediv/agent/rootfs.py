"""Build a tiny root filesystem from the host's busybox-static, without downloading anything.

Used by the tests, the testbed and the demo: the result boots under User-Mode Linux and also
serves as the lower directory of a container's overlay root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ediv.errors import EdivError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
TOP_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
            "mnt", "run", "var/log", "home", "lib")


def is_static_elf(path: str | Path) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        order = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], order) != 3  # PT_INTERP
               for i in range(0, len(table), phentsize))


def find_busybox() -> str:
    """Path of a statically linked busybox, or EdivError."""
    for cand in BUSYBOX_CANDIDATES:
        if os.path.isfile(cand) and is_static_elf(cand):
            return cand
    raise EdivError("a static busybox was not found (apt-get install busybox-static)")


def populate_busybox_tree(staging: str | Path, busybox: str | None = None) -> Path:
    """Fill ``staging`` with busybox and one symlink per applet, plus minimal /etc files."""
    staging = Path(staging)
    busybox = busybox or find_busybox()
    for d in TOP_DIRS:
        (staging / d).mkdir(parents=True, exist_ok=True)
    os.chmod(staging / "tmp", 0o1777)
    shutil.copy2(busybox, staging / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:  # e.g. "usr/bin/wget"
        link = staging / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (staging / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (staging / "etc" / "group").write_text("root:x:0:\n")
    (staging / "etc" / "hostname").write_text("ediv\n")
    (staging / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    return staging


def build_busybox_rootfs(path: str | Path, size_mb: int = 16) -> Path:
    """Write an ext2 image at ``path`` holding a busybox root filesystem (``mkfs.ext2 -d``).

    The image is written to a temporary name first and renamed, so a reader never sees a
    half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mkfs = shutil.which("mkfs.ext2") or "/sbin/mkfs.ext2"
    if not os.path.exists(mkfs):
        raise EdivError("mkfs.ext2 not found (apt-get install e2fsprogs)")
    with tempfile.TemporaryDirectory(prefix="ediv-rootfs-", dir=path.parent) as tmp:
        staging = populate_busybox_tree(Path(tmp) / "root")
        partial = Path(tmp) / "rootfs.img"
        proc = subprocess.run([mkfs, "-q", "-F", "-d", str(staging), "-L", "ediv-root",
                               str(partial), f"{size_mb}M"], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise EdivError(f"mkfs.ext2 failed: {proc.stderr.strip()}")
        os.replace(partial, path)
    return path
