"""The engine service: the one API every front end (the ``ediv`` command, the WBEM server)
calls for the lifecycle of a scenario.

It owns the state machine::

    defined -> deploying -> deployed -> releasing -> (forgotten | defined)
                    \\-> failed (a host could not be reached to roll back / release)
    deploying/releasing whose claim's process is gone read "interrupted"
    per VM: planned -> running <-> stopped

and the only lock: a claim on the scenario's row (:meth:`Service.claim`), one token per call,
so it is correct between threads of one process and between processes. It takes spec text
or a :class:`~ediv.scenario.model.Scenario`, never a path it must read again. It raises the
named errors of :mod:`ediv.errors` (NotFound, AlreadyExists, Busy, WrongState, InputError),
which each front end maps through ``ediv.errors.CODES``. Host work is delegated to
:class:`ediv.controller.Controller` (agent verbs over SSH, hosts in parallel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ediv import state as st
from ediv.cluster import Cluster, Host
from ediv.controller import Controller, HostOutcome
from ediv.errors import EdivError, InputError, NotFound, WrongState, no_scenario
from ediv.plan import Plan, make_plan
from ediv.protocol import EXIT_WRONG_STATE, VM_ACTIONS
from ediv.remote import AgentFailed
from ediv.scenario.model import Scenario
from ediv.service import deploy as stages
from ediv.service import exec as exec_stages
from ediv.service.exec import ExecResult, HostRun
from ediv.service.models import stored_model

Progress = Callable[[dict], None]


def _quiet(_event: dict) -> None:
    pass


class Service:
    """The lifecycle of scenarios on one cluster, over one state store connection.

    ``progress`` receives every event (dicts with ``event`` and ``host``/``vm``/``state``...)
    as it happens. Methods that change a scenario take its claim for the call; a caller that
    already holds one (a WBEM request handing its work to a job thread) passes ``claim=``.
    """

    def __init__(self, store: st.StateStore, cluster: Cluster, *, trust_new_hosts: bool = False,
                 progress: Progress = _quiet, workers: int = 32,
                 controller: Controller | None = None):
        self.store = store
        self.cluster = cluster
        self.progress = progress
        self._own_controller = controller is None
        self.ctl = controller or Controller(store, cluster, trust_new_hosts=trust_new_hosts,
                                            progress=progress, workers=workers)

    def close(self) -> None:
        if self._own_controller:
            self.ctl.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads --------------------------------------------------------------------------
    def scenario(self, name: str) -> st.ScenarioRow:
        """The scenario's row; NotFound ("no scenario named ...") when there is none."""
        row = self.store.scenario(name)
        if row is None:
            raise no_scenario(name)
        return row

    def model(self, name: str, row: st.ScenarioRow | None = None) -> Scenario:
        """The stored spec of ``name``, parsed (InputError when it no longer parses)."""
        row = row or self.scenario(name)
        return stored_model(row.spec or "", row.name, row.basedir or ".", True)

    def status(self, name: str) -> dict:
        """The README's ``status --json`` object."""
        return scenario_status(self.store, self.scenario(name))

    # -- claims -------------------------------------------------------------------------
    def take(self, name: str, what: str) -> st.Claim:
        """Claim ``name`` for ``what`` (Busy when another live call holds it; NotFound)."""
        claim = self.store.claim(name, what)
        if claim.interrupted:
            self.progress({"event": "scenario", "scenario": name,
                           "state": "taken over", "message": f"{claim.interrupted} "
                           "was interrupted (its process is gone)"})
        return claim

    def give(self, claim: st.Claim) -> None:
        self.store.unclaim(claim)

    @contextmanager
    def claim(self, name: str, what: str, claim: st.Claim | None = None
              ) -> Iterator[st.Claim]:
        """Hold the scenario's claim for the block: the one given (renewed, not given back at
        the end: its taker gives it back) or a new one (given back at the end)."""
        if claim is not None:
            yield self.store.claim(name, what, token=claim.token)
            return
        mine = self.take(name, what)
        try:
            yield mine
        finally:
            self.give(mine)

    # -- define / edit ------------------------------------------------------------------
    def define(self, spec: str | Scenario, *, basedir: str | None,
               source_name: str = "scenario.xml", algorithm: str | None = None,
               restrictions: str | None = None, appliances: bool = False,
               install: Callable[[str], str] | None = None) -> str:
        """Record a scenario as defined (CIM DefineSystem); returns its name. The spec is
        checked as a deploy would check it (its files under ``basedir``); AlreadyExists when
        the name is taken. ``install(name)``, called under the new row's claim, puts the
        scenario's files in their final place and returns that directory (recorded as its
        basedir); when it fails the row goes again."""
        scenario, text = stages.load(spec, basedir=basedir, source_name=source_name,
                                     cluster=self.cluster, appliances=appliances)
        stages.restrictions_of(restrictions)  # checked now, not at deploy
        name = scenario.name
        token = st.new_token()
        self.store.create_scenario(name, text, basedir=scenario.basedir, algorithm=algorithm,
                                   restrictions=restrictions, state=st.DEFINED, token=token,
                                   what="define")
        try:
            if install is not None:
                self.store.set_basedir(name, install(name))
        except BaseException:
            self.store.delete_scenario(name)
            raise
        self.store.unlock(name, token)
        return name

    # -- the state machine ----------------------------------------------------------------
    def transition(self, name: str, target: str) -> str:
        """Whether scenario ``name`` can go to ``target`` ("deployed", "defined": released
        but kept, "destroyed"): "noop" when it is there already, "now" when no host needs to
        act (destroying a defined scenario), "hosts" when hosts must; WrongState otherwise."""
        row = self.scenario(name)
        state = row.state
        if target == "deployed":
            if state == st.DEPLOYED:
                return "noop"
            if state == st.DEFINED:
                return "hosts"
        elif target == "defined":
            if state == st.DEFINED:
                return "noop"
            if state in (st.DEPLOYED, st.FAILED, st.INTERRUPTED):
                return "hosts"
        elif target == "destroyed":
            return "now" if state == st.DEFINED else "hosts"
        raise WrongState(f"scenario {name!r} is {state}: it cannot become {target} now",
                         name=name, state=state)

    def vm_transition(self, name: str, vm: str, action: str) -> str:
        """What ``action`` on VM ``vm`` comes to: "noop" (already in that state) or the agent
        action to run ("resume" for a start of a paused VM); NotFound for a VM the scenario
        lacks, WrongState when the scenario is not deployed or a stopped VM is to reboot,
        reset or pause."""
        if action not in VM_ACTIONS:
            raise InputError(f"unknown VM action {action!r} (one of {', '.join(VM_ACTIONS)})")
        row = self.scenario(name)
        where = self.store.vm(name, vm)
        if where is None:
            defined = row.state != st.DEPLOYED and any(v.name == vm for v in
                                                       self._model_or_none(row))
            if not defined:
                raise NotFound("VM", vm, scenario=name)
        if where is None or row.state != st.DEPLOYED:
            raise WrongState(f"scenario {name!r} is {row.state}, not deployed", name=name,
                             state=row.state)
        state = where["state"]
        if (action == "start" and state == "running") or \
                (action in ("stop", "shutdown") and state == "stopped") or \
                (action in ("pause", "resume") and state == ("paused" if action == "pause"
                                                              else "running")):
            return "noop"
        if action in ("reboot", "reset", "pause") and state not in ("running", "paused"):
            raise WrongState(f"{vm} is {state}: it cannot {action}", name=name, state=state)
        if action == "start" and state == "paused":
            return "resume"
        return action

    def _model_or_none(self, row: st.ScenarioRow) -> list:
        try:
            return self.model(row.name, row).vms
        except EdivError:
            return []

    def replace_spec(self, name: str, spec: str | Scenario, *, claim: st.Claim | None = None
                     ) -> None:
        """Store a new text for a defined scenario (editing); WrongState unless defined."""
        with self.claim(name, "define", claim):
            row = self.scenario(name)
            if row.state != st.DEFINED:
                raise WrongState(f"scenario {name!r} is {row.state}: only a defined scenario "
                                 "can be changed (release it first)", name=name,
                                 state=row.state)
            _scenario, text = stages.load(spec, basedir=row.basedir,
                                          source_name=f"{name}.xml", cluster=self.cluster)
            if not self.store.set_spec(name, text):
                raise WrongState(f"scenario {name!r} is no longer defined", name=name)

    # -- plan / probe -------------------------------------------------------------------
    def probe(self, hosts: list[str] | None = None) -> dict[str, HostOutcome]:
        """Probe hosts (all of the cluster by default), recording what they said."""
        return self.ctl.probe(hosts)

    def plan(self, spec: str | Scenario | None = None, *, name: str | None = None,
             basedir: str | None = None, source_name: str = "scenario.xml",
             algorithm: str | None = None, restrictions: str | None = None,
             loads: dict[str, float] | None = None, appliances: bool = False) -> Plan:
        """Where every VM would run (``ediv plan``, CIM PlanScenario); nothing is recorded.
        Loads are the hosts' last probed ones, overridden by ``loads``."""
        if name is not None:
            row = self.scenario(name)
            spec, basedir = row.spec or "", row.basedir
            algorithm = algorithm or row.algorithm
            restrictions = restrictions or row.restrictions
        if spec is None:
            raise InputError("plan needs a scenario (spec text, Scenario or a defined name)")
        scenario, _text = stages.load(spec, basedir=basedir, source_name=source_name,
                                      cluster=self.cluster, appliances=appliances)
        measured = {h["name"]: float(h["load"]) for h in self.store.hosts()
                    if h["load"] is not None}
        measured.update(loads or {})
        return make_plan(scenario, self.cluster, algorithm, stages.restrictions_of(restrictions),
                         measured)

    # -- deploy -------------------------------------------------------------------------
    def deploy(self, spec: str | Scenario | None = None, *, name: str | None = None,
               basedir: str | None = None, source_name: str = "scenario.xml",
               algorithm: str | None = None, restrictions: str | None = None,
               loads: dict[str, float] | None = None, job: int | None = None,
               claim: st.Claim | None = None, appliances: bool = False) -> Plan:
        """Deploy spec text / a Scenario (recorded under its own name), or the defined
        scenario ``name`` (its stored spec, algorithm and restrictions): the stages of
        :mod:`ediv.service.deploy`. Returns the plan; any failure is rolled back and raised.
        ``job``: the jobs row to keep informed (percent, result)."""
        from ediv.service.run import run_deploy

        return run_deploy(self, spec, name=name, basedir=basedir, source_name=source_name,
                          algorithm=algorithm, restrictions=restrictions, loads=loads, job=job,
                          claim=claim, appliances=appliances)

    # -- exec ---------------------------------------------------------------------------
    def exec(self, name: str, seq: str, vms: list[str] | None = None, *,
             claim: st.Claim | None = None) -> list[ExecResult]:
        """Run ``seq`` on every VM of a deployed scenario that has something to do in it, or
        only on ``vms`` (VNUML's -M). One :class:`ExecResult` per VM (then one per host whose
        host commands ran). NotFound for an unknown sequence (naming those it has) or VM."""
        with self.claim(name, "exec", claim):
            targets = self.exec_targets(name, seq, vms)  # -- resolve
            runs = self.ctl.run_exec(seq, targets)  # -- run
            return exec_stages.aggregate(targets, runs,  # -- aggregate
                                         [v["name"] for v in self.store.vms(name)])

    def exec_targets(self, name: str, seq: str, vms: list[str] | None = None) -> list:
        """The exec's resolve stage alone (a front end checks a request before starting a
        job): WrongState unless deployed, InputError for an unknown sequence or VM."""
        row = self.scenario(name)
        if row.state != st.DEPLOYED:
            raise WrongState(f"scenario {name!r} is {row.state}, not deployed", name=name,
                             state=row.state)
        vm_hosts = {v["name"]: v["host"] for v in self.store.vms(name)}
        keys = {p["host"]: p["key"] for p in self.store.parts(name)}
        return exec_stages.resolve(self.model(name, row), name, seq, vm_hosts, keys, vms)

    # -- one VM -------------------------------------------------------------------------
    def vm_action(self, name: str, vm: str, action: str, *, claim: st.Claim | None = None
                  ) -> dict:
        """``start``, ``stop`` (graceful), ``reboot`` or ``reset`` (hard) one VM of a deployed
        scenario; returns the agent's result (vm, action, previous, state) plus ``host``."""
        if action not in VM_ACTIONS:
            raise InputError(f"unknown VM action {action!r} (one of {', '.join(VM_ACTIONS)})")
        with self.claim(name, f"{action} {vm}", claim):
            row = self.scenario(name)
            if row.state != st.DEPLOYED:
                raise WrongState(f"scenario {name!r} is {row.state}, not deployed", name=name,
                                 state=row.state)
            where = self.store.vm(name, vm)
            if where is None:
                raise NotFound("VM", vm, scenario=name)
            key = {p["host"]: p["key"] for p in self.store.parts(name)}[where["host"]]
            host = self.ctl.host(where["host"])
            try:
                result = self.ctl.vm(host, key, vm, action)
            except BaseException as exc:
                with contextlib.suppress(Exception):  # the agent may have acted before failing
                    self._refresh_vm_state(name, vm, host, key)
                if isinstance(exc, AgentFailed) and exc.status == EXIT_WRONG_STATE:
                    raise WrongState(str(exc), name=name) from None
                raise
            self.store.set_vm_state(name, vm, result["state"])
            return {**result, "host": host.name}

    def _refresh_vm_state(self, name: str, vm: str, host: Host, key: str) -> None:
        for s in self.ctl.host_status(host, key).get("scenarios", []):
            for v in s.get("vms", []):
                if v.get("name") == vm:
                    self.store.set_vm_state(name, vm, v["state"])

    # -- release / destroy / cleanup ----------------------------------------------------
    def release(self, name: str, purge: bool = False, keep_definition: bool = False, *,
                claim: st.Claim | None = None) -> list[str]:
        """Release every part; returns the hosts that could not be reached (their rows stay
        until a later release or cleanup reaches them; the scenario is then failed).
        ``keep_definition`` leaves the scenario defined (CIM: disabled, deployable again)."""
        from ediv.service.run import run_release

        return run_release(self, name, purge=purge, keep_definition=keep_definition,
                           claim=claim)

    def destroy(self, name: str, *, claim: st.Claim | None = None) -> list[str]:
        """Forget a scenario: a defined one at once, any other after releasing it (returns
        the hosts that could not be reached; then it stays, failed)."""
        with self.claim(name, "destroy", claim) as held:
            if self.transition(name, "destroyed") == "now":
                self.store.delete_scenario(name)
                return []
            return self.release(name, claim=held)

    def cleanup(self) -> dict:
        """Release what the state store knows of (not being changed by a live call), then
        purge whatever the agents still hold that the store does not know."""
        from ediv.service.run import run_cleanup

        return run_cleanup(self)


def scenario_status(store: st.StateStore, row: st.ScenarioRow) -> dict:
    """The README's ``status --json`` object of one scenario row."""
    return {
        "name": row.name,
        "state": row.state,
        "error": row.interrupted_note or row.error,
        "vms": [
            {"name": v["name"], "host": v["host"], "state": v["state"], "type": v["type"]}
            for v in store.vms(row.name)
        ],
        "segments": [
            {"net": s["net"], "hosts": s["hosts"], "kind": s["kind"], "id": s["id"]}
            for s in store.segments(row.name)
        ],
    }


__all__ = ["ExecResult", "HostRun", "Service", "scenario_status"]
