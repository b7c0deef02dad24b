"""The distributed controller: EDIV's ``ediv_ctl`` (-t deploy, -x exec, -d release, -P purge).

Every step that touches hosts runs on all of them in parallel over SSH. The state store is
written *before* each step acts, so that a controller killed at any point leaves a record
from which ``release`` or ``cleanup`` removes everything (such a scenario reads as
``interrupted`` once its process is gone).

Time is bounded: a host silent for the cluster's ``host_timeout`` fails its step (and a
deploy rolls back); each agent verb has a deadline the agent enforces itself. A bundle is
sent with the agent's ``receive`` verb into its private state directory, then ``deploy
--key`` takes the scenario's lock before anything else and refuses when the bundle is gone:
a release that ran first removed it, so a late agent (stopped, resumed) builds nothing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ediv import host_access, xmlsafe
from ediv import state as st
from ediv.agent import EXIT_WRONG_STATE, VM_ACTIONS
from ediv.bundle import FileScope, build_bundle, check_references
from ediv.cluster import Cluster, Host
from ediv.errors import EdivError, InputError, WrongState
from ediv.plan import Plan, make_plan
from ediv.remote import AgentFailed, Connections, HostUnreachable, SshOptions, run_agent
from ediv.restrictions import load_restrictions
from ediv.scenario.loader import load_string
from ediv.split import split

Progress = Callable[[dict], None]
AGENT_TIMEOUT = 1800.0  # deadline of a deploy, exec or release verb on a host
SHORT_TIMEOUT = 60.0  # probe, status


@dataclass
class HostOutcome:
    host: str
    ok: bool
    error: str | None = None
    result: dict = field(default_factory=dict)


def _quiet(_event: dict) -> None:
    pass


class Controller:
    def __init__(
        self,
        store: st.StateStore,
        cluster: Cluster,
        *,
        trust_new_hosts: bool = False,
        progress: Progress = _quiet,
        workers: int = 32,
    ):
        self.store = store
        self.cluster = cluster
        self.progress = progress
        self.workers = workers
        self.conns = Connections(SshOptions.from_cluster(cluster, trust_new=trust_new_hosts))

    def close(self) -> None:
        self.conns.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------
    def _host(self, name: str) -> Host:
        host = self.cluster.host(name)
        if host is None:
            raise EdivError(f"host {name!r} is not in {self.cluster.source}")
        return host

    def _parallel(self, hosts: list[str], work: Callable[[Host], dict]) -> dict[str, HostOutcome]:
        def one(name: str) -> HostOutcome:
            try:
                return HostOutcome(name, True, result=work(self._host(name)) or {})
            except (AgentFailed, HostUnreachable, EdivError) as exc:
                return HostOutcome(
                    name, False, error=str(exc), result=getattr(exc, "result", {}) or {}
                )
            except Exception as exc:  # a bug or an unexpected transport error: report it
                return HostOutcome(name, False, error=f"{name}: {type(exc).__name__}: {exc}")

        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(hosts))) as pool:
            return {o.host: o for o in pool.map(one, hosts)}

    def _emit(self, **event) -> None:
        self.progress(event)

    # -- probe ---------------------------------------------------------------------------
    def probe(self, hosts: list[str] | None = None) -> dict[str, HostOutcome]:
        names = hosts or [h.name for h in self.cluster.hosts]

        def work(host: Host) -> dict:
            self._emit(event="host", host=host.name, state="probing")
            result = run_agent(self.conns, host, "probe", timeout=SHORT_TIMEOUT)
            self.store.record_probe(host, result, "up")
            self._emit(event="host", host=host.name, state="up", load=result.get("load"))
            return result

        outcomes = self._parallel(names, work)
        for o in outcomes.values():
            if not o.ok:
                self.store.record_probe(self._host(o.host), None, "unreachable")
                self._emit(event="host", host=o.host, state="unreachable", error=o.error)
        return outcomes

    # -- deploy (EDIV -t) ----------------------------------------------------------------
    def deploy(
        self,
        scenario_path: str,
        *,
        algorithm: str | None = None,
        restrictions_path: str | None = None,
        loads: dict[str, float] | None = None,
        job: int | None = None,
    ) -> Plan:
        data = xmlsafe.read_file(scenario_path)  # read once: the spec stored is what was checked
        scenario, _warnings = load_string(data, scenario_path,
                                          str(Path(scenario_path).resolve().parent),
                                          deployable=True, appliances=True)
        # the files it names resolve inside its own directory or the admin's file_dirs
        check_references(scenario, FileScope.of(scenario.basedir, self.cluster.file_dirs))
        restrictions = load_restrictions(restrictions_path) if restrictions_path else None
        name = scenario.name
        spec = data.decode("utf-8", errors="replace")
        before = self.store.create_scenario(
            name, spec, basedir=scenario.basedir, algorithm=algorithm, state=st.DEPLOYING
        )
        try:
            if Path(self.cluster.source).is_file():
                self.store.set_cluster(
                    name, self.cluster.source, Path(self.cluster.source).read_text(encoding="utf-8")
                )
            # 1. every host answers before anything is built
            probes = self.probe()
            down = {h: o.error for h, o in probes.items() if not o.ok}
            if down:
                raise EdivError(
                    "hosts failed probe, nothing was built:\n  "
                    + "\n  ".join(f"{err}" for err in down.values())
                )
            measured = {h: float(o.result.get("load", 0.0)) for h, o in probes.items()}
            measured.update(loads or {})

            # 2. plan, allocate, split (all recorded before any host acts)
            def allocate(kind: str, nets: list[tuple[str, list[str]]]) -> list[int]:
                pool = self.cluster.vlan if kind == "vlan" else self.cluster.vxlan
                return self.store.allocate_segments(name, kind, pool.first, pool.last, nets)

            plan = make_plan(scenario, self.cluster, algorithm, restrictions, measured, allocate)
            self.store.set_plan(name, plan.to_json(), plan.algorithm)
            mac_base, mgmt_offset = self.store.allocate_addressing(
                name, len(scenario.vms), _mgmt_capacity(self.cluster)
            )
            used_keys = self.store.used_keys()
            parts = split(scenario, plan, self.cluster, mac_base=mac_base, mgmt_offset=mgmt_offset)
            refused = [f"{p.host}: {r}" for p in parts for r in
                       host_access.refusals(p.scenario, probes[p.host].result.get("allow"))]
            if refused:
                raise EdivError("refused before anything was built:\n  " + "\n  ".join(refused))
            # image:NAME filesystems: pinned to each host's store path, shipped by digest
            # (must run before the bundles are built: it rewrites the sub-scenarios)
            from ediv.images.distribute import ensure_images

            ensure_images(self.conns, [(self._host(p.host), p) for p in parts], self.progress)
            bundles: dict[str, bytes] = {}
            for part in parts:
                key = _new_key(used_keys)
                used_keys.add(key)
                part.deploy["key"] = key
                bundles[part.host] = build_bundle(part.scenario, part.deploy, scenario.basedir,
                                               self.cluster.file_dirs)
                self.store.add_part(name, part.host, key, part.scenario.name, part.deploy)
            types = {v.name: v.type for v in scenario.vms}
            self.store.set_vms(
                name,
                [
                    (vm, host, types[vm] or self._host(host).vm_type, "planned")
                    for vm, host in plan.allocation.items()
                ],
            )
        except BaseException as exc:
            self.store.free_segments(name)
            if before == st.DEFINED:  # nothing was built: back to what it was
                self.store.reset_to_defined(name, str(exc))
            else:
                self.store.delete_scenario(name)
            if job:
                self.store.finish_job(job, False, error=str(exc))
            raise

        # 3. all hosts build in parallel; any failure rolls every host back
        total = max(1, len(scenario.vms))
        ready = [0]

        def work(host: Host) -> dict:
            part = next(p for p in parts if p.host == host.name)
            key = part.deploy["key"]
            self.store.set_part_state(name, host.name, "deploying")
            self._emit(event="host", host=host.name, state="uploading")
            run_agent(self.conns, host, "receive", "--key", key, stdin=bundles[host.name],
                      timeout=AGENT_TIMEOUT)

            def on_event(event: dict) -> None:
                event = {**event, "host": host.name}
                if event.get("event") == "vm" and event.get("state") in ("running", "ready"):
                    ready[0] += 1
                    if job:
                        self.store.job_progress(job, int(100 * ready[0] / total))
                self.progress(event)

            result = run_agent(self.conns, host, "deploy", "--key", key, on_event=on_event,
                               timeout=AGENT_TIMEOUT)
            self.store.set_part_state(name, host.name, "deployed")
            self.store.set_vm_states(name, host.name, "running")
            return result

        def guarded(host: Host) -> dict:
            try:
                return work(host)
            except BaseException:
                # the others stop too: their agents see the connection go and roll back
                # at once, instead of finishing a deploy that is rolled back anyway
                for other in parts:
                    if other.host != host.name:
                        self.conns.drop(self._host(other.host))
                raise

        outcomes = self._parallel([p.host for p in parts], guarded)
        failed = {h: o.error for h, o in outcomes.items() if not o.ok}
        if failed:
            for h, err in failed.items():
                self.store.set_part_state(name, h, "failed", err)
                self._emit(event="host", host=h, state="failed", error=err)
            report = self._rollback(name, keep_definition=before == st.DEFINED)
            message = "deploy failed:\n  " + "\n  ".join(failed.values()) + "\n" + report
            if job:
                self.store.finish_job(job, False, error=message)
            raise EdivError(message)
        self.store.set_scenario_state(name, st.DEPLOYED)
        self.store.unlock(name)
        if job:
            self.store.finish_job(job, True, plan.to_json())
        return plan

    def _rollback(self, name: str, keep_definition: bool = False) -> str:
        """Release every part of a failed deploy; a scenario that was defined before (CIM)
        stays defined, with its files, else it is forgotten."""
        self._emit(event="scenario", scenario=name, state="rolling back")
        left = self._release_parts(name, purge=True)
        if left:
            self.store.set_scenario_state(
                name,
                st.FAILED,
                "deploy failed; rollback could not reach "
                + ", ".join(left)
                + " (run 'ediv release' or 'ediv cleanup' when they are back)",
            )
            self.store.unlock(name)
            return "rollback could not reach: " + ", ".join(left)
        if keep_definition:
            self.store.reset_to_defined(name, "deploy failed and was rolled back")
            return "rolled back: nothing is left on any host; the scenario stays defined"
        self.store.free_segments(name)
        self.store.delete_scenario(name)
        return "rolled back: nothing is left on any host"

    # -- exec (EDIV -x) ------------------------------------------------------------------
    def exec(self, name: str, seq: str, vms: list[str] | None = None) -> list[dict]:
        """Run ``seq`` on every VM of scenario ``name``, or only on ``vms`` (VNUML's -M: then
        the hosts of other VMs are not contacted and host commands do not run)."""
        row = self.store.scenario(name)
        if row is None:
            raise EdivError(f"no scenario named {name!r}")
        if row.state != st.DEPLOYED:
            raise EdivError(f"scenario {name!r} is {row.state}, not deployed")
        parts = self.store.parts(name)
        keys = {p["host"]: p["key"] for p in parts}
        only: dict[str, list[str]] = {}
        if vms:
            where = {v["name"]: v["host"] for v in self.store.vms(name)}
            unknown = sorted(set(vms) - set(where))
            if unknown:
                raise EdivError(f"scenario {name!r} has no VM {', '.join(map(repr, unknown))} "
                                f"(it has: {', '.join(sorted(where))})")
            for vm in dict.fromkeys(vms):
                only.setdefault(where[vm], []).append(vm)
            keys = {h: k for h, k in keys.items() if h in only}

        def work(host: Host) -> dict:
            return run_agent(
                self.conns,
                host,
                "exec",
                seq,
                *(a for vm in only.get(host.name, ()) for a in ("--vm", vm)),
                "--key",
                keys[host.name],
                on_event=lambda e: self.progress({**e, "host": host.name}),
                timeout=AGENT_TIMEOUT,
            )

        outcomes = self._parallel(list(keys), work)
        results: list[dict] = []
        for host in keys:
            o = outcomes[host]
            if not o.ok:
                results.append({"vm": None, "host": host, "exit_code": None, "output": o.error})
                continue
            for r in o.result.get("results", []):
                results.append(
                    {
                        "vm": r.get("vm"),
                        "host": host,
                        "exit_code": r.get("exit_code"),
                        "output": r.get("output", ""),
                    }
                )
        order = {v["name"]: i for i, v in enumerate(self.store.vms(name))}
        results.sort(key=lambda r: order.get(r["vm"], -1))
        return results

    # -- one VM --------------------------------------------------------------------------
    def vm_state(self, name: str, vm: str, action: str) -> dict:
        """``start``, ``stop`` (graceful), ``reboot`` or ``reset`` (hard) one VM of a deployed
        scenario on the host it runs on; returns the agent's result plus ``host``."""
        if action not in VM_ACTIONS:
            raise InputError(f"unknown VM action {action!r} (one of {', '.join(VM_ACTIONS)})")
        row = self.store.scenario(name)
        if row is None:
            raise EdivError(f"no scenario named {name!r}")
        if row.state != st.DEPLOYED:
            raise WrongState(f"scenario {name!r} is {row.state}, not deployed")
        where = self.store.vm(name, vm)
        if where is None:
            raise InputError(f"scenario {name!r} has no VM named {vm!r}")
        key = {p["host"]: p["key"] for p in self.store.parts(name)}[where["host"]]
        host = self._host(where["host"])
        try:
            result = run_agent(self.conns, host, "vm", vm, action, "--key", key,
                               on_event=lambda e: self.progress({**e, "host": host.name}),
                               timeout=AGENT_TIMEOUT)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the agent may have acted before failing
                self._refresh_vm_state(name, vm, host, key)
            if isinstance(exc, AgentFailed) and exc.status == EXIT_WRONG_STATE:
                raise WrongState(str(exc)) from None
            raise
        self.store.set_vm_state(name, vm, result["state"])
        return {**result, "host": host.name}

    def _refresh_vm_state(self, name: str, vm: str, host: Host, key: str) -> None:
        status = run_agent(self.conns, host, "status", "--key", key, timeout=SHORT_TIMEOUT)
        for s in status.get("scenarios", []):
            for v in s.get("vms", []):
                if v.get("name") == vm:
                    self.store.set_vm_state(name, vm, v["state"])

    # -- release (EDIV -d / -P) ----------------------------------------------------------
    def release(self, name: str, purge: bool = False, keep_definition: bool = False) -> list[str]:
        """Release every part; returns the hosts that could not be reached (their rows stay
        until a later release or cleanup reaches them). ``keep_definition`` leaves the
        scenario defined (CIM: disabled, deployable again) instead of forgetting it."""
        row = self.store.scenario(name)
        if row is None:
            raise EdivError(f"no scenario named {name!r}")
        self.store.lock(name)
        self.store.set_scenario_state(name, st.RELEASING)
        left = self._release_parts(name, purge)
        if left:
            self.store.set_scenario_state(
                name, st.FAILED, "release could not reach " + ", ".join(left)
            )
            self.store.unlock(name)
            return left
        self.store.free_segments(name)
        if keep_definition:
            self.store.set_vms(name, [])
            self.store.set_scenario_state(name, st.DEFINED)
            self.store.unlock(name)
        else:
            self.store.delete_scenario(name)
        self._emit(event="scenario", scenario=name, state="released")
        return []

    def _release_parts(self, name: str, purge: bool) -> list[str]:
        parts = {p["host"]: p for p in self.store.parts(name)}

        def work(host: Host) -> dict:
            self._emit(event="host", host=host.name, state="releasing")
            result = run_agent(
                self.conns,
                host,
                "purge" if purge else "release",
                "--key",
                parts[host.name]["key"],
                on_event=lambda e: self.progress({**e, "host": host.name}),
                timeout=AGENT_TIMEOUT,
            )
            self.store.remove_part(name, host.name)
            self._emit(event="host", host=host.name, state="released")
            return result

        unknown = [h for h in parts if self.cluster.host(h) is None]
        outcomes = self._parallel([h for h in parts if h not in unknown], work)
        left = unknown + [h for h, o in outcomes.items() if not o.ok]
        for h in left:
            err = outcomes[h].error if h in outcomes else "host no longer in the cluster file"
            self.store.set_part_state(name, h, "unreachable", err)
        return left

    # -- status --------------------------------------------------------------------------
    def status(self, name: str) -> dict:
        row = self.store.scenario(name)
        if row is None:
            raise EdivError(f"no scenario named {name!r}")
        return scenario_status(self.store, row)

    # -- cleanup -------------------------------------------------------------------------
    def cleanup(self) -> dict:
        """Release what the state store knows of (not being changed by a live process),
        then purge whatever the agents still hold that the store does not know."""
        report: dict = {"released": [], "left": {}, "purged": {}}
        for row in self.store.scenarios():
            try:
                left = self.release(row.name, purge=True)
            except EdivError as exc:
                report["left"][row.name] = [str(exc)]
                continue
            if left:
                report["left"][row.name] = left
            else:
                report["released"].append(row.name)
        known = self.store.used_keys()

        def work(host: Host) -> dict:
            status = run_agent(self.conns, host, "status", timeout=SHORT_TIMEOUT)
            purged = []
            for sc in status.get("scenarios", []):
                key = sc.get("key")
                if key and key not in known:
                    run_agent(self.conns, host, "purge", "--key", key, timeout=AGENT_TIMEOUT)
                    purged.append(key)
            return {"purged": purged}

        for h, o in self._parallel([h.name for h in self.cluster.hosts], work).items():
            report["purged"][h] = o.result.get("purged", []) if o.ok else o.error
        return report


def _per_vm(host: str, commands: list[dict]) -> list[dict]:
    """The agent reports each command; users see each VM: its first failing exit code (0
    when all succeeded) and the outputs of its commands in order."""
    out: dict[object, dict] = {}
    for r in commands:
        entry = out.setdefault(r.get("vm"), {"vm": r.get("vm"), "host": host, "exit_code": 0,
                                             "output": ""})
        if entry["exit_code"] == 0 and r.get("exit_code"):
            entry["exit_code"] = r["exit_code"]
        entry["output"] += r.get("output", "")
    return list(out.values())


def scenario_status(store: st.StateStore, row: st.ScenarioRow) -> dict:
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


def _mgmt_capacity(cluster: Cluster) -> int:
    return 2 ** (32 - cluster.mgmt_network_mask) // 4


def _new_key(used: set[str]) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        key = "".join(secrets.choice(alphabet) for _ in range(5))
        if key not in used and not key[0].isdigit():
            return key
