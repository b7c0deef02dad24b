"""WeightedRoundRobin (EDIV's load-aware segmentation) and DynamicWeightedRoundRobin.

Both hand out contiguous blocks of VMs (in VNUML order) by per-host quotas; they differ in
how the quotas are computed once the cluster is loaded. While every host's load is below
``LOADED`` they are RoundRobin, as EDIV's WeightedRoundRobin was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition.api import PartitionResult
from ediv.partition.common import Placement, round_half_away_from_zero
from ediv.partition.roundrobin import RoundRobin
from ediv.scenario.model import Scenario

LOADED = 0.2  # a host at or above this 1-minute load makes the cluster "loaded"
MAX_NOTED_VMS = 10


def wrr_shares(loads: Sequence[float]) -> list[float]:
    """EDIV's shares in percent (sum 100) for hosts with these loads; needs >= 2 hosts.

    share_i = (100 - 100 * load_i / sum(loads)) / (N - 1), clamped to [50/N, 150/N],
    then rescaled to sum 100. A zero sum of loads gives equal shares."""
    n = len(loads)
    if n < 2:
        raise PlanError(f"WeightedRoundRobin needs at least 2 hosts, the cluster has {n}")
    total = sum(loads)
    if total <= 0:
        return [100.0 / n] * n
    raw = [(100.0 - 100.0 * load / total) / (n - 1) for load in loads]
    clamped = [min(max(s, 50.0 / n), 150.0 / n) for s in raw]
    scale = 100.0 / sum(clamped)
    return [s * scale for s in clamped]


def dynamic_shares(hosts: Sequence[Host]) -> list[float]:
    """Shares in percent (sum 100) proportional to ``cpu_i * (1 - min(load_i, 1))``.

    When every host is fully loaded (all products 0) the shares follow ``cpu`` alone."""
    weights = [max(h.cpu, 0) * (1.0 - min(max(h.load, 0.0), 1.0)) for h in hosts]
    if sum(weights) <= 0:
        weights = [float(max(h.cpu, 0)) for h in hosts]
    if sum(weights) <= 0:
        weights = [1.0] * len(hosts)
    total = sum(weights)
    return [100.0 * w / total for w in weights]


def quotas(shares: Sequence[float], vms: int) -> list[int]:
    """VMs per host: the first N-1 hosts get ``round_half_away_from_zero(share * V / 100)``,
    the last host the rest. Should rounding leave the last host a negative rest, the
    surplus is taken back from the largest quotas (the later host first on ties)."""
    q = [round_half_away_from_zero(s * vms / 100.0) for s in shares[:-1]]
    rest = vms - sum(q)
    while rest < 0:
        i = max(range(len(q)), key=lambda k: (q[k], k))
        q[i] -= 1
        rest += 1
    return [*q, rest]


def fill_blocks(state: Placement, quota: Sequence[int], label: str) -> list[str]:
    """Give each host, in cluster order, the next ``quota - placed`` unplaced VMs (capped
    by ``max_vhost``); VMs left over spill to the host with most spare quota that still has
    room. Returns the notes about spilled VMs."""
    todo = state.unplaced()
    pos = 0
    for i in range(len(state.hosts)):
        take = max(0, min(quota[i], state.limits[i]) - state.counts[i])
        for vm in todo[pos : pos + take]:
            state.assign(vm.name, i)
        pos += min(take, len(todo) - pos)
    spilled: dict[int, list[str]] = {}
    for vm in todo[pos:]:
        room = [i for i in range(len(state.hosts)) if state.has_room(i)]
        if not room:  # check_capacity makes this unreachable
            raise PlanError(f"no host has room left for VM {vm.name}")
        i = max(room, key=lambda k: (quota[k] - state.counts[k], -k))
        state.assign(vm.name, i)
        spilled.setdefault(i, []).append(vm.name)
    notes = []
    for i, names in spilled.items():
        shown = ", ".join(names[:MAX_NOTED_VMS]) + (" ..." if len(names) > MAX_NOTED_VMS else "")
        notes.append(
            f"{label}: {len(names)} VM(s) beyond the quotas went to {state.hosts[i].name} "
            f"(quota {quota[i]}, now {state.counts[i]}): {shown}"
        )
    return notes


def _over_quota_notes(state: Placement, quota: Sequence[int], label: str) -> list[str]:
    return [
        f"{label}: restrictions put {state.counts[i]} VMs on {h.name}, "
        f"above its quota of {quota[i]}"
        for i, h in enumerate(state.hosts)
        if state.counts[i] > quota[i]
    ]


class WeightedRoundRobin:
    """EDIV's WeightedRoundRobin, rule for rule.

    Needs at least 2 hosts. If every host's load is below 0.2 it is RoundRobin. Otherwise
    each host's share is ``(100 - 100*load/sum(loads)) / (N-1)`` percent, clamped to
    [50/N, 150/N] and rescaled to sum 100; the first N-1 hosts (cluster order) get
    ``round_half_away_from_zero(share*V/100)`` VMs and the last host the rest, as contiguous
    blocks in VM order. VMs placed by restrictions count against their host's quota."""

    name = "WeightedRoundRobin"
    description = "EDIV's load-weighted blocks: busy hosts get fewer VMs (RoundRobin when idle)"
    min_hosts = 2

    def shares(self, hosts: Sequence[Host]) -> list[float]:
        return wrr_shares([h.load for h in hosts])

    def partition(
        self, scenario: Scenario, hosts: Sequence[Host], placed: Mapping[str, str]
    ) -> PartitionResult:
        if len(hosts) < self.min_hosts:
            raise PlanError(f"{self.name} needs at least 2 hosts, the cluster has {len(hosts)}")
        if all(h.load < LOADED for h in hosts):
            return RoundRobin().partition(scenario, hosts, placed)
        state = Placement(scenario, hosts, placed)
        quota = quotas(self.shares(hosts), len(state.order))
        notes = _over_quota_notes(state, quota, self.name)
        notes += fill_blocks(state, quota, self.name)
        return PartitionResult(state.allocation, notes)


class DynamicWeightedRoundRobin(WeightedRoundRobin):
    """WeightedRoundRobin that also weighs each host's configured speed.

    While every host's load is below 0.2 it is RoundRobin. Once some host is at 0.2 or
    more, host i's share is ``cpu_i * (1 - min(load_i, 1))`` over the sum of these
    products (``cpu`` alone when every host is fully loaded), without clamping: a fast idle
    host takes more than a slow busy one. Quotas and blocks then follow WeightedRoundRobin
    (first N-1 hosts rounded half away from zero, the last the rest). One host is allowed."""

    name = "DynamicWeightedRoundRobin"
    description = "blocks weighted by cpu x (1 - load) once the cluster is loaded"
    min_hosts = 1

    def shares(self, hosts: Sequence[Host]) -> list[float]:
        return dynamic_shares(hosts)
