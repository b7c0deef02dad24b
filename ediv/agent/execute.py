"""``exec SEQ``: filetrees then commands of a sequence, in every VM (VMs in parallel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ediv.agent import network
from ediv.agent.drivers.base import AgentContext, ExecResult, vm_running
from ediv.agent.layout import VmLayout
from ediv.errors import EdivError, InputError, WrongState


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
    stopped = [v.name for v in todo if not vm_running(ctx, v)]
    if stopped:  # checked first: a sequence runs in all its VMs or in none
        raise WrongState(f"sequence {seq}: {', '.join(stopped)} "
                         f"{'is' if len(stopped) == 1 else 'are'} not running; start "
                         f"{'it' if len(stopped) == 1 else 'them'} first")
    # resolve every source before running anything (bad input changes nothing)
    plans = {v.name: ([(inside_files(ctx.files_dir, f.source, "filetree"), f.root)
                       for f in v.filetrees(seq)], commands_of(ctx, v, seq)) for v in todo}

    def one(v: VmLayout) -> list[ExecResult]:
        drv = drivers[v.driver]
        trees, cmds = plans[v.name]
        for src, dst in trees:
            if not src.is_dir():
                raise EdivError(f"vm {v.name}: filetree source {src.name} is not a directory")
            drv.put_files(ctx, v, src, dst)
            ctx.emitter.emit("filetree", vm=v.name, root=dst)
        results = drv.exec(ctx, v, cmds) if cmds else []
        for r in results:
            ctx.emitter.emit("exec", vm=v.name, command=r.command, exit_code=r.exit_code,
                             output=r.output)
        return results

    results = []
    for v, res in zip(todo, ctx.map(one, todo), strict=True):
        results += [{"vm": v.name, "command": r.command, "exit_code": r.exit_code,
                     "output": r.output} for r in res]
    for cmd, rc, output in network.run_host_commands(ctx, seq) if vms is None else ():
        ctx.emitter.emit("exec", vm=None, host=True, command=cmd, exit_code=rc, output=output)
        results.append({"vm": None, "command": cmd, "exit_code": rc, "output": output})
    return {"seq": seq, "ok": all(r["exit_code"] == 0 for r in results), "results": results}
