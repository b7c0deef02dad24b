"""``deploy`` as named stages, in the order :func:`run` calls them:

    load -> probe -> plan -> allocate -> split -> images -> bundle -> upload -> build -> commit
                                                                       (any failure) -> rollback

:func:`ediv.service.run.run_deploy` runs them on one screen; load..bundle are here, upload +
build are ``Controller.build_parts`` (the agent's ``receive`` and ``deploy --key`` on every
host in parallel), commit and :func:`ediv.service.run.rollback` are in run.py.
The state store is written *before* each stage acts on hosts (scenario row, plan, segments,
addressing, parts with their keys, VM rows), so a process killed at any point leaves a record
from which ``release`` or ``cleanup`` removes everything. Stages before ``upload`` change no
host: a failure there only undoes store rows (:func:`undo_records`); from ``upload`` on, a
failure on any host stops the others and :func:`rollback` releases every part.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ediv import host_access
from ediv import state as st
from ediv.bundle import FileScope, build_bundle, check_references
from ediv.cluster import Cluster, Host
from ediv.errors import EdivError
from ediv.images.distribute import ensure_images
from ediv.plan import Plan, make_plan
from ediv.restrictions import Restrictions, parse_restrictions
from ediv.scenario.loader import load_string
from ediv.scenario.model import Scenario
from ediv.scenario.serializer import to_xml
from ediv.split import HostPart, split


@dataclass
class DeployRun:
    """Everything one deploy knows, filled stage by stage."""

    name: str
    spec: str  # the text stored (exactly what was checked)
    scenario: Scenario
    restrictions_text: str | None = None
    restrictions: Restrictions | None = None
    algorithm: str | None = None
    loads: dict[str, float] = field(default_factory=dict)
    job: int | None = None
    before: str | None = None  # the scenario's state before (DEFINED: it stays defined)
    probes: dict[str, dict] = field(default_factory=dict)  # host -> probe result
    plan: Plan | None = None
    parts: list[HostPart] = field(default_factory=list)
    bundles: dict[str, bytes] = field(default_factory=dict)


def load(spec: str | bytes | Scenario, *, basedir: str | None, source_name: str,
         cluster: Cluster, appliances: bool = False) -> tuple[Scenario, str]:
    """Stage load: the scenario and the exact text to store, checked once. ``spec`` is the
    VNUML text (``basedir`` is where its files resolve) or an already loaded Scenario (its
    text is serialized). ``appliances``: ``vm@appliance`` may name local OVF packages (only for
    a local user's own file, never for text from a remote client)."""
    if isinstance(spec, Scenario):
        text = to_xml(spec).decode("utf-8")
        basedir = basedir or spec.basedir
    else:
        text = spec.decode("utf-8", errors="replace") if isinstance(spec, bytes) else spec
    scenario, _warnings = load_string(text, source_name, basedir or ".", deployable=True,
                                      appliances=appliances)
    # the files it names resolve inside its own directory or the admin's file_dirs
    check_references(scenario, FileScope.of(scenario.basedir, cluster.file_dirs))
    return scenario, text


def restrictions_of(text: str | None) -> Restrictions | None:
    return parse_restrictions(text.encode("utf-8"), "restrictions") if text else None


def probe(run: DeployRun, probe_hosts: Callable[[], dict]) -> None:
    """Stage probe: every host answers before anything is built."""
    outcomes = probe_hosts()
    down = {h: o.error for h, o in outcomes.items() if not o.ok}
    if down:
        raise EdivError("hosts failed probe, nothing was built:\n  "
                        + "\n  ".join(f"{err}" for err in down.values()))
    run.probes = {h: o.result for h, o in outcomes.items()}


def plan(run: DeployRun, store: st.StateStore, cluster: Cluster) -> None:
    """Stages plan + allocate: placement, segment ids from the store's pools (never one in
    use), the plan recorded, MAC base and management blocks allocated."""
    measured = {h: float(r.get("load", 0.0)) for h, r in run.probes.items()}
    measured.update(run.loads)

    def allocate(kind: str, nets: list[tuple[str, list[str]]]) -> list[int]:
        pool = cluster.vlan if kind == "vlan" else cluster.vxlan
        return store.allocate_segments(run.name, kind, pool.first, pool.last, nets)

    run.plan = make_plan(run.scenario, cluster, run.algorithm, run.restrictions, measured,
                         allocate)
    store.set_plan(run.name, run.plan.to_json(), run.plan.algorithm)


def split_parts(run: DeployRun, store: st.StateStore, cluster: Cluster) -> None:
    """Stage split: one sub-scenario and deploy info per host; refused when a host's agent
    does not allow what its part needs."""
    mac_base, mgmt_offset = store.allocate_addressing(run.name, len(run.scenario.vms),
                                                      mgmt_capacity(cluster))
    run.parts = split(run.scenario, run.plan, cluster, mac_base=mac_base,
                      mgmt_offset=mgmt_offset)
    refused = [f"{p.host}: {r}" for p in run.parts for r in
               host_access.refusals(p.scenario, run.probes[p.host].get("allow"))]
    if refused:
        raise EdivError("refused before anything was built:\n  " + "\n  ".join(refused))


def images(run: DeployRun, conns, host_of: Callable[[str], Host],
           progress: Callable[[dict], None]) -> None:
    """Stage images: the parts' ``image:NAME`` filesystems pinned to the digest's path in each
    host's image store (so it comes before bundle), and every host given the images its VMs
    use, by digest, over the controller's SSH connections (``ediv.images.distribute``). It
    adds files to the hosts' image stores only: a failure here builds nothing, and images a
    host received stay for the next deploy."""
    ensure_images(conns, [(host_of(p.host), p) for p in run.parts], progress)


def bundle(run: DeployRun, store: st.StateStore, cluster: Cluster,
           host_of: Callable[[str], Host]) -> None:
    """Stage bundle: a key per part, its bundle, the part and VM rows recorded."""
    used = store.used_keys()
    for part in run.parts:
        key = new_key(used)
        used.add(key)
        part.info = part.info.with_key(key)
        info = part.info.to_json()
        run.bundles[part.host] = build_bundle(part.scenario, info, run.scenario.basedir,
                                              cluster.file_dirs)
        store.add_part(run.name, part.host, key, part.scenario.name, info)
    types = {v.name: v.type for v in run.scenario.vms}
    store.set_vms(run.name, [(vm, host, types[vm] or host_of(host).vm_type, "planned")
                             for vm, host in run.plan.allocation.items()])


def undo_records(run: DeployRun, store: st.StateStore, error: str) -> None:
    """A failure before any host acted: the rows go (a defined scenario stays defined)."""
    store.free_segments(run.name)
    if run.before == st.DEFINED:
        store.reset_to_defined(run.name, error)
    else:
        store.delete_scenario(run.name)
    if run.job:
        store.finish_job(run.job, False, error=error)


def mgmt_capacity(cluster: Cluster) -> int:
    return 2 ** (32 - cluster.mgmt_network_mask) // 4


def new_key(used: set[str]) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        key = "".join(secrets.choice(alphabet) for _ in range(5))
        if key not in used and not key[0].isdigit():
            return key


def cluster_record(cluster: Cluster) -> tuple[str, str] | None:
    """(source, text) of the cluster file, kept with the scenario so release needs no -c."""
    path = Path(cluster.source)
    return (cluster.source, path.read_text(encoding="utf-8")) if path.is_file() else None
