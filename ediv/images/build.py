"""``ediv image build``: a Debian root filesystem (mmdebstrap) in an ext4 image, into the store.

What the image needs to boot under ediv is small, because ediv brings its own init: the UML
driver boots its boot disk (busybox ``/init``), mounts the image on ``/newroot`` and runs every
command with ``chroot /newroot /bin/sh``; the container driver uses the image as the overlay
lower layer and runs ``chroot . /bin/sh -c 'sleep ...'``. So the image needs ``/bin/sh``,
coreutils and the empty mount points ``/proc``, ``/sys``, ``/dev``, ``/tmp`` - all part of
Debian's ``minbase`` variant - and no systemd. The build adds ``/etc/hostname``, ``/etc/hosts``
and an ``/etc/fstab`` that mounts nothing (ediv's init mounts what the VM needs).

Steps: mmdebstrap (``root`` mode, so the files keep their owners) into a directory under the
store's ``tmp/`` (it writes only inside that directory), ``mkfs.ext4 -d`` of that
directory into a sparse image file, optionally ``qemu-img convert`` to qcow2, then the store
hashes the file and renames it into place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ediv.errors import EdivError
from ediv.images.sources import sources_text
from ediv.images.store import FORMATS, ImageStore, Manifest, check_name

Progress = Callable[[str], None]

SUITE_RE = re.compile(r"[a-z][a-z0-9-]{1,30}")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
SIZE_RE = re.compile(r"(\d+)([KMGT]?)(i?B)?", re.I)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_SIZE = 64 << 20
# documentation, manual pages and translations are not needed in a lab VM
DPKG_EXCLUDES = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                 "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/info/*",
                 "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias")
# bump when what the build puts into an image changes (finish_tree, mkfs options): tests and
# caches key their builds on it
LAYOUT_VERSION = 1
FSTAB = "# ediv: the VM's init (ediv's boot disk or container init) mounts what the VM needs\n"


@dataclass
class BuildSpec:
    name: str
    suite: str = "bookworm"
    packages: list[str] = field(default_factory=list)
    size: str = "auto"  # "auto" or a size such as 2G, 512M
    format: str = "raw"
    variant: str = "minbase"
    mirror: str | None = None  # default: the host's own apt sources

    def check(self) -> BuildSpec:
        check_name(self.name)
        if not SUITE_RE.fullmatch(self.suite):
            raise EdivError(f"bad suite {self.suite!r}")
        bad = [p for p in self.packages if not PACKAGE_RE.fullmatch(p)]
        if bad:
            raise EdivError(f"bad package name(s): {', '.join(bad)}")
        if self.format not in FORMATS:
            raise EdivError(f"unknown format {self.format!r} (raw or qcow2)")
        if self.variant not in ("minbase", "essential", "apt", "required", "buildd"):
            raise EdivError(f"unknown mmdebstrap variant {self.variant!r}")
        if self.size != "auto":
            parse_size(self.size)
        return self


def parse_packages(text: str | None) -> list[str]:
    """``frr,tcpdump iproute2`` -> sorted unique names."""
    return sorted({p for p in re.split(r"[,\s]+", text or "") if p})


def parse_size(text: str) -> int:
    m = SIZE_RE.fullmatch(text.strip())
    if not m:
        raise EdivError(f"bad size {text!r} (e.g. 512M, 2G or auto)")
    size = int(m.group(1)) * UNITS[m.group(2).upper()]
    if size < MIN_SIZE:
        raise EdivError(f"size {text} is below the minimum of 64M")
    return size


def tree_bytes(root: Path) -> int:
    """Disk space the files under ``root`` take (allocated blocks, hard links once)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += max(st.st_blocks * 512, 4096 if n in dirnames else 0)
    return total


def auto_size(used: int) -> int:
    """Room for the files, ext4's metadata and the lab's own writes: +25% and 128 MiB,
    rounded up to 64 MiB."""
    want = int(used * 1.25) + (128 << 20)
    return -(-want // (64 << 20)) * (64 << 20)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or under ``path`` (deepest first)."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a build directory, never following into a mount (an interrupted mmdebstrap
    could leave /proc or /dev bound inside its target): unmount those first, or refuse."""
    if not path.exists():
        return
    for point in mounts_below(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = mounts_below(path)
    if left:
        raise EdivError(f"not removing {path}: still mounted below it: {', '.join(left)}")
    shutil.rmtree(path)


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}")
         if os.access(p, os.X_OK)), None)
    if not found:
        raise EdivError(f"{name} not found (apt-get install {package})")
    return found


def _stream(argv: list[str], progress: Progress, what: str) -> None:
    """Run ``argv``, passing each line it prints to ``progress``; EdivError when it fails."""
    tail: deque[str] = deque(maxlen=15)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, errors="replace")
    assert p.stdout is not None
    try:
        for line in p.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail.append(line)
            progress(line)
    except BaseException:
        # interrupted: let the tool undo its own mounts before the build dir is removed
        p.terminate()
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        raise
    if p.wait() != 0:
        raise EdivError(f"{what} failed (exit {p.returncode}):\n" + "\n".join(tail))


def mmdebstrap_argv(spec: BuildSpec, target: Path, sources: Path) -> list[str]:
    argv = [_tool("mmdebstrap", "mmdebstrap"), "--mode=root", f"--variant={spec.variant}",
            "--format=directory"]
    if spec.packages:
        argv.append("--include=" + ",".join(spec.packages))
    argv += [f"--dpkgopt={o}" for o in DPKG_EXCLUDES]
    # the build directory sits in the private (0700) store: apt's _apt user cannot enter it
    argv.append('--aptopt=APT::Sandbox::User "root"')
    return [*argv, "--", spec.suite, str(target), str(sources)]


def finish_tree(root: Path) -> None:
    """What ediv's VMs expect in every image beyond Debian's minbase."""
    etc = root / "etc"
    (etc / "hostname").write_text("ediv\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    (etc / "fstab").write_text(FSTAB)
    for d in ("proc", "sys", "dev", "tmp", "run", "root"):
        (root / d).mkdir(exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    if not (root / "bin" / "sh").exists():
        raise EdivError("the built tree has no /bin/sh")


def make_ext4(tree: Path, image: Path, size: int, progress: Progress) -> None:
    progress(f"ediv: creating ext4 image of {size >> 20} MiB (mkfs.ext4 -d)")
    mkfs = _tool("mkfs.ext4", "e2fsprogs")
    # lazy_journal_init: the journal of a fresh sparse file reads as zeros already
    _stream([mkfs, "-q", "-F", "-L", "ediv-root", "-m", "0",
             "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", str(tree), str(image),
             f"{size // 1024}k"], progress, "mkfs.ext4")


def build(store: ImageStore, spec: BuildSpec, progress: Progress = lambda _m: None) -> Manifest:
    """Build the image ``spec`` describes and store it; returns its manifest."""
    spec.check()
    if os.geteuid() != 0:
        # unshare mode would leave the tree owned by subordinate ids, and mkfs.ext4 -d copies
        # owners as it finds them: the image would have no root-owned file
        raise EdivError("ediv image build needs root (mmdebstrap root mode, so the image's "
                        "files keep their owners)")
    text = sources_text(spec.suite, spec.mirror)
    started = time.monotonic()
    work = store.staging_dir("build-")
    try:
        sources = work / "ediv.sources"
        sources.write_text(text)
        root = work / "root"
        progress(f"ediv: mmdebstrap {spec.suite} ({spec.variant}"
                 f"{', ' + ','.join(spec.packages) if spec.packages else ''}) into {root}")
        _stream(mmdebstrap_argv(spec, root, sources), progress, "mmdebstrap")
        return image_from_tree(store, spec, work, progress, sources=text, started=started)
    finally:
        try:
            remove_tree(work)
        except EdivError as exc:
            progress(f"ediv: warning: {exc}")


def image_from_tree(store: ImageStore, spec: BuildSpec, work: Path, progress: Progress, *,
                    sources: str = "", started: float | None = None) -> Manifest:
    """Everything after mmdebstrap: ``work/root`` -> ext4 (-> qcow2) -> the store.
    ``work`` is a staging directory of ``store``; the caller removes it."""
    started = time.monotonic() if started is None else started
    root = work / "root"
    finish_tree(root)
    used = tree_bytes(root)
    size = auto_size(used) if spec.size == "auto" else parse_size(spec.size)
    if size < used * 1.1:
        raise EdivError(f"size {spec.size} is too small: the files take {used >> 20} MiB")
    raw = work / "image.raw"
    make_ext4(root, raw, size, progress)
    remove_tree(root)
    image = raw
    if spec.format == "qcow2":
        progress("ediv: converting to qcow2 (qemu-img convert)")
        image = work / "image.qcow2"
        _stream([_tool("qemu-img", "qemu-utils"), "convert", "-f", "raw", "-O", "qcow2",
                 str(raw), str(image)], progress, "qemu-img convert")
        raw.unlink()
    progress("ediv: hashing and storing the image")
    m = Manifest(name=spec.name, digest="", format=spec.format, size=0, suite=spec.suite,
                 packages=list(spec.packages), origin="build",
                 extra={"fs_size": size, "variant": spec.variant, "files_bytes": used,
                        "sources": sources,
                        "build_seconds": round(time.monotonic() - started, 1)})
    m = store.add(image, m, move=True)
    progress(f"ediv: stored {m.name} {m.digest} ({m.size >> 20} MiB) in "
             f"{time.monotonic() - started:.0f}s")
    return m
