"""The interface every VM driver implements, and what the agent hands to it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from ediv.agent import freeze, naming
from ediv.agent.config import AgentConfig
from ediv.agent.events import Emitter
from ediv.agent.interrupts import held
from ediv.agent.journal import ScenarioDir
from ediv.agent.layout import HostLayout, VmLayout
from ediv.agent.proc import alive, is_running, kill_and_wait, marked_pids, reap_registered
from ediv.errors import EdivError

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class AgentContext:
    sdir: ScenarioDir
    config: AgentConfig
    emitter: Emitter
    layout: HostLayout
    files_dir: Path  # the bundle's files/: sources of filetrees and exec type=file
    runtime: dict[str, dict[str, Any]] = field(default_factory=dict)  # vm -> driver data

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """Run ``fn`` over ``items`` in the agent's thread pool; first exception is raised.

        A signal that stops the verb takes effect once the pool is done (as it did: the
        pool's end waits for every item anyway): raised inside it, between a lock taken in
        ``threading`` and its ``try``, it left the workers waiting on that lock for ever."""
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with held(), ThreadPoolExecutor(
                max_workers=max(1, min(self.config.workers, len(items)))) as ex:
            return list(ex.map(fn, items))


@dataclass
class ExecResult:
    command: str
    exit_code: int
    output: str


@runtime_checkable
class Driver(Protocol):
    """A VM technology. Methods get the VMs of this driver only; all may be called again
    after a crash (release does not rely on the driver: the journal is enough)."""

    name: str

    def check(self, ctx: AgentContext, vms: list[VmLayout]) -> list[str]:
        """Problems that would make the deploy fail (missing kernel, image...), before acting."""
        ...

    def prepare(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        """Per-scenario preparation (directories, shared images); journal what is created."""
        ...

    def start(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        """Create the VMs' interfaces and processes (journal first)."""
        ...

    def wait_ready(self, ctx: AgentContext, vms: list[VmLayout], timeout: float) -> None:
        """Return when every VM accepts exec; raise EdivError naming the VMs that did not."""
        ...

    def exec(self, ctx: AgentContext, vm: VmLayout, commands: list[str]) -> list[ExecResult]:
        """Run shell commands in order inside the VM; one result per command."""
        ...

    def put_files(self, ctx: AgentContext, vm: VmLayout, src_dir: Path, dst: str) -> None:
        """Copy the contents of host directory ``src_dir`` into the VM's ``dst``."""
        ...

    def shutdown(self, ctx: AgentContext, vm: VmLayout, graceful: bool, timeout: float) -> None:
        """Stop one running VM: asked to halt first when ``graceful``, killed when it has not
        after ``timeout`` s (or at once). Its interfaces, disks and files stay until release."""
        ...

    def boot(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Start the processes of a stopped VM of a deployed scenario again (its interfaces
        and disks exist); journal them. ``wait_ready`` follows."""
        ...

    def cleanup(self, ctx: AgentContext) -> None:
        """Driver-specific cleanup at release, beyond what the journal undoes."""
        ...

    def pause(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Freeze a running VM: none of its processes runs and it answers nothing."""
        ...

    def resume(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Let a paused VM run on from where it was frozen."""
        ...

    def runtime_info(self, ctx: AgentContext, vm: VmLayout) -> dict[str, Any]:
        """Data for state.json / status (pid, console...)."""
        ...


def vm_running(ctx: AgentContext, vm: VmLayout) -> bool:
    """The VM's recorded process is alive and still the one that was started."""
    rt = ctx.runtime.get(vm.name, {})
    return is_running(rt.get("pid"), rt.get("start"))


class ProcessOwner:
    """Shared by drivers whose VMs are processes the agent started: ``shutdown`` asks the
    VM to halt (``request_halt``), waits, then kills its recorded process (only if it is
    still the same process: start time checked) and reaps it; ``cleanup`` reaps what is left."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def request_halt(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Ask the VM to stop by itself (driver-specific)."""

    def shutdown(self, ctx: AgentContext, vm: VmLayout, graceful: bool, timeout: float) -> None:
        if vm_running(ctx, vm):
            pid = ctx.runtime[vm.name]["pid"]
            if graceful:
                self.request_halt(ctx, vm)
                deadline = time.monotonic() + timeout
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    ctx.emitter.warning(f"vm {vm.name}: did not halt within {timeout:.0f}s; "
                                        "killed")
            if kill_and_wait([pid]) if alive(pid) else []:
                raise EdivError(f"vm {vm.name}: process {pid} does not die")
        # every process of the VM, not only the recorded one: a UML's helpers can outlive its
        # main process for a moment, holding its disks' locks, and a boot would then panic
        left = kill_and_wait(marked_pids(naming.marker(ctx.sdir.key), vm.name))
        if left:
            raise EdivError(f"vm {vm.name}: processes {left} do not die")
        p = self._procs.pop(vm.name, None)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        reap_registered()

    def pause(self, ctx: AgentContext, vm: VmLayout) -> None:
        freeze.freeze(naming.marker(ctx.sdir.key), vm.name)

    def resume(self, ctx: AgentContext, vm: VmLayout) -> None:
        freeze.thaw(naming.marker(ctx.sdir.key), vm.name)

    def cleanup(self, ctx: AgentContext) -> None:
        for p in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        self._procs.clear()
