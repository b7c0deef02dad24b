"""Pausing a VM: every process of it stopped (SIGSTOP), and continued (SIGCONT) on resume.

A VM's processes are those carrying its environment marker (what the agent started) and
every process in the PID namespaces they opened (what runs inside a container or UML jail,
whatever its environment). Processes traced by another (a UML kernel's guest processes,
which it drives with ptrace) are left alone: a stop signal would reach their tracer as an
event it does not expect, and with the tracer stopped they cannot run a system call or
take a signal anyway. SIGKILL still ends stopped processes, so a stop, reset or release of
a paused VM works as for a running one (``vmstate`` continues it first all the same, so a
graceful halt can run).

No cgroup is created: the hosts' cgroup layouts differ (v1 freezer, v2, none writable), and
a v1-frozen process would not even die of SIGKILL until thawed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from ediv.agent.proc import marked_pids, state_of
from ediv.errors import EdivError

PASSES = 5  # rescans for processes forked while the others were being stopped
SETTLE = 5.0  # seconds for every stopped process to show state T


def _pidns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _traced(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return line.split()[1] != "0"
    except OSError:
        return False
    return False


def vm_processes(marker: str, vm: str) -> list[int]:
    """The processes of VM ``vm`` of the scenario whose marker is ``marker``."""
    marked = set(marked_pids(marker, vm))
    own = _pidns(os.getpid())
    spaces = {ns for p in marked if (ns := _pidns(p)) is not None and ns != own}
    inside: set[int] = set()
    if spaces:
        for name in os.listdir("/proc"):
            if name.isdigit() and _pidns(int(name)) in spaces:
                inside.add(int(name))
    return sorted(marked | inside)


def freeze(marker: str, vm: str) -> list[int]:
    """SIGSTOP every untraced process of the VM; returns them once all are stopped."""
    stopped: set[int] = set()
    for _ in range(PASSES):
        new = [p for p in vm_processes(marker, vm) if p not in stopped and not _traced(p)]
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            stopped.add(pid)
    deadline = time.monotonic() + SETTLE
    while True:
        running = [p for p in stopped if state_of(p) not in (None, "T", "t", "Z", "X")]
        if not running:
            return sorted(stopped)
        if time.monotonic() > deadline:
            thaw(marker, vm)
            raise EdivError(f"vm {vm}: processes {running} did not stop")
        time.sleep(0.01)


def thaw(marker: str, vm: str) -> list[int]:
    """SIGCONT every process of the VM (continuing a running process does nothing)."""
    pids = [p for p in vm_processes(marker, vm) if not _traced(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return pids


def frozen(marker: str, vm: str) -> bool:
    """Some untraced process of the VM is stopped (a paused VM)."""
    return any(state_of(p) == "T" for p in vm_processes(marker, vm) if not _traced(p))


def recorded_paused(ctx, vm_name: str) -> bool:
    """state.json says the VM is paused (``vm pause``; status reads the same record)."""
    state = ctx.sdir.read_json(ctx.sdir.state_path) or {}
    return (state.get("vms", {}).get(vm_name) or {}).get("state") == "paused"
