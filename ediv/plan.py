"""Planning: restrictions + partition algorithm -> where every VM runs and which nets span hosts.

A plan is pure data (JSON-able, deterministic). Segment ids come from an allocator: offline
commands draw them from the cluster's pools in order; the controller allocates them in the
state store so that scenarios running at once never share one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ediv.cluster import Cluster, Host
from ediv.errors import EdivError, PlanError
from ediv.partition import registry
from ediv.restrictions import Restrictions, resolve
from ediv.scenario.model import Scenario

# (kind, [(net, hosts)...]) -> one id per net
SegmentAllocator = Callable[[str, list[tuple[str, list[str]]]], list[int]]


@dataclass
class Segment:
    """A net whose VMs land on more than one host: joined by a VLAN or a VXLAN."""

    net: str
    hosts: list[str]
    kind: str  # vlan | vxlan
    id: int

    def to_json(self) -> dict:
        return {"net": self.net, "hosts": list(self.hosts), "kind": self.kind, "id": self.id}

    @classmethod
    def from_json(cls, data: dict) -> Segment:
        return cls(str(data["net"]), [str(h) for h in data["hosts"]], str(data["kind"]),
                   int(data["id"]))


@dataclass
class Plan:
    """Where every VM runs and which nets span hosts (segments), as ``ediv plan --json``
    prints it; stored with the scenario (``to_json`` / ``from_json``)."""

    scenario: str
    algorithm: str
    allocation: dict[str, str]  # VM -> host, in VM order
    hosts: dict[str, list[str]]  # host -> VMs, cluster order (every host, even empty)
    segments: list[Segment]
    host_section: str | None = None  # the host that runs the scenario's <host> section
    notes: list[str] = field(default_factory=list)
    loads: dict[str, float] = field(default_factory=dict)  # host loads the plan was made with

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "algorithm": self.algorithm,
            "allocation": dict(self.allocation),
            "hosts": {h: {"vms": list(vms)} for h, vms in self.hosts.items()},
            "segments": [s.to_json() for s in self.segments],
            "host_section": self.host_section,
            "notes": list(self.notes),
            "loads": dict(self.loads),
        }

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        """A plan as stored (``to_json``'s shape; the state store's ``plan`` column)."""
        try:
            return cls(
                scenario=str(data["scenario"]),
                algorithm=str(data["algorithm"]),
                allocation={str(vm): str(h) for vm, h in data["allocation"].items()},
                hosts={str(h): [str(v) for v in entry["vms"]]
                       for h, entry in data["hosts"].items()},
                segments=[Segment.from_json(s) for s in data.get("segments", [])],
                host_section=data.get("host_section"),
                notes=[str(n) for n in data.get("notes", [])],
                loads={str(h): float(v) for h, v in (data.get("loads") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EdivError(f"a stored plan is not in the plan's shape: {exc!r}") from None

    def used_hosts(self) -> list[str]:
        return [h for h, vms in self.hosts.items() if vms]


def pool_allocator(cluster: Cluster) -> SegmentAllocator:
    """Ids in pool order, for offline planning (nothing else is running)."""

    def allocate(kind: str, nets: list[tuple[str, list[str]]]) -> list[int]:
        count = len(nets)
        pool = cluster.vlan if kind == "vlan" else cluster.vxlan
        if count > len(pool):
            raise PlanError(
                f"the {kind} pool [{pool.first}..{pool.last}] has {len(pool)} ids; "
                f"the plan needs {count} segments"
            )
        return list(range(pool.first, pool.first + count))

    return allocate


def with_loads(cluster: Cluster, loads: Mapping[str, float]) -> list[Host]:
    """The cluster's hosts with measured (or overridden) 1-minute loads applied."""
    hosts = []
    for h in cluster.hosts:
        if h.name in loads:
            h = replace(h, load=float(loads[h.name]))
        hosts.append(h)
    unknown = sorted(set(loads) - {h.name for h in cluster.hosts})
    if unknown:
        raise PlanError(f"--load names hosts not in the cluster: {', '.join(unknown)}")
    return hosts


def make_plan(
    scenario: Scenario,
    cluster: Cluster,
    algorithm: str | None = None,
    restrictions: Restrictions | None = None,
    loads: Mapping[str, float] | None = None,
    allocate: SegmentAllocator | None = None,
) -> Plan:
    if not cluster.hosts:
        raise PlanError(f"{cluster.source}: the cluster has no hosts")
    hosts = with_loads(cluster, loads or {})
    algo = registry.get(algorithm or cluster.default_segmentation)
    placed = resolve(restrictions, scenario, hosts) if restrictions else {}
    result = algo.partition(scenario, hosts, placed)
    _check_complete(scenario, hosts, result.allocation)

    order = [v.name for v in scenario.ordered_vms()]
    allocation = {vm: result.allocation[vm] for vm in order}
    per_host: dict[str, list[str]] = {h.name: [] for h in hosts}
    for vm, host in allocation.items():
        per_host[host].append(vm)

    host_section = _host_section_host(scenario, allocation, [h.name for h in hosts])
    spans = _net_spans(scenario, allocation, host_section, [h.name for h in hosts])
    kind = cluster.interconnect
    spanning = [(net, hs) for net, hs in spans if len(hs) > 1]
    ids = (allocate or pool_allocator(cluster))(kind, spanning) if spanning else []
    segments = [Segment(net, hs, kind, i) for (net, hs), i in zip(spanning, ids, strict=True)]
    return Plan(
        scenario=scenario.name,
        algorithm=algo.name,
        allocation=allocation,
        hosts=per_host,
        segments=segments,
        host_section=host_section,
        notes=list(result.notes),
        loads={h.name: h.load for h in hosts},
    )


def _check_complete(scenario: Scenario, hosts: list[Host], allocation: Mapping[str, str]) -> None:
    """Guard against a faulty (third-party) algorithm: every VM once, on a known host."""
    names = {h.name for h in hosts}
    missing = [v.name for v in scenario.vms if v.name not in allocation]
    bad = sorted(f"{vm}->{h}" for vm, h in allocation.items() if h not in names)
    if missing or bad:
        raise PlanError(
            "the partition algorithm returned an incomplete plan"
            + (f"; unplaced: {', '.join(missing[:10])}" if missing else "")
            + (f"; unknown hosts: {', '.join(bad[:10])}" if bad else "")
        )


def _host_section_host(
    scenario: Scenario, allocation: Mapping[str, str], host_order: list[str]
) -> str | None:
    """The <host> section runs whole on one host: the one with most VMs on its nets.

    Running it on every host would give the same address to several host interfaces of a
    spanning net; one host is what a VNUML user on a single machine had."""
    section = scenario.host
    if section is None:
        return None
    nets = {hi.net for hi in section.hostifs}
    count = dict.fromkeys(host_order, 0)
    for vm in scenario.vms:
        if nets.intersection(vm.nets):
            count[allocation[vm.name]] += 1
    return max(host_order, key=lambda h: (count[h], -host_order.index(h)))


def _net_spans(
    scenario: Scenario,
    allocation: Mapping[str, str],
    host_section: str | None,
    host_order: list[str],
) -> list[tuple[str, list[str]]]:
    """Each net with the hosts it lands on (cluster order), in document order of nets."""
    present: dict[str, set[str]] = {n.name: set() for n in scenario.nets}
    for vm in scenario.vms:
        host = allocation[vm.name]
        for iface in vm.interfaces:
            present.setdefault(iface.net, set()).add(host)
    if scenario.host is not None and host_section is not None:
        for hi in scenario.host.hostifs:
            present.setdefault(hi.net, set()).add(host_section)
    rank = {h: i for i, h in enumerate(host_order)}
    return [(net, sorted(hs, key=rank.__getitem__)) for net, hs in present.items()]
