"""Running host commands and finding/killing the agent's long-lived processes."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

from ediv.errors import EdivError

MARKER_VAR = "EDIV_HOST_KEY"  # <key>@<host id> in the environment of every VM process
VM_VAR = "EDIV_HOST_VM"  # the VM's name, beside the marker, in every VM process
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CommandError(EdivError):
    def __init__(self, argv: Sequence[str], rc: int, stderr: str):
        self.argv, self.rc, self.stderr = list(argv), rc, stderr
        super().__init__(f"{' '.join(argv[:4])}{' ...' if len(argv) > 4 else ''} failed "
                         f"(exit {rc}): {stderr.strip()}")


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout, check=False, env=base_env())
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def base_env(**extra: str) -> dict[str, str]:
    env = {"PATH": BASE_PATH, "LANG": "C", "HOME": "/root", "TERM": "dumb"}
    env.update(extra)
    return env


def _stat(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on, None if gone; [0] state, [1] ppid,
    [19] start time (the command name before them may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (field 22 of /proc/PID/stat), None if gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def state_of(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0].decode() if fields else None


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids, from one scan of /proc (no /proc/PID/task/*/children here)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(name)
        if fields:
            out.setdefault(int(fields[1]), []).append(int(name))
    return out


def marked_pids(marker: str, vm: str | None = None) -> list[int]:
    """Processes whose environment carries ``EDIV_HOST_KEY=<marker>`` (and, given ``vm``,
    ``EDIV_HOST_VM=<vm>``)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    vm_needle = f"{VM_VAR}={vm}".encode() if vm is not None else None
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        variables = env.split(b"\0")
        if needle in variables and (vm_needle is None or vm_needle in variables):
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    st = state_of(pid)
    return st is not None and st not in ("Z", "X")


def is_running(pid: int | None, start: int | None) -> bool:
    """``pid`` is alive (not a zombie) and is still the process that started at ``start``."""
    fields = _stat(pid) if pid and start is not None else None
    return bool(fields) and int(fields[19]) == start and fields[0] not in (b"Z", b"X")


def kill_and_wait(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """SIGKILL ``pids`` and wait until they are dead (zombies count as dead); return survivors.

    Each pid is held by a pidfd from before the signal (no pid reuse in between), and all are
    waited for in one ``poll`` that wakes as each exits, instead of sleeping in steps."""
    pids = [p for p in set(pids) if p > 1 and p != os.getpid()]
    fds: dict[int, int] = {}
    try:
        for pid in pids:
            try:
                fds[os.pidfd_open(pid)] = pid
            except ProcessLookupError:
                continue
            except OSError:  # no pidfds (old kernel): signal by pid, poll /proc below
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for fd in fds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        waiting = set(fds)
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                poller.unregister(fd)
                waiting.discard(fd)
    finally:
        for fd in fds:
            os.close(fd)
    held = set(fds.values())
    left = [p for p in pids if p not in held and alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if alive(p)]
    return left + [fds[fd] for fd in waiting]


_CHILDREN: dict[int, subprocess.Popen] = {}


def register_child(p: subprocess.Popen) -> None:
    """Remember a long-lived child so that, if this process kills it, it is reaped here."""
    _CHILDREN[p.pid] = p


def reap_registered() -> None:
    for pid, p in list(_CHILDREN.items()):
        if p.poll() is not None:
            del _CHILDREN[pid]
