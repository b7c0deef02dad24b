"""The lifecycle runs of :class:`ediv.service.Service`: deploy (its stages on one screen),
release and cleanup. Kept apart from core.py so that each reads top to bottom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ediv import state as st
from ediv.cluster import Host
from ediv.errors import AlreadyExists, EdivError, InputError, WrongState
from ediv.plan import Plan
from ediv.scenario.model import Scenario
from ediv.service import deploy as stages

if TYPE_CHECKING:
    from ediv.service.core import Service


def run_deploy(svc: Service, spec: str | Scenario | None, *, name: str | None,
               basedir: str | None, source_name: str, algorithm: str | None,
               restrictions: str | None, loads: dict[str, float] | None, job: int | None,
               claim: st.Claim | None, appliances: bool) -> Plan:
    store, cluster = svc.store, svc.cluster
    if (spec is None) == (name is None):
        raise InputError("deploy takes a scenario (spec text or Scenario) or the name of a "
                         "defined one, not both")
    if name is not None:  # a defined scenario: what was stored is what is deployed
        row = svc.scenario(name)
        if row.state != st.DEFINED:
            raise (AlreadyExists("scenario", name, state=row.state)
                   if row.state == st.DEPLOYED else
                   WrongState(f"scenario {name!r} is {row.state}, not defined", name=name,
                              state=row.state))
        spec, basedir = row.spec or "", row.basedir
        source_name = f"{name}.xml"
        algorithm = algorithm or row.algorithm
        restrictions = restrictions or row.restrictions
    try:
        # -- load: the text is read once; the spec stored is what was checked
        scenario, text = stages.load(spec, basedir=basedir, source_name=source_name,
                                     cluster=cluster, appliances=appliances)
        if name is not None and scenario.name != name:
            raise InputError(f"the stored spec of {name!r} names {scenario.name!r}")
        rules = stages.restrictions_of(restrictions)
    except EdivError as exc:
        if job:
            store.finish_job(job, False, error=str(exc))
        raise
    run = stages.DeployRun(scenario.name, text, scenario, restrictions, rules, algorithm,
                           dict(loads or {}), job)
    # the scenario row, claimed for this call (a defined one is taken over)
    token = claim.token if claim else st.new_token()
    run.before = store.create_scenario(run.name, text, basedir=scenario.basedir,
                                       algorithm=algorithm, restrictions=restrictions,
                                       state=st.DEPLOYING, token=token)
    try:
        record = stages.cluster_record(cluster)
        if record:
            store.set_cluster(run.name, *record)
        stages.probe(run, svc.ctl.probe)  # -- probe
        stages.plan(run, store, cluster)  # -- plan + allocate
        stages.split_parts(run, store, cluster)  # -- split
        stages.images(run, svc.ctl.conns, svc.ctl.host, svc.progress)  # -- images
        stages.bundle(run, store, cluster, svc.ctl.host)  # -- bundle
    except BaseException as exc:
        stages.undo_records(run, store, str(exc))
        raise
    # -- upload + build on all hosts in parallel; any failure rolls every host back
    failed = svc.ctl.build_parts(run.name, run.parts, run.bundles,
                                 total=len(scenario.vms), job=job)
    if failed:
        for h, err in failed.items():
            store.set_part_state(run.name, h, "failed", err)
            svc.progress({"event": "host", "host": h, "state": "failed", "error": err})
        report = rollback(svc, run.name, keep_definition=run.before == st.DEFINED,
                          token=token)
        message = "deploy failed:\n  " + "\n  ".join(failed.values()) + "\n" + report
        if job:
            store.finish_job(job, False, error=message)
        raise EdivError(message)
    # -- commit
    store.set_scenario_state(run.name, st.DEPLOYED)
    if claim is None:
        store.unlock(run.name, token)
    if job:
        store.finish_job(job, True, run.plan.to_json())
    return run.plan


def rollback(svc: Service, name: str, *, keep_definition: bool, token: str | None) -> str:
    """Stage rollback: release every part of a failed deploy; a scenario that was defined
    before stays defined, with its files, else it is forgotten."""
    store = svc.store
    svc.progress({"event": "scenario", "scenario": name, "state": "rolling back"})
    left = svc.ctl.release_parts(name, purge=True)
    if left:
        store.set_scenario_state(name, st.FAILED, "deploy failed; rollback could not reach "
                                 + ", ".join(left)
                                 + " (run 'ediv release' or 'ediv cleanup' when they are back)")
        if token:
            store.unlock(name, token)
        return "rollback could not reach: " + ", ".join(left)
    store.free_segments(name)
    if keep_definition:
        store.reset_to_defined(name, "deploy failed and was rolled back")
        return "rolled back: nothing is left on any host; the scenario stays defined"
    store.delete_scenario(name)
    return "rolled back: nothing is left on any host"


def run_release(svc: Service, name: str, *, purge: bool, keep_definition: bool,
                claim: st.Claim | None) -> list[str]:
    store = svc.store
    with svc.claim(name, "release", claim):
        svc.scenario(name)
        store.set_scenario_state(name, st.RELEASING)
        left = svc.ctl.release_parts(name, purge)
        if left:
            store.set_scenario_state(name, st.FAILED, "release could not reach " + ", ".join(left))
            return left
        store.free_segments(name)
        if keep_definition:
            store.set_vms(name, [])
            store.set_scenario_state(name, st.DEFINED)
        else:
            store.delete_scenario(name)
    svc.progress({"event": "scenario", "scenario": name, "state": "released"})
    return []


def run_cleanup(svc: Service) -> dict:
    report: dict = {"released": [], "left": {}, "purged": {}}
    for row in svc.store.scenarios():
        try:
            left = svc.release(row.name, purge=True)
        except EdivError as exc:
            report["left"][row.name] = [str(exc)]
            continue
        if left:
            report["left"][row.name] = left
        else:
            report["released"].append(row.name)
    known = svc.store.used_keys()
    for h, outcome in svc.ctl.purge_unknown(known).items():
        report["purged"][h] = outcome.result.get("purged", []) if outcome.ok else outcome.error
    return report


__all__ = ["Host", "rollback", "run_cleanup", "run_deploy", "run_release"]
