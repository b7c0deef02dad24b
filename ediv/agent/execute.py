"""``exec SEQ``: filetrees then commands of a sequence, in every VM (VMs in parallel).

Each command's result is an ``exec`` event as soon as it is known and each VM's end an
``exec-vm`` event, so a controller that loses the agent (killed, host lost) keeps what had
finished. A stopped or paused VM does not stop the others: its result says why it did not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ediv.agent import interrupts, network
from ediv.agent.drivers.base import AgentContext, ExecResult, vm_running
from ediv.agent.freeze import recorded_paused
from ediv.agent.layout import VmLayout
from ediv.errors import EdivError, InputError
from ediv.protocol import EVENT_EXEC, EVENT_EXEC_VM


def inside_files(base: Path, rel: str, what: str) -> Path:
    """``base/rel``, refusing paths that leave ``base`` (absolute, ``..``, symlinks out)."""
    path = (base / rel).resolve()
    if not path.is_relative_to(base.resolve()):
        raise InputError(f"{what} {rel!r} is outside the bundle's files/", "exec")
    return path


def commands_of(ctx: AgentContext, vm: VmLayout, seq: str) -> list[str]:
    out = []
    for e in vm.execs(seq):
        if e.type == "file":
            path = inside_files(ctx.files_dir, e.command, "exec file")
            if not path.is_file():
                raise InputError(f"exec file {e.command!r} is not a file of the bundle", "exec")
            # a script is text; bytes that are not UTF-8 must not turn into "internal error"
            out.append(path.read_bytes().decode("utf-8", errors="replace"))
        else:
            out.append(e.command)
    return out


def run_sequence(ctx: AgentContext, drivers: dict[str, Any], seq: str, *,
                 quiet_if_empty: bool = False, vms: set[str] | None = None) -> dict[str, Any]:
    """Run ``seq`` in every VM of the host, or only in ``vms`` (then host commands are not
    run: they belong to the scenario, not to one VM)."""
    layout = ctx.layout
    todo = [v for v in layout.vms if (vms is None or v.name in vms)
            and (v.filetrees(seq) or v.execs(seq))]
    host_cmds = [e for e in layout.host_execs if e.seq == seq] if vms is None else []
    if host_cmds and not ctx.config.allow_host_exec:
        raise EdivError(f"sequence {seq} has host commands, but this agent does not allow them "
                        "(allow_host_exec = false)")
    if not todo and not host_cmds and not quiet_if_empty:
        ctx.emitter.warning(f"sequence {seq!r} has no commands or filetrees on this host")
    # a stopped or paused VM cannot run it (a frozen one would hold the call until its
    # deadline): said so in its own result, the others run regardless
    refused: dict[str, str] = {}
    for v in todo:
        if not vm_running(ctx, v):
            refused[v.name] = f"{v.name} is not running; start it first"
        elif recorded_paused(ctx, v.name):
            refused[v.name] = f"{v.name} is paused; resume it first"
    for name in sorted(refused):
        ctx.emitter.emit(EVENT_EXEC, vm=name, exit_code=None, error=refused[name])
    todo = [v for v in todo if v.name not in refused]
    # resolve every source before running anything (bad input changes nothing)
    plans = {v.name: ([(inside_files(ctx.files_dir, f.source, "filetree"), f.root)
                       for f in v.filetrees(seq)], commands_of(ctx, v, seq)) for v in todo}

    def one(v: VmLayout) -> list[ExecResult]:
        drv = drivers[v.driver]
        trees, cmds = plans[v.name]
        for src, dst in trees:
            interrupts.check()  # stopped (controller gone, deadline): nothing more starts
            if not src.is_dir():
                raise EdivError(f"vm {v.name}: filetree source {src.name} is not a directory")
            drv.put_files(ctx, v, src, dst)
            ctx.emitter.emit("filetree", vm=v.name, root=dst)
        results: list[ExecResult] = []
        for cmd in cmds:  # one by one: each result is reported as soon as it is known
            interrupts.check()
            for r in drv.exec(ctx, v, [cmd]):
                ctx.emitter.emit(EVENT_EXEC, vm=v.name, command=r.command,
                                 exit_code=r.exit_code, output=r.output)
                results.append(r)
        ctx.emitter.emit(EVENT_EXEC_VM, vm=v.name,
                         exit_code=next((r.exit_code for r in results if r.exit_code), 0))
        return results

    results: list[dict[str, Any]] = [
        {"vm": name, "command": None, "exit_code": None, "error": refused[name]}
        for name in sorted(refused)]
    for v, res in zip(todo, ctx.map(one, todo), strict=True):
        results += [{"vm": v.name, "command": r.command, "exit_code": r.exit_code,
                     "output": r.output} for r in res]
    for cmd, rc, output in network.run_host_commands(ctx, seq) if vms is None else ():
        ctx.emitter.emit(EVENT_EXEC, vm=None, host=True, command=cmd, exit_code=rc,
                         output=output)
        results.append({"vm": None, "command": cmd, "exit_code": rc, "output": output})
    return {"seq": seq, "ok": all(r["exit_code"] == 0 for r in results), "results": results}
