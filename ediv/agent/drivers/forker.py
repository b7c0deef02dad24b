"""Starts container VM inits by forking (run as a script: stdlib only).

One Python start per agent verb instead of one per VM: a VM's PID 1 was a fresh interpreter
running ``cinit.py`` (about 45 ms of CPU each, the bulk of a container's start: 1,000 VMs on
two cores spent 25 s in interpreter start-up); here this process, started once by the
container driver, forks it with cinit already imported.

Protocol: one JSON line on stdin, the list of requests ``{"netns": NAME, "log": PATH,
"args": {cinit arguments}, ["net": OPS]}``; the answer is one JSON line, a list with
``{"launcher": PID, "init": PID}`` or ``{"error": TEXT}`` per request, in order; then it
exits. This process first opens the netns files and moves to a private mount namespace
without ``/run/netns`` (``_small_namespace``). Per request, as ``nsenter
--net=/run/netns/NAME unshare --fork --pid --mount --propagation private`` did: a
*launcher* child (new session, stdin /dev/null, stdout and stderr appended to PATH, no
other descriptor of this process) enters the netns, sends OPS there over rtnetlink
(``rtnl.py``: the VM's addresses and routes, as ``ip`` would, without an exec of ``ip``
per VM; no ``ip -n``, which copies the mount table and mounts a sysfs for each call),
takes a private copy of the mount namespace and a new PID namespace,
forks the init (PID 1 there: ``cinit.boot``) and waits for it, exiting with its status.
Every launcher is forked before any is waited for, so their kernel work runs in parallel.

The environment of this process (the scenario's marker, set by the driver) is what
launchers carry; an init execs the VM's shell with its own (marker and VM name).
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


def _launcher(req: dict, w: int, net: int) -> None:
    """The launcher child: reports the init's PID (or an error) on ``w``; never returns."""
    code = 127
    try:
        low = 3  # close all but 0-2, w and net: the agent's pipes, the other launchers'
        for keep in sorted({w, net}):
            os.closerange(low, keep)
            low = keep + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
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
        userns = fcntl.ioctl(net, NS_GET_USERNS)
        _check(libc.setns(net, CLONE_NEWNET), "entering the VM's network namespace")
        os.close(net)
        try:
            rtnl.apply(req.get("net") or [])
        except (rtnl.NetlinkError, OSError) as e:
            raise _Refused(f"network configuration failed: {e}") from None
        _check(libc.unshare(CLONE_NEWNS), "new mount namespace")
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
        _check(libc.unshare(CLONE_NEWPID), "new PID namespace")
        pid = os.fork()
        if pid == 0:
            os.close(w)
            _init({**req["args"], "userns_fd": userns})
        os.close(userns)
        os.write(w, f"{pid}\n".encode())
        os.close(w)
        w = -1
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
    except BaseException as e:  # reported to the forker, then the child ends
        text = str(e) if isinstance(e, _Refused) else f"starting its init failed: {e}"
        if w >= 0:
            with contextlib.suppress(OSError):
                os.write(w, f"error {text}".replace("\n", " ").encode(errors="replace") + b"\n")
    finally:
        os._exit(code)


class _Refused(Exception):
    """A failure whose message is the whole story (no 'starting its init failed')."""


def _small_namespace(names: list[str]) -> dict[str, int]:
    """Open the named netns files, then leave for a private copy of the mount namespace
    without ``/run/netns``: each launcher copies this process's mount table and each init
    detaches it again, so its size (a bind mount per VM netns of every scenario and
    testbed host on the machine, 1,000 and more) would cost every VM twice."""
    fds = {n: os.open(f"/run/netns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in set(names)}
    _check(libc.unshare(CLONE_NEWNS), "new mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p == "/run/netns" or p.startswith("/run/netns/")),
                        key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)
    return fds


def _init(args: dict) -> None:
    """The VM's PID 1 until cinit execs its shell: never returns."""
    try:
        cinit.boot(args)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        traceback.print_exc()
    os._exit(1)


def launch(batch: list[dict]) -> list[dict]:
    nets = _small_namespace([req["netns"] for req in batch])
    started = []
    for req in batch:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _launcher(req, w, nets[req["netns"]])
        os.close(w)
        started.append((pid, r))
    out = []
    for pid, r in started:
        with os.fdopen(r, "rb") as f:
            line = f.readline().decode(errors="replace").strip()
        if line.isdigit():
            out.append({"launcher": pid, "init": int(line)})
        else:
            out.append({"error": line.removeprefix("error ") or "starting its init failed"})
    return out


def main() -> None:
    gc.disable()  # nothing cyclic is made here; a collection in a child would touch (and
    gc.freeze()   # copy) every page of the heap it shares with this process
    line = sys.stdin.readline()
    if line.strip():
        sys.stdout.write(json.dumps(launch(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
