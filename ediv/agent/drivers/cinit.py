"""PID 1 of a container VM until it becomes the VM's shell loop (stdlib only).

``boot(args)`` runs in a child forked by ``forker.py`` as host root inside the VM's network
namespace and a new mount + PID namespace (both owned by the init user namespace, so
nothing in the VM can change its mounts); ``args`` is the object ``ContainerDriver`` builds
(``_launch_args``). Steps:

1. overlay root on ``merged``; proc, sysfs, a private minimal ``/dev`` (null, zero, full,
   random, urandom, tty, net/tun, a new devpts instance with ptmx, shm) — no host ``/dev``;
2. ``pivot_root`` into it and detach the old root: no host path is left in the VM's mount
   namespace, so a chroot escape ends at the VM's own root;
3. enter the scenario's user namespace (root there is an unprivileged host uid), create the
   VM's UTS and IPC namespaces inside it, set hostname and forwarding, drop the capabilities
   no lab needs from the bounding set, report ``ready`` and exec the shell loop.
"""

import ctypes
import os
import socket
import stat
import sys

LOOP = 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MNT_DETACH = 2
CLONE_NEWUSER, CLONE_NEWUTS, CLONE_NEWIPC = 0x10000000, 0x04000000, 0x08000000
SYS_PIVOT_ROOT = 155
PR_CAPBSET_DROP = 24
CAPS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
        "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
        "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
        "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
        "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
        "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
        "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
        "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36,
        "audit_read": 37, "perfmon": 38, "bpf": 39, "checkpoint_restore": 40}
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0), ("net/tun", 10, 200))

libc = ctypes.CDLL(None, use_errno=True)


def fail(what: str) -> None:
    err = ctypes.get_errno()
    sys.stderr.write(f"ediv-init: {what}: {os.strerror(err)}\n")
    sys.exit(1)


def mount(src: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None):
    if libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  data.encode() if data else None) != 0:
        fail(f"mount {fstype or src} on {target}")


def mkdir(path: str) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)


def private_dev(dev: str, owner: int) -> None:
    mount("ediv-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC,
          f"mode=755,uid={owner},gid={owner},size=256k,nr_inodes=512")
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        mkdir(os.path.dirname(path))
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for sub in ("pts", "shm"):
        os.mkdir(os.path.join(dev, sub))
    mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620")
    mount("ediv-shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV,
          "mode=1777,size=64m")
    for name, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                         ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))


def boot(a: dict) -> None:
    """Never returns: execs the VM's shell loop, or exits 1 (the reason on stderr)."""
    merged = a["merged"]
    ready = os.open(a["ready"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    mount("ediv-root", merged, "overlay", 0,
          f"lowerdir={a['lower']},upperdir={a['upper']},workdir={a['work']}")
    for sub in ("proc", "sys", "dev"):
        mkdir(os.path.join(merged, sub))
    mount("proc", os.path.join(merged, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", os.path.join(merged, "sys"), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    private_dev(os.path.join(merged, "dev"), a["owner"])
    os.chdir(merged)
    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        fail("pivot_root")
    if libc.umount2(b".", MNT_DETACH) != 0:
        fail("detaching the host's root")
    os.chdir("/")
    if libc.setns(a["userns_fd"], CLONE_NEWUSER) != 0:
        fail("entering the scenario's user namespace")
    os.close(a["userns_fd"])
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if libc.unshare(CLONE_NEWUTS | CLONE_NEWIPC) != 0:
        fail("creating UTS and IPC namespaces")
    socket.sethostname(a["hostname"])
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(a["fwd4"] + "\n")
    fwd6 = "/proc/sys/net/ipv6/conf/all/forwarding"
    if os.path.exists(fwd6):
        with open(fwd6, "w") as f:
            f.write(a["fwd6"] + "\n")
    for cap in a["drop_caps"]:
        if libc.prctl(PR_CAPBSET_DROP, CAPS[cap], 0, 0, 0) != 0:
            fail(f"dropping {cap}")
    os.write(ready, b"ready\n")
    os.close(ready)
    os.execve("/bin/sh", ["sh", "-c", LOOP], a["env"])
