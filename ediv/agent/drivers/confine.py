"""Confinement primitives shared by the VM drivers (see docs/threat-model.md).

- **Host id ranges.** Every scenario gets 65,536 host uids/gids, ``vm_id_first + slot * 65536``
  with ``slot = sha256(key) mod vm_id_slots``: deterministic (a restarted agent, a reboot
  of one VM, a release after a crash all find the same range without stored state) and
  outside the ranges of real users (``/etc/subuid`` ranges start at 100,000 and take
  65,536 each; the default first id is 10⁹). Container VM root is the range's first id;
  UML processes run as that id too (both belong to the scenario, nothing else does).
- **User + network namespaces.** A short-lived holder (``nsholder.py``) unshares the user
  namespace and gets the mapping written by the agent (root writes ``/proc/PID/uid_map``
  itself: util-linux 2.38's ``--map-users`` needs ``newuidmap``, not installed here, and an
  agent-written map needs no setuid helper); then it unshares one network namespace per VM
  on request, each bind-mounted at ``/run/netns/<name>`` as ``ip netns add`` would, so the
  agent's ``ip -n`` batches keep working (init-namespace root is privileged over every
  descendant namespace). Every network namespace of the verb is *owned* by that user
  namespace, so VM root has CAP_NET_ADMIN/NET_RAW over its VM's (addresses, routes,
  forwarding, ping, tcpdump) and over nothing of the host's; a VM reaches no other VM's
  netns, as it has no handle on one (its PID namespace and mount table show none). The
  netns pins its user namespace: a VM booted again enters it through ``NS_GET_USERNS`` on
  the netns file.
- **Id-mapped lower layers.** A VM root directory (its own ``<filesystem>`` directory, or a
  configured ``container_rootfs`` other than ``/``) is bind-mounted id-mapped through the
  scenario's user namespace (``open_tree`` + ``mount_setattr(MOUNT_ATTR_IDMAP)``), so its
  root-owned files are VM root's; the host's ``/`` is never id-mapped (see ``host_upper``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ediv.agent.proc import base_env
from ediv.errors import EdivError

ID_COUNT = 65536
NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1)
NETNS_DIR = Path("/run/netns")
_NSHOLDER = str(Path(__file__).with_name("nsholder.py"))

# capabilities no network lab needs: dropped from the bounding set of every VM process (they
# would only act inside the scenario's user namespace anyway; this is defence in depth)
DROPPED_CAPS = ("sys_module", "sys_rawio", "sys_time", "sys_boot", "mknod", "sys_pacct",
                "sys_tty_config", "syslog", "wake_alarm", "block_suspend", "audit_control",
                "audit_read", "mac_admin", "mac_override", "linux_immutable", "lease",
                "bpf", "perfmon", "checkpoint_restore")

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, 0o2000000
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 4
_MOUNT_ATTR_IDMAP = 0x00100000
_MS_BIND = 4096


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def id_base(key: str, first: int, slots: int) -> int:
    """First host uid/gid of scenario ``key`` (see the module docstring)."""
    slot = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % max(1, slots)
    return first + slot * ID_COUNT


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ctypes.get_errno()
        raise EdivError(f"{what}: {os.strerror(err)}")


def bind_file(src: str, dst: str) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), None, _MS_BIND, None), f"bind {src} on {dst}")


_netns_dir_ready = False


def _ensure_netns_dir() -> None:
    """``/run/netns`` as ``ip netns add`` leaves it: a shared mount, so bind mounts of
    namespaces made here reach every mount namespace that copied it (once per process)."""
    global _netns_dir_ready
    if _netns_dir_ready:
        return
    _netns_dir_ready = True
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--make-shared", str(NETNS_DIR)], capture_output=True,
                      env=base_env(), check=False).returncode != 0:
        subprocess.run(["mount", "--bind", str(NETNS_DIR), str(NETNS_DIR)], env=base_env(),
                       check=True, capture_output=True)
        subprocess.run(["mount", "--make-shared", str(NETNS_DIR)], env=base_env(), check=True,
                       capture_output=True)


def _userns_holder(extra: list[str], env: dict[str, str], timeout: float,
                   what: str) -> subprocess.Popen:
    """A ``sleep`` in a new user namespace (plus the ``unshare`` options ``extra``), returned
    once the namespace exists and before its maps are written; the caller kills it."""
    p = subprocess.Popen(["unshare", "--user", *extra, "--", "sleep", "600"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                         env=base_env(**env))
    mine = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{p.pid}/ns/user") != mine:
                return p
        if p.poll() is not None:
            err = p.stderr.read().decode(errors="replace").strip()
            p.stderr.close()
            raise EdivError(f"{what}: unshare failed: {err}")
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            p.stderr.close()
            raise EdivError(f"{what}: user namespace not created in {timeout:.0f}s")
        time.sleep(0.002)


class _NsHolder:
    """A running ``nsholder.py``: makes network namespaces in its user namespace on request."""

    def __init__(self, join: str | None, env: dict[str, str], timeout: float):
        self.timeout = timeout
        argv = [sys.executable, "-I", "-S", _NSHOLDER, *([join] if join else [])]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, start_new_session=True,
                                  close_fds=True, env=base_env(**env))
        self.pid = self.p.pid
        try:
            self._expect("user")
        except EdivError as e:
            self.close()
            raise EdivError(f"user namespace holder: {e}") from None

    def _expect(self, word: str) -> None:
        fd = self.p.stdout.fileno()
        if not select.select([fd], [], [], self.timeout)[0]:
            raise EdivError(f"no answer in {self.timeout:.0f}s")
        line = self.p.stdout.readline().decode(errors="replace").strip()
        if line != word:
            raise EdivError(line.removeprefix("error ") or "the holder exited")

    def write_maps(self, base: int) -> None:
        for kind in ("uid_map", "gid_map"):
            with open(f"/proc/{self.pid}/{kind}", "w") as f:
                f.write(f"0 {base} {ID_COUNT}\n")

    def make(self, name: str) -> None:
        """Network namespace ``name``, bind-mounted at ``/run/netns/<name>`` as ``ip netns add``
        leaves it."""
        target = NETNS_DIR / name
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            raise EdivError(f"netns {name} already exists") from None
        os.close(fd)
        try:
            self.p.stdin.write(b"net\n")
            self.p.stdin.flush()
            self._expect("net")
            bind_file(f"/proc/{self.pid}/ns/net", str(target))
        except (EdivError, OSError) as e:
            target.unlink(missing_ok=True)
            raise EdivError(f"netns {name}: {e}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.p.stdin.close()
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()


def create_netns(names: list[str], base: int, env: dict[str, str], timeout: float = 20.0,
                 parallel: int = 1) -> None:
    """Network namespaces ``names``, all owned by one new user namespace mapping 0..65535 to
    ``base``.. (the scenario's, for this verb on this host); ``parallel`` holders share the
    work. ``env`` (the scenario marker) lets release find a holder a crash left. A netns
    pins its user namespace: a VM booted again enters it through ``NS_GET_USERNS``."""
    if not names:
        return
    _ensure_netns_dir()
    holders = [_NsHolder(None, env, timeout)]
    try:
        holders[0].write_maps(base)
        k = max(1, min(parallel, len(names)))
        for _ in range(k - 1):  # each one appended as made: closed below whatever fails
            holders.append(_NsHolder(f"/proc/{holders[0].pid}/ns/user", env, timeout))
        with ThreadPoolExecutor(k) as pool:
            jobs = [pool.submit(lambda h, chunk: [h.make(n) for n in chunk], h, names[i::k])
                    for i, h in enumerate(holders)]
            for job in jobs:
                job.result()
    finally:
        for h in holders:
            h.close()


def owner_view(src: str, dst: str, uid: int) -> None:
    """Bind file ``src`` on ``dst`` (an existing empty file) so that its owner appears as
    host ``uid``: an id-mapped mount through a user namespace made for it, mapping the file's
    owner and group to ``uid``. The file itself is untouched; its owner-only mode (a 0600
    image written by ``ediv ovf convert``) then lets the unprivileged UML read it."""
    st = os.stat(src)
    p = _userns_holder([], {}, 10.0, f"{src}: id-mapped view")
    try:
        with open(f"/proc/{p.pid}/uid_map", "w") as f:
            f.write(f"{st.st_uid} {uid} 1\n")
        with open(f"/proc/{p.pid}/setgroups", "w") as f:
            f.write("deny\n")
        with open(f"/proc/{p.pid}/gid_map", "w") as f:
            f.write(f"{st.st_gid} {uid} 1\n")
        fd = os.open(f"/proc/{p.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            idmapped_bind(src, dst, fd)
        finally:
            os.close(fd)
    finally:
        p.kill()
        p.wait()
        p.stderr.close()


def userns_fd(netns: str) -> int:
    """An fd of the user namespace owning named netns ``netns`` (caller closes it)."""
    try:
        fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise EdivError(f"netns {netns} is gone") from None
    try:
        return fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)


def is_mountpoint(path: Path) -> bool:
    text = str(path).rstrip("/")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].encode().decode("unicode_escape") == text for line in f)


def idmapped_bind(src: str, dst: str, ns_fd: int) -> None:
    """Bind ``src`` on ``dst`` with ownership seen through user namespace ``ns_fd`` (host
    uid 0 of ``src`` appears as the namespace's root)."""
    fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, src.encode(),
                       _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
    _check(fd, f"open_tree {src}")
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, ns_fd)
        _check(_libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr),
                             ctypes.sizeof(attr)),
               f"id-mapping {src} (its filesystem must support id-mapped mounts)")
        _check(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, dst.encode(),
                             _MOVE_MOUNT_F_EMPTY_PATH), f"mounting {src} on {dst}")
    finally:
        os.close(fd)


# -- the mask layer of VMs over the host's / ---------------------------------------------------
def _mirror_dirs(upper: Path, path: str, lower: Path) -> Path:
    """Create ``upper/path``'s parents as copies of the lower's directories (same owner and
    mode: a copy-up done in advance, so the merged view is unchanged); return upper/path."""
    parts = Path(path).relative_to("/").parts
    cur_u, cur_l = upper, lower
    for part in parts[:-1]:
        cur_u, cur_l = cur_u / part, cur_l / part
        if not cur_u.exists():
            st = cur_l.lstat() if cur_l.is_dir() and not cur_l.is_symlink() else None
            cur_u.mkdir()
            if st is not None:
                os.chown(cur_u, st.st_uid, st.st_gid)
                os.chmod(cur_u, stat.S_IMODE(st.st_mode))
    return upper.joinpath(*parts)


def _lower_dir(lower: Path, path: str) -> os.stat_result | None:
    p = lower / Path(path).relative_to("/")
    try:
        st = p.lstat()
    except OSError:
        return None
    return st if stat.S_ISDIR(st.st_mode) else None


def host_mask(upper: Path, base: int, *, owned: Iterable[str], private: Iterable[str],
              hidden: Iterable[str], whiteouts: Iterable[str], copies: Iterable[str] = (),
              lower: Path = Path("/")) -> None:
    """Build the layer stacked over the host's ``/`` (lower layers ``MASK:/``; the host's /
    is not id-mapped: host files keep host owners, so VM root reads only what every host
    user may read, and can change no host-owned file in place). One per scenario, shared by
    its VMs (a directory per entry costs a synchronous discard when freed on this kind of
    ext4: per VM it tripled release times):

    - ``owned`` directories (merged with the host's) belong to VM root:
      it may add, replace and remove entries there (writes land in the overlay);
    - ``private`` directories are opaque and VM root's (its own empty /root, /tmp, ...);
    - ``hidden`` directories are opaque, empty and host root's (state dirs, keys, server files);
    - ``whiteouts`` (globs allowed) disappear from the VM's view;
    - ``copies`` (small world-readable files VMs edit in place: passwd, group, hosts) are
      copied, VM root's (it edits its copy-up; the host's file never changes).
    Built once (the directory then exists)."""
    if upper.exists():
        return
    final = upper
    upper = upper.with_name(upper.name + ".partial")
    shutil.rmtree(upper, ignore_errors=True)
    upper.mkdir(mode=0o755)
    done: list[str] = []

    def covered(p: str) -> bool:
        return any(p == d or p.startswith(d.rstrip("/") + "/") for d in done)

    for path in sorted(set(private)):
        if covered(path):
            continue
        d = _mirror_dirs(upper, path, lower)
        if not d.exists():
            st = _lower_dir(lower, path)
            d.mkdir()
            os.chmod(d, stat.S_IMODE(st.st_mode) if st else 0o755)
            os.chown(d, base, base)
            os.setxattr(d, "trusted.overlay.opaque", b"y")
        done.append(path)
    for path in sorted(set(hidden)):
        if covered(path) or _lower_dir(lower, path) is None:
            continue
        d = _mirror_dirs(upper, path, lower)
        if not d.exists():
            d.mkdir(mode=0o700)
            os.setxattr(d, "trusted.overlay.opaque", b"y")
        done.append(path)
    for path in sorted(set(owned)):
        if covered(path):
            continue
        d = _mirror_dirs(upper, path, lower)
        st = _lower_dir(lower, path)
        if not d.exists():
            d.mkdir()
            os.chmod(d, stat.S_IMODE(st.st_mode) if st else 0o755)
        os.chown(d, base, base)
    for pattern in whiteouts:
        rel = pattern.lstrip("/")
        for hit in sorted(lower.glob(rel)) if any(c in rel for c in "*?[") else [lower / rel]:
            path = "/" + str(hit.relative_to(lower))
            if covered(path) or not os.path.lexists(hit) or hit.is_dir():
                continue
            w = _mirror_dirs(upper, path, lower)
            if not os.path.lexists(w):
                os.mknod(w, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    for path in copies:
        src = lower / path.lstrip("/")
        try:
            st = src.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o004 or covered(path):
            continue
        dst = _mirror_dirs(upper, path, lower)
        if not os.path.lexists(dst):
            shutil.copyfile(src, dst)
            os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.chown(dst, base, base)
    os.replace(upper, final)


def fs_path(files_dir: Path, path: str) -> str:
    """A ``<filesystem>`` path as the agent uses it: relative paths name the scenario's own
    bundle files."""
    return path if os.path.isabs(path) else str(files_dir / path)


def give(path: Path, uid: int) -> None:
    """Make ``path`` (a file, or a tree whose symlinks are not followed) the uid's."""
    for p in [path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else [])]:
        os.lchown(p, uid, uid)


def path_allowed(path: str, roots: Iterable[str | Path]) -> bool:
    """``path`` (symlinks resolved) is one of, or inside one of, ``roots``."""
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(str(root))
        if real == r or real.startswith(r.rstrip("/") + "/"):
            return True
    return False
