"""``vm NAME start|stop|reboot|reset``: change the state of one VM of a deployed scenario.

``stop`` halts the VM (it is asked first and killed after ``stop_timeout``); ``reset`` kills
it and boots it again at once; ``reboot`` is a graceful stop followed by a boot. The VM keeps
its interfaces, addresses, disk (copy-on-write file or overlay) and files; a boot runs the
VM's ``on_boot`` sequence again, as the VM's own start-up would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ediv.agent import VM_ACTIONS
from ediv.agent.config import AgentConfig
from ediv.agent.context import open_deployed
from ediv.agent.deploy import ON_BOOT, vm_state_record
from ediv.agent.drivers.base import vm_running
from ediv.agent.events import Emitter
from ediv.agent.execute import run_sequence
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
        if action in ("reboot", "reset") and not was_running:
            raise WrongState(f"vm {vm_name} is stopped; start it instead")
        boots = action != "stop" and (action != "start" or not was_running)
        if action != "start" and was_running:
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
                _save(ctx, drivers)
                raise
        _save(ctx, drivers)
        if boots:
            boot = run_sequence(ctx, drivers, ON_BOOT, quiet_if_empty=True, vms={vm_name})
    running = vm_running(ctx, vm)
    return {"key": key, "vm": vm_name, "action": action,
            "previous": "running" if was_running else "stopped",
            "state": "running" if running else "stopped",
            **({"on_boot": boot["results"]} if boot and boot["results"] else {})}


def _save(ctx, drivers: dict[str, Any]) -> None:
    """Record the VMs' processes in state.json (what exec, console and status read)."""
    state = ctx.sdir.read_json(ctx.sdir.state_path)
    for v in ctx.layout.vms:
        state["vms"][v.name] = vm_state_record(ctx, drivers, v,
                                               "running" if vm_running(ctx, v) else "stopped")
    ctx.sdir.write_json(ctx.sdir.state_path, state)
