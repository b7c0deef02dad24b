"""``vm NAME start|stop|reboot|reset|shutdown|pause|resume``: change the state of one VM of
a deployed scenario.

``stop`` halts the VM (it is asked first and killed after ``stop_timeout``); ``shutdown``
only asks it (a VM that has not halted after ``stop_timeout`` is left running and the
action fails); ``reset`` kills it and boots it again at once; ``reboot`` is a graceful stop
followed by a boot. ``pause`` freezes every process of the VM (``freeze.py``; a container's
links go down too), so it answers nothing until ``resume`` (or ``start``) lets it run on;
stop, shutdown, reboot and reset of a paused VM continue it first. The VM keeps its
interfaces, addresses, disk (copy-on-write file or overlay) and files; a boot runs the VM's
``on_boot`` sequence again, as the VM's own start-up would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ediv.agent import VM_ACTIONS
from ediv.agent.config import AgentConfig
from ediv.agent.context import open_deployed
from ediv.agent.deploy import ON_BOOT, vm_state_record
from ediv.agent.drivers.base import vm_running
from ediv.agent.events import Emitter
from ediv.agent.execute import run_sequence
from ediv.agent.freeze import recorded_paused
from ediv.errors import InputError, WrongState


def change_vm_state(state_root: Path, key: str, vm_name: str, action: str,
                    config: AgentConfig, emitter: Emitter) -> dict[str, Any]:
    if action not in VM_ACTIONS:
        raise InputError(f"unknown VM action {action!r} (one of {', '.join(VM_ACTIONS)})")
    ctx, drivers = open_deployed(state_root, key, config, emitter)
    vm = next((v for v in ctx.layout.vms if v.name == vm_name), None)
    if vm is None:
        raise InputError(f"scenario {ctx.layout.scenario} has no VM named {vm_name!r} "
                         "on this host")
    drv = drivers[vm.driver]
    boot: dict[str, Any] | None = None
    with ctx.sdir.lock():
        was_running = vm_running(ctx, vm)
        was_paused = was_running and recorded_paused(ctx, vm_name)
        previous = "paused" if was_paused else "running" if was_running else "stopped"
        if action in ("reboot", "reset", "pause", "resume") and not was_running:
            raise WrongState(f"vm {vm_name} is stopped; start it instead")
        if action in ("pause", "resume") or (action == "start" and was_paused):
            if action == "pause" and not was_paused:
                drv.pause(ctx, vm)
                emitter.vm(vm_name, "paused", driver=vm.driver)
            elif action != "pause" and was_paused:
                drv.resume(ctx, vm)
                emitter.vm(vm_name, "running", driver=vm.driver)
            paused = action == "pause"
            _save(ctx, drivers, vm_name, paused)
            return {"key": key, "vm": vm_name, "action": action, "previous": previous,
                    "state": "paused" if paused else "running" if vm_running(ctx, vm)
                    else "stopped"}
        if was_paused:  # a graceful halt needs the VM running; a kill works either way
            drv.resume(ctx, vm)
        if action == "shutdown" and was_running:
            try:
                _shutdown(ctx, drv, vm, config.stop_timeout)
            finally:
                _save(ctx, drivers, vm_name, False)
            emitter.vm(vm_name, "stopped", driver=vm.driver)
            was_running_after = False
        else:
            was_running_after = was_running
        boots = action not in ("stop", "shutdown") and (action != "start" or not was_running)
        if action not in ("start", "shutdown") and was_running_after:
            drv.shutdown(ctx, vm, graceful=action != "reset", timeout=config.stop_timeout)
            emitter.vm(vm_name, "stopped", driver=vm.driver)
        if boots:
            try:
                if not was_running:  # what a crashed VM may have left (disk locks...)
                    drv.shutdown(ctx, vm, graceful=False, timeout=0)
                drv.boot(ctx, vm)
                drv.wait_ready(ctx, [vm], config.boot_timeout)
            except BaseException:
                drv.shutdown(ctx, vm, graceful=False, timeout=0)
                _save(ctx, drivers, vm_name, False)
                raise
        _save(ctx, drivers, vm_name, False)
        if boots:
            boot = run_sequence(ctx, drivers, ON_BOOT, quiet_if_empty=True, vms={vm_name})
    running = vm_running(ctx, vm)
    return {"key": key, "vm": vm_name, "action": action, "previous": previous,
            "state": "running" if running else "stopped",
            **({"on_boot": boot["results"]} if boot and boot["results"] else {})}




def _shutdown(ctx, drv, vm, timeout: float) -> None:
    """Ask the VM to halt and wait up to ``timeout``; never kill it (that is ``stop``)."""
    drv.request_halt(ctx, vm)
    deadline = time.monotonic() + timeout
    while vm_running(ctx, vm) and time.monotonic() < deadline:
        time.sleep(0.05)
    if vm_running(ctx, vm):
        raise WrongState(f"vm {vm.name} did not shut down within {timeout:.0f}s; "
                         "it is still running (stop kills it)")
    drv.shutdown(ctx, vm, graceful=False, timeout=0)  # reap what is left (helpers, taps down)


def _save(ctx, drivers: dict[str, Any], vm_name: str, is_paused: bool) -> None:
    """Record the VMs' processes in state.json (what exec, console and status read): VM
    ``vm_name`` paused or not, the others as state.json had them."""
    state = ctx.sdir.read_json(ctx.sdir.state_path)
    paused = {n for n, r in state["vms"].items() if (r or {}).get("state") == "paused"}
    paused.discard(vm_name)
    if is_paused:
        paused.add(vm_name)
    for v in ctx.layout.vms:
        word = "paused" if v.name in paused else "running"
        state["vms"][v.name] = vm_state_record(ctx, drivers, v,
                                               word if vm_running(ctx, v) else "stopped")
    ctx.sdir.write_json(ctx.sdir.state_path, state)
