"""The public API of partition algorithms.

An algorithm is a class with a ``name`` and a ``partition`` method. It receives the
scenario, the cluster's hosts in cluster order (properties and current load) and the VMs
that restrictions already placed; it returns where every other VM goes. Third parties
register theirs under the ``ediv.partition`` entry-point group::

    [project.entry-points."ediv.partition"]
    MyAlgo = "mypkg.algo:MyAlgo"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ediv.cluster import Host
from ediv.scenario.model import Scenario


@dataclass
class PartitionResult:
    """VM name -> host name for every VM of the scenario, plus notes for the plan
    (for example a VM that had to spill past its host's quota)."""

    allocation: dict[str, str]
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class PartitionAlgorithm(Protocol):
    name: str
    description: str

    def partition(
        self, scenario: Scenario, hosts: Sequence[Host], placed: Mapping[str, str]
    ) -> PartitionResult:
        """Place every VM of ``scenario`` not in ``placed``; keep ``placed`` as given.

        Raise ``ediv.errors.PlanError`` when the cluster cannot hold the scenario
        (for example every host at ``max_vhost``)."""
        ...
