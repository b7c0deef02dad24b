"""Starts container VM inits by forking (run as a script: stdlib only).

One Python start per agent verb instead of one per VM: a VM's PID 1 was a fresh interpreter
running ``cinit.py`` (about 45 ms of CPU each, the bulk of a container's start: 1,000 VMs on
two cores spent 25 s in interpreter start-up); here this process, started once by the
container driver, forks it with cinit already imported.

Protocol: one JSON line on stdin, the list of requests ``{"netns": NAME, "log": PATH,
"args": {cinit arguments}, ["net": OPS]}``; the answer is one JSON line, a list with
``{"launcher": PID, "init": PID}`` (PID of this process, PID of the init) or
``{"error": TEXT}`` per request, in order, then EOF. This process first opens the netns
files and moves to a private mount namespace without ``/run/netns`` (``_small_namespace``).
Per request, as ``nsenter --net=/run/netns/NAME unshare --fork --pid --mount --propagation
private`` did, it enters the netns, sends OPS there over rtnetlink (``rtnl.py``: the VM's
addresses and routes, as ``ip`` would, without an exec of ``ip`` per VM; no ``ip -n``, which
copies the mount table and mounts a sysfs for each call), unshares a PID namespace and forks
the init (PID 1 there: ``_init``, then ``cinit.boot``), then enters its own PID namespace
again for the next request. After answering it stays, holding nothing of the agent's, as
the inits' parent and reaper until the last one exits (``_keep``).

One fork per VM: each had a *launcher* child forked first, to do the above and wait for
the init. A fork of this interpreter costs its page tables plus a copy-on-write fault per
page the child touches (about 400); per VM that was a third of a container's start.

The environment of this process (the scenario's marker, set by the driver) is what the
inits start with; an init execs the VM's shell with its own (marker and VM name).
"""

import contextlib
import ctypes
import fcntl
import gc
import json
import os
import signal
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out
import cinit
import rtnl

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MNT_DETACH = 2
NS_GET_USERNS = 0xB701
libc = cinit.libc  # the one handle of this process (cinit is loaded in it)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


class _Refused(Exception):
    """A failure whose message is the whole story (no 'starting its init failed')."""


def _small_namespace(names: list[str]) -> dict[str, int]:
    """Open the named netns files, then leave for a private copy of the mount namespace
    without ``/run/netns``: each init copies this process's mount table and detaches it
    again, so its size (a bind mount per VM netns of every scenario and testbed host on the
    machine, 1,000 and more) would cost every VM twice."""
    fds = {n: os.open(f"/run/netns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in set(names)}
    _check(libc.unshare(CLONE_NEWNS), "new mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p == "/run/netns" or p.startswith("/run/netns/")),
                        key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)
    return fds


def _init(req: dict, userns: int) -> None:
    """The VM's PID 1 until cinit execs its shell: never returns. As a fresh process from
    the forker's exec would be: new session, stdin /dev/null, stdout and stderr appended to
    the VM's log, no descriptor of the forker's (its pipes, the other VMs' netns)."""
    try:
        os.closerange(3, userns)
        os.closerange(userns + 1, os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # as exec would leave them for the VM's shell
        log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        # its own mount namespace (the init user namespace's: nothing in the VM can change
        # it), so that its pivot_root moves no other process's root
        _check(libc.unshare(CLONE_NEWNS), "new mount namespace")
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
        cinit.boot({**req["args"], "userns_fd": userns})
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        traceback.print_exc()
    os._exit(1)


def _start(req: dict, net: int, own_pid: int) -> int:
    """Configure the VM's netns (from inside it), fork its init as PID 1 of a new PID
    namespace, and come back to this process's PID namespace for the next VM; the init's
    PID."""
    userns = fcntl.ioctl(net, NS_GET_USERNS)
    try:
        _check(libc.setns(net, CLONE_NEWNET), "entering the VM's network namespace")
        try:
            rtnl.apply(req.get("net") or [])
        except (rtnl.NetlinkError, OSError) as e:
            raise _Refused(f"network configuration failed: {e}") from None
        _check(libc.unshare(CLONE_NEWPID), "new PID namespace")
        try:
            pid = os.fork()
            if pid == 0:
                _init(req, userns)
        finally:
            # unshare(CLONE_NEWPID) once more is refused while the namespace for children
            # differs from our own: entering our own resets it
            _check(libc.setns(own_pid, CLONE_NEWPID), "back to the forker's PID namespace")
        return pid
    finally:
        os.close(userns)


def launch(batch: list[dict]) -> list[dict]:
    own_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    nets = _small_namespace([req["netns"] for req in batch])
    own_pid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    out = []
    try:
        for req in batch:
            try:
                out.append({"launcher": os.getpid(),
                            "init": _start(req, nets[req["netns"]], own_pid)})
            except _Refused as e:
                out.append({"error": str(e)})
            except OSError as e:
                out.append({"error": f"starting its init failed: {e}"})
    finally:
        # back in the host's netns: the keeper pins no VM's
        _check(libc.setns(own_net, CLONE_NEWNET), "back to the host's network namespace")
        for fd in (own_pid, own_net, *nets.values()):
            os.close(fd)
    return out


def _keep() -> None:
    """Stay the inits' parent (their reaper) until the last one has exited."""
    with contextlib.suppress(OSError):
        os.chdir("/")
    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()


def main() -> None:
    gc.disable()  # nothing cyclic is made here; a collection in a child would touch (and
    gc.freeze()   # copy) every page of the heap it shares with this process
    line = sys.stdin.readline()
    if not line.strip():
        return
    sys.stdout.write(json.dumps(launch(json.loads(line))) + "\n")
    sys.stdout.flush()
    # the agent reads its answer to EOF, then goes on: nothing of it is kept open here
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    _keep()


if __name__ == "__main__":
    main()
