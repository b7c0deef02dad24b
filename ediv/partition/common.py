"""Helpers shared by the built-in partition algorithms.

Every algorithm starts from the same bookkeeping: check that ``placed`` names known VMs and
hosts, count what each host already holds, check that the cluster can hold the scenario at
all (``max_vhost``), and place leftovers on the least used host with room.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.scenario.checks import mem_megabytes
from ediv.scenario.defaults import inherited
from ediv.scenario.model import VM, Scenario

DEFAULT_VM_MEM_MB = 64



def parse_mem_mb(text: str | None, default: int = DEFAULT_VM_MEM_MB) -> int:
    """A VNUML ``<mem>`` value in MB, rounded up: "64M" -> 64, "1G" -> 1024, "512k" -> 1.

    A bare number is bytes, as UML's ``mem=`` (where VNUML passed the value) reads it.
    Absent or unreadable values give ``default``."""
    mb = mem_megabytes(text) if text else None
    if not mb or mb <= 0:
        return default
    return max(1, math.ceil(mb))


def vm_mem_mb(vm: VM, scenario: Scenario) -> int:
    """The VM's memory in MB: its own ``<mem>``, else ``<vm_defaults>``, else 64."""
    return parse_mem_mb(inherited(vm, scenario.global_.vm_defaults, "mem"))


def host_limit(host: Host) -> float:
    """Most VMs ``host`` takes (``math.inf`` when ``max_vhost`` is 0)."""
    return host.max_vhost if host.max_vhost > 0 else math.inf


def round_half_away_from_zero(x: float) -> int:
    """Round to the nearest integer, halves away from zero (2.5 -> 3, -2.5 -> -3).

    EDIV computed ``int($x + 0.5)`` on non-negative shares; Python's ``round`` would give
    banker's rounding (2.5 -> 2) and different VM counts."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


class Placement:
    """VM -> host bookkeeping over hosts in cluster order, starting from ``placed``."""

    def __init__(self, scenario: Scenario, hosts: Sequence[Host], placed: Mapping[str, str]):
        if not hosts:
            raise PlanError("the cluster has no hosts")
        self.hosts = list(hosts)
        self.index = {h.name: i for i, h in enumerate(self.hosts)}
        self.order = scenario.ordered_vms()
        names = {v.name for v in self.order}
        unknown_vms = sorted(vm for vm in placed if vm not in names)
        unknown_hosts = sorted({h for h in placed.values() if h not in self.index})
        if unknown_vms or unknown_hosts:
            raise PlanError(
                "placed VMs do not match the scenario and cluster"
                + (f"; unknown VMs: {', '.join(unknown_vms)}" if unknown_vms else "")
                + (f"; unknown hosts: {', '.join(unknown_hosts)}" if unknown_hosts else "")
            )
        self.allocation: dict[str, str] = dict(placed)
        self.counts = [0] * len(self.hosts)
        for host in placed.values():
            self.counts[self.index[host]] += 1
        self.limits = [host_limit(h) for h in self.hosts]
        check_capacity(self.hosts, len(self.order))
        over = [
            f"{h.name} ({self.counts[i]} > max_vhost {h.max_vhost})"
            for i, h in enumerate(self.hosts)
            if self.counts[i] > self.limits[i]
        ]
        if over:
            raise PlanError(f"placed VMs exceed max_vhost on {', '.join(over)}")

    def unplaced(self) -> list[VM]:
        """VMs still to place, in ``scenario.ordered_vms()`` order."""
        return [v for v in self.order if v.name not in self.allocation]

    def has_room(self, i: int) -> bool:
        return self.counts[i] < self.limits[i]

    def assign(self, vm: str, i: int) -> None:
        self.allocation[vm] = self.hosts[i].name
        self.counts[i] += 1

    def fill_least_used(self, vms: Iterable[VM]) -> None:
        """Each VM to the host with fewest VMs and room (ties: first in cluster order)."""
        heap = [(c, i) for i, c in enumerate(self.counts) if self.has_room(i)]
        heapq.heapify(heap)
        for vm in vms:
            if not heap:  # check_capacity makes this unreachable; keep the guard honest
                raise PlanError(f"no host has room left for VM {vm.name}")
            _, i = heapq.heappop(heap)
            self.assign(vm.name, i)
            if self.has_room(i):
                heapq.heappush(heap, (self.counts[i], i))


def check_capacity(hosts: Sequence[Host], vms: int) -> None:
    """Raise PlanError when the hosts' ``max_vhost`` limits add up to fewer than ``vms``."""
    if any(h.max_vhost <= 0 for h in hosts):
        return
    total = sum(h.max_vhost for h in hosts)
    if total < vms:
        detail = ", ".join(f"{h.name} {h.max_vhost}" for h in hosts)
        raise PlanError(
            f"the cluster cannot hold the scenario: {vms} VMs but the hosts take at most "
            f"{total} (max_vhost: {detail})"
        )


def cut_nets(scenario: Scenario, allocation: Mapping[str, str]) -> list[str]:
    """Nets whose VMs land on more than one host (each becomes a segment), in net order."""
    spans: dict[str, set[str]] = {n.name: set() for n in scenario.nets}
    for vm in scenario.vms:
        host = allocation[vm.name]
        for iface in vm.interfaces:
            spans.setdefault(iface.net, set()).add(host)
    return [net for net, hs in spans.items() if len(hs) > 1]
