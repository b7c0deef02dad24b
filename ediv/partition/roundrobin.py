"""RoundRobin: EDIV's default segmentation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ediv.cluster import Host
from ediv.partition.api import PartitionResult
from ediv.partition.common import Placement
from ediv.scenario.model import Scenario


class RoundRobin:
    """VM i (in VNUML order) to host i mod N.

    With restrictions (``placed`` not empty) each remaining VM goes to the host with fewest
    VMs so far, ties to the first host in cluster order, as EDIV did. A host at its
    ``max_vhost`` is skipped: its turn passes to the next host with room."""

    name = "RoundRobin"
    description = "VM i to host i mod N (EDIV's default); least used host when restricted"

    def partition(
        self, scenario: Scenario, hosts: Sequence[Host], placed: Mapping[str, str]
    ) -> PartitionResult:
        state = Placement(scenario, hosts, placed)
        if placed:
            state.fill_least_used(state.unplaced())
        else:
            cycle(state)
        return PartitionResult(state.allocation)


def cycle(state: Placement) -> None:
    """Deal the unplaced VMs to the hosts in turn, skipping hosts that are full."""
    n = len(state.hosts)
    turn = 0
    for vm in state.unplaced():
        for _ in range(n):
            if state.has_room(turn):
                break
            turn = (turn + 1) % n
        state.assign(vm.name, turn)
        turn = (turn + 1) % n
