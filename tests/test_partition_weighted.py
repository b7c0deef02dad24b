"""WeightedRoundRobin (EDIV's rule) and DynamicWeightedRoundRobin."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition.roundrobin import RoundRobin
from ediv.partition.weighted import (
    DynamicWeightedRoundRobin,
    WeightedRoundRobin,
    quotas,
    wrr_shares,
)
from ediv.scenario.model import VM, Global, Interface, Net, Scenario


def flat(n: int) -> Scenario:
    vms = [VM(f"vm{i}", interfaces=[Interface(1, f"n{i // 4}")]) for i in range(n)]
    nets = [Net(f"n{i}") for i in range((n + 3) // 4)]
    return Scenario(global_=Global(simulation_name="flat"), nets=nets, vms=vms)


def loaded(*loads: float, **kw) -> list[Host]:
    return [Host(f"h{i}", load=load, **kw) for i, load in enumerate(loads)]


def reference_counts(loads: list[float], v: int) -> list[int]:
    """EDIV's WeightedRoundRobin written out plainly, to check the implementation against."""
    n = len(loads)
    if all(x < 0.2 for x in loads):
        return [v // n + (1 if i < v % n else 0) for i in range(n)]
    total = sum(loads)
    shares = []
    for x in loads:
        s = (100 - 100 * x / total) / (n - 1)
        s = max(s, 50 / n)
        s = min(s, 150 / n)
        shares.append(s)
    shares = [s * 100 / sum(shares) for s in shares]
    counts = [math.floor(s * v / 100 + 0.5) for s in shares[:-1]]
    return [*counts, v - sum(counts)]


def test_worked_example_one_busy_host_of_three():
    # loads 0.9, 0.1, 0.1: sum 1.1
    #   raw share h0 = (100 - 100*0.9/1.1) / 2 = (100 - 81.818) / 2 =  9.091 %
    #   raw share h1 = h2 = (100 - 100*0.1/1.1) / 2 = (100 - 9.091) / 2 = 45.455 %
    # clamp to [50/3, 150/3] = [16.667, 50]: 16.667, 45.455, 45.455 (sum 107.576)
    # rescale by 100/107.576: 15.493, 42.254, 42.254 %
    # 51 VMs: h0 = round(15.493 * 0.51 = 7.901) = 8; h1 = round(42.254 * 0.51 = 21.549) = 22;
    #         h2 (last) = 51 - 8 - 22 = 21
    shares = wrr_shares([0.9, 0.1, 0.1])
    assert shares == pytest.approx([15.4930, 42.2535, 42.2535], abs=1e-4)
    result = WeightedRoundRobin().partition(flat(51), loaded(0.9, 0.1, 0.1), {})
    counts = Counter(result.allocation.values())
    assert [counts["h0"], counts["h1"], counts["h2"]] == [8, 22, 21]
    assert [counts["h0"], counts["h1"], counts["h2"]] == reference_counts([0.9, 0.1, 0.1], 51)
    # contiguous blocks in VM order
    assert [result.allocation[f"vm{i}"] for i in (0, 7, 8, 29, 30, 50)] == [
        "h0", "h0", "h1", "h1", "h2", "h2"
    ]


@settings(max_examples=200, deadline=None)
@given(
    loads=st.lists(st.floats(0.0, 4.0, allow_nan=False), min_size=2, max_size=9),
    v=st.integers(0, 400),
)
def test_matches_a_plain_reference_implementation(loads, v):
    result = WeightedRoundRobin().partition(flat(v), loaded(*loads), {})
    counts = Counter(result.allocation.values())
    expected = reference_counts(loads, v)
    if min(expected) < 0:  # the reference has no guard; the implementation must keep all >= 0
        assert all(counts[f"h{i}"] >= 0 for i in range(len(loads)))
        assert sum(counts.values()) == v
    else:
        assert [counts[f"h{i}"] for i in range(len(loads))] == expected


def test_idle_cluster_is_round_robin():
    sc = flat(20)
    hosts = loaded(0.19, 0.0, 0.1)
    assert (WeightedRoundRobin().partition(sc, hosts, {}).allocation
            == RoundRobin().partition(sc, hosts, {}).allocation)
    assert (DynamicWeightedRoundRobin().partition(sc, hosts, {}).allocation
            == RoundRobin().partition(sc, hosts, {}).allocation)


def test_needs_two_hosts():
    with pytest.raises(PlanError, match="needs at least 2 hosts, the cluster has 1"):
        WeightedRoundRobin().partition(flat(3), loaded(0.5), {})
    solo = DynamicWeightedRoundRobin().partition(flat(3), loaded(0.5), {})
    assert set(solo.allocation.values()) == {"h0"}


def test_negative_rest_is_taken_back_from_the_largest_quota():
    # 4 hosts, the last busy: shares 29.33, 29.33, 29.33, 12.0; 2 VMs -> 0.587 rounds to 1
    # three times = 3 > 2: the last would get -1. The later of the largest gives one back.
    shares = wrr_shares([0.1, 0.1, 0.1, 0.9])
    assert quotas(shares, 2) == [1, 1, 0, 0]
    result = WeightedRoundRobin().partition(flat(2), loaded(0.1, 0.1, 0.1, 0.9), {})
    assert result.allocation == {"vm0": "h0", "vm1": "h1"}


def test_zero_vms_and_zero_load_sum():
    assert WeightedRoundRobin().partition(flat(0), loaded(0.9, 0.1), {}).allocation == {}
    assert wrr_shares([0.0, 0.0, 0.0]) == pytest.approx([100 / 3] * 3)


def test_placed_vms_count_against_their_hosts_quota():
    # quotas for 51 VMs: 8, 22, 21 (see the worked example). 5 VMs placed on h0 leave it 3.
    placed = {f"vm{i}": "h0" for i in (10, 20, 30, 40, 50)}
    result = WeightedRoundRobin().partition(flat(51), loaded(0.9, 0.1, 0.1), placed)
    counts = Counter(result.allocation.values())
    assert [counts["h0"], counts["h1"], counts["h2"]] == [8, 22, 21]
    assert all(result.allocation[vm] == "h0" for vm in placed)
    assert [result.allocation[f"vm{i}"] for i in (0, 1, 2, 3)] == ["h0", "h0", "h0", "h1"]


def test_restrictions_over_quota_are_noted():
    placed = {f"vm{i}": "h0" for i in range(12)}  # h0's quota is 8
    result = WeightedRoundRobin().partition(flat(51), loaded(0.9, 0.1, 0.1), placed)
    counts = Counter(result.allocation.values())
    assert counts["h0"] == 12 and counts["h1"] == 22 and counts["h2"] == 17
    assert any("above its quota of 8" in n for n in result.notes)


def test_max_vhost_spills_to_the_host_with_most_spare_quota_and_says_so():
    hosts = [Host("h0", load=0.9), Host("h1", load=0.1, max_vhost=10), Host("h2", load=0.1)]
    result = WeightedRoundRobin().partition(flat(51), hosts, {})
    counts = Counter(result.allocation.values())
    # quotas 8, 22, 21; h1 takes only 10: the 12 left over go one by one to the host with
    # the largest quota - count among those with room: h0 (8-8=0) vs h2 (21-21=0): h0 first,
    # then h2 (0) vs h0 (-1): h2, ... alternating -> 6 each.
    assert [counts["h0"], counts["h1"], counts["h2"]] == [14, 10, 27]
    assert len(result.notes) == 2 and "beyond the quotas" in result.notes[0]


def test_dynamic_follows_cpu_times_idle_share():
    hosts = [Host("fast", cpu=100, load=0.5), Host("slow", cpu=50), Host("big", cpu=100)]
    # weights: 100*(1-0.5) = 50, 50*1 = 50, 100*1 = 100 -> 25 %, 25 %, 50 %; 8 VMs -> 2, 2, 4
    result = DynamicWeightedRoundRobin().partition(flat(8), hosts, {})
    counts = Counter(result.allocation.values())
    assert [counts["fast"], counts["slow"], counts["big"]] == [2, 2, 4]


def test_dynamic_with_every_host_fully_loaded_uses_cpu_alone():
    hosts = [Host("a", cpu=100, load=1.0), Host("b", cpu=300, load=2.0)]
    counts = Counter(DynamicWeightedRoundRobin().partition(flat(8), hosts, {}).allocation.values())
    assert [counts["a"], counts["b"]] == [2, 6]
