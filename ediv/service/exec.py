"""``exec`` as stages: resolve (which VMs on which hosts run the sequence) -> run (the agent's
``exec`` verb on those hosts in parallel, collecting each command's result as the agent
reports it) -> aggregate (one entry per VM).

What finished before a failure is kept: the agent emits one ``exec`` event per command as it
finishes and one ``exec-vm`` event when a VM's sequence is done, so a command failing, a VM
stopped, the agent killed or the host lost loses only what had not run yet; a VM whose result
is unknown (or incomplete) says so with ``exit_code`` None and an ``error``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ediv import protocol
from ediv.errors import InputError
from ediv.scenario.model import Scenario


@dataclass
class ExecResult:
    """What one VM made of a sequence (``vm`` None: the scenario's host commands)."""

    vm: str | None
    host: str
    exit_code: int | None  # its first non-zero exit code, 0 when all succeeded, None unknown
    output: str = ""  # the outputs of its commands, in order
    error: str | None = None  # why the result is unknown or incomplete

    def to_json(self) -> dict[str, Any]:
        """The README's ``exec --json`` entry: {"vm", "host", "exit_code", "output"} plus
        "error" only when there is one."""
        out: dict[str, Any] = {"vm": self.vm, "host": self.host, "exit_code": self.exit_code,
                               "output": self.output}
        if self.error is not None:
            out["error"] = self.error
        return out

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class ExecTarget:
    """One host of an exec: its part's key, the VMs expected to run there, and whether the
    scenario's host commands run there."""

    host: str
    key: str
    vms: list[str]
    only: list[str] | None = None  # --vm selection on this host (None: all of them)


@dataclass
class HostRun:
    """What one host's agent reported: every per-command event in order, the VMs it finished,
    and the error that ended it early (None when the agent finished)."""

    host: str
    commands: list[dict] = field(default_factory=list)
    done: dict[str | None, int | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # VM -> why it did not run
    error: str | None = None
    finished: bool = False

    def on_event(self, event: dict) -> None:
        """Collect one agent event (the controller calls this as lines arrive)."""
        kind = event.get("event")
        if kind == protocol.EVENT_EXEC:
            if event.get("error") is not None and event.get("exit_code") is None:
                self.skipped[str(event.get("vm"))] = str(event["error"])
            else:
                self.commands.append(event)
        elif kind == protocol.EVENT_EXEC_VM:
            self.done[event.get("vm")] = event.get("exit_code")


def sequences(scenario: Scenario) -> set[str]:
    """Every command sequence name the scenario has (execs, filetrees, host commands)."""
    seqs = {e.seq for vm in scenario.vms for e in vm.execs}
    seqs |= {f.seq for vm in scenario.vms for f in vm.filetrees}
    if scenario.host:
        seqs |= {e.seq for e in scenario.host.execs}
    defaults = scenario.global_.vm_defaults
    if defaults:
        seqs |= {f.seq for f in defaults.filetrees}
    return seqs


def vms_of_sequence(scenario: Scenario, seq: str) -> list[str]:
    """The VMs that have something to do in ``seq`` (commands or filetrees), in order."""
    defaults = scenario.global_.vm_defaults
    default_trees = bool(defaults and any(f.seq == seq for f in defaults.filetrees))
    return [vm.name for vm in scenario.vms
            if any(e.seq == seq for e in vm.execs) or any(f.seq == seq for f in vm.filetrees)
            or default_trees]


def check_sequence(scenario: Scenario, name: str, seq: str) -> None:
    """An unknown sequence is an error naming the ones the scenario has."""
    known = sequences(scenario)
    if seq not in known:
        raise InputError(f"scenario {name!r} has no command sequence {seq!r} "
                         f"(it has: {', '.join(sorted(known)) or 'none'})", "exec")


def resolve(scenario: Scenario, name: str, seq: str, vm_hosts: dict[str, str],
            keys: dict[str, str], vms: list[str] | None = None) -> list[ExecTarget]:
    """Stage 1: the hosts to contact and the VMs expected on each (``vm_hosts``: VM -> host
    as stored, ``keys``: host -> part key). ``vms`` (VNUML's -M) limits it to those VMs: then
    the hosts of other VMs are not contacted and host commands do not run."""
    check_sequence(scenario, name, seq)
    if vms:
        unknown = sorted(set(vms) - set(vm_hosts))
        if unknown:
            raise InputError(f"scenario {name!r} has no VM {', '.join(map(repr, unknown))} "
                             f"(it has: {', '.join(sorted(vm_hosts))})", "exec")
    expected = vms_of_sequence(scenario, seq)
    chosen = list(dict.fromkeys(vms)) if vms else None
    targets: list[ExecTarget] = []
    for host, key in keys.items():
        on_host = [v for v in (chosen or expected) if vm_hosts.get(v) == host]
        if chosen is not None and not on_host:
            continue
        targets.append(ExecTarget(host, key, [v for v in on_host if v in expected],
                                  only=on_host if chosen is not None else None))
    return targets


Runner = Callable[[ExecTarget, HostRun], None]


def aggregate(targets: list[ExecTarget], runs: dict[str, HostRun],
              vm_order: list[str]) -> list[ExecResult]:
    """Stage 3: one entry per VM (its first non-zero exit code, the outputs of all its
    commands in order), then one per host whose host commands ran; VMs whose result is
    unknown or incomplete carry ``exit_code`` None and an ``error``."""
    out: list[ExecResult] = []
    for t in targets:
        run = runs[t.host]
        by_vm: dict[str | None, list[dict]] = {}
        for c in run.commands:
            by_vm.setdefault(c.get("vm"), []).append(c)
        for vm in t.vms:
            cmds = by_vm.get(vm, [])
            output = "".join(str(c.get("output") or "") for c in cmds)
            if vm in run.skipped:
                out.append(ExecResult(vm, t.host, None, output, run.skipped[vm]))
                continue
            if vm not in run.done and not run.finished:
                why = run.error or "the agent ended before this VM finished"
                out.append(ExecResult(vm, t.host, None, output,
                                      f"result unknown ({len(cmds)} command(s) reported): "
                                      f"{why}"))
                continue
            out.append(ExecResult(vm, t.host, _first_failure(cmds), output))
        host_cmds = by_vm.get(None, [])
        if host_cmds:
            out.append(ExecResult(None, t.host, _first_failure(host_cmds),
                                  "".join(str(c.get("output") or "") for c in host_cmds)))
        elif run.error and not t.vms:
            out.append(ExecResult(None, t.host, None, "", run.error))
    order = {v: i for i, v in enumerate(vm_order)}
    out.sort(key=lambda r: (r.vm is None, order.get(r.vm, len(order))))
    return out


def _first_failure(commands: list[dict]) -> int:
    for c in commands:
        code = c.get("exit_code")
        if code:
            return int(code)
    return 0
