"""Properties every built-in algorithm keeps, on random scenarios, clusters and restrictions."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition import registry
from ediv.partition.common import cut_nets
from ediv.scenario.model import VM, Global, Interface, Net, Scenario

ALGORITHMS = ["RoundRobin", "WeightedRoundRobin", "DynamicWeightedRoundRobin", "MinCut"]


@st.composite
def cases(draw, *, equal_hosts: bool = False, restricted: bool = True):
    n_nets = draw(st.integers(1, 12))
    n_vms = draw(st.integers(0, 40))
    vms = []
    for i in range(n_vms):
        nets = draw(st.lists(st.integers(0, n_nets - 1), min_size=0, max_size=3, unique=True))
        order = draw(st.none() | st.integers(0, 5))
        vms.append(VM(f"vm{i}", order=order,
                      interfaces=[Interface(k, f"n{x}") for k, x in enumerate(nets, 1)]))
    sc = Scenario(global_=Global(simulation_name="p"), nets=[Net(f"n{x}") for x in range(n_nets)],
                  vms=vms)
    n_hosts = draw(st.integers(1, 6))
    hosts = []
    for h in range(n_hosts):
        if equal_hosts:
            hosts.append(Host(f"h{h}"))
            continue
        hosts.append(Host(
            f"h{h}",
            cpu=draw(st.integers(1, 200)),
            max_vhost=draw(st.sampled_from([0, 0, 1, 3, 8, 20])),
            load=draw(st.sampled_from([0.0, 0.1, 0.3, 0.9, 1.5])),
        ))
    placed: dict[str, str] = {}
    if restricted and vms:
        room = Counter()
        for vm in draw(st.lists(st.sampled_from([v.name for v in vms]), max_size=6, unique=True)):
            h = hosts[draw(st.integers(0, n_hosts - 1))]
            if h.max_vhost == 0 or room[h.name] < h.max_vhost:
                placed[vm] = h.name
                room[h.name] += 1
    return sc, hosts, placed


@pytest.mark.parametrize("name", ALGORITHMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_every_vm_placed_once_restrictions_kept_limits_honoured(name, case):
    sc, hosts, placed = case
    algo = registry.get(name)
    capacity = sum(h.max_vhost for h in hosts) if all(h.max_vhost for h in hosts) else None
    try:
        result = algo.partition(sc, hosts, dict(placed))
    except PlanError as exc:
        too_small = capacity is not None and capacity < len(sc.vms)
        needs_two = name == "WeightedRoundRobin" and len(hosts) < 2
        assert too_small or needs_two, str(exc)
        return
    assert capacity is None or capacity >= len(sc.vms)
    assert sorted(result.allocation) == sorted(v.name for v in sc.vms)
    assert set(result.allocation.values()) <= {h.name for h in hosts}
    assert all(result.allocation[vm] == h for vm, h in placed.items())
    counts = Counter(result.allocation.values())
    assert all(h.max_vhost == 0 or counts[h.name] <= h.max_vhost for h in hosts)
    again = registry.get(name).partition(sc, hosts, dict(placed))
    assert again.allocation == result.allocation and again.notes == result.notes


def test_mincut_beats_round_robin_on_random_scenarios_in_aggregate():
    """Not a per-case guarantee: on tiny dense scenarios with a tight balance tolerance
    (10 VMs, 2 hosts: 5 +- 1 each) single-VM moves can end one cut net above RoundRobin's
    lucky deal. Checked here on fixed seeds: far fewer cuts in total, rarely worse."""
    rng = random.Random(20081)
    worse = total_mc = total_rr = 0
    for _ in range(400):
        n_nets = rng.randint(1, 12)
        vms = [
            VM(f"vm{i}", interfaces=[
                Interface(k, f"n{x}")
                for k, x in enumerate(rng.sample(range(n_nets), rng.randint(0, min(3, n_nets))), 1)
            ])
            for i in range(rng.randint(0, 40))
        ]
        sc = Scenario(global_=Global(simulation_name="r"), vms=vms,
                      nets=[Net(f"n{x}") for x in range(n_nets)])
        hosts = [Host(f"h{i}") for i in range(rng.randint(1, 6))]
        mc = len(cut_nets(sc, registry.get("MinCut").partition(sc, hosts, {}).allocation))
        rr = len(cut_nets(sc, registry.get("RoundRobin").partition(sc, hosts, {}).allocation))
        worse += mc > rr
        total_mc += mc
        total_rr += rr
    assert total_mc < 0.8 * total_rr
    assert worse <= 4  # of 400
