"""MinCut: fewest nets across hosts under capacity and balance constraints."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition.common import cut_nets, parse_mem_mb
from ediv.partition.mincut import MinCut, targets
from ediv.partition.roundrobin import RoundRobin
from ediv.scenario.generate import generate_scenario
from ediv.scenario.model import VM, Global, Interface, Net, Scenario, VmDefaults


def islands(k: int, size: int, *, shuffle: int | None = None) -> Scenario:
    """k islands; island j has nets j.a and j.b, each VM on one or both; VM order optionally
    shuffled so that islands interleave."""
    vms = []
    for j in range(k):
        for i in range(size):
            nets = {0: [f"i{j}a", f"i{j}b"], 1: [f"i{j}a"], 2: [f"i{j}b"]}[i % 3]
            ifs = [Interface(k, net) for k, net in enumerate(nets, 1)]
            vms.append(VM(f"v{j}_{i}", interfaces=ifs))
    if shuffle is not None:
        random.Random(shuffle).shuffle(vms)
    nets = [Net(f"i{j}{s}") for j in range(k) for s in "ab"]
    return Scenario(global_=Global(simulation_name="islands"), nets=nets, vms=vms)


def uniform(n: int, **kw) -> list[Host]:
    return [Host(f"h{i}", **kw) for i in range(n)]


@pytest.mark.parametrize("shuffle", [None, 1, 2])
@pytest.mark.parametrize(("k", "size"), [(2, 5), (4, 12), (8, 30)])
def test_islands_on_as_many_hosts_cut_no_net(k, size, shuffle):
    sc = islands(k, size, shuffle=shuffle)
    result = MinCut().partition(sc, uniform(k), {})
    assert cut_nets(sc, result.allocation) == []
    assert sorted(Counter(result.allocation.values()).values()) == [size] * k
    assert len(cut_nets(sc, RoundRobin().partition(sc, uniform(k), {}).allocation)) == 2 * k


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("vms", "nets", "hosts"), [(300, 60, 4), (1000, 200, 8), (2000, 400, 16)])
def test_clustered_topologies_cut_far_fewer_nets_than_round_robin(vms, nets, hosts, seed):
    sc = generate_scenario(vms, nets, seed=seed, locality=0.95)
    mc = cut_nets(sc, MinCut().partition(sc, uniform(hosts), {}).allocation)
    rr = cut_nets(sc, RoundRobin().partition(sc, uniform(hosts), {}).allocation)
    assert len(mc) * 2 < len(rr)


def test_balance_follows_cpu_and_stays_within_tolerance():
    sc = generate_scenario(1200, 150, seed=3)
    hosts = [Host("a", cpu=100), Host("b", cpu=100), Host("c", cpu=50, load=0.0),
             Host("d", cpu=100, load=0.5)]
    # weights 100, 100, 50, 50 -> targets 400, 400, 200, 200 (+-10 %)
    _real, whole = targets(hosts, 1200, 64)
    assert whole == [400, 400, 200, 200]
    counts = Counter(MinCut().partition(sc, hosts, {}).allocation.values())
    for name, target in zip("abcd", whole, strict=True):
        assert abs(counts[name] - target) <= 0.1 * target


def test_targets_water_fill_around_max_vhost_and_memory():
    hosts = [Host("a", max_vhost=10), Host("b"), Host("c", mem=64 * 20)]
    _real, whole = targets(hosts, 90, 64)
    # equal weights: 30 each; a capped at 10 -> 80 left for b and c: 40 each; c capped at
    # 20 by memory (1280 MB / 64 MB) -> b takes 60
    assert whole == [10, 60, 20]
    assert sum(whole) == 90


def test_max_vhost_and_memory_are_hard_limits():
    sc = generate_scenario(200, 40, seed=5)
    sc.vms[0].mem = "512M"
    hosts = [Host("a", max_vhost=30), Host("b", mem=64 * 60), Host("c")]
    result = MinCut().partition(sc, hosts, {})
    counts = Counter(result.allocation.values())
    assert counts["a"] <= 30
    mem_b = sum(parse_mem_mb(v.mem) for v in sc.vms if result.allocation[v.name] == "b")
    assert mem_b <= 64 * 60


def test_placed_vms_stay_and_pull_their_nets():
    sc = islands(3, 9)
    placed = {"v2_0": "h0", "v0_0": "h2"}
    result = MinCut().partition(sc, uniform(3), placed)
    assert result.allocation["v2_0"] == "h0" and result.allocation["v0_0"] == "h2"
    # islands 2 and 0 swap hosts to follow their placed VMs: nothing is cut
    assert cut_nets(sc, result.allocation) == []


def test_cluster_too_small_and_memory_too_small():
    sc = islands(2, 5)
    with pytest.raises(PlanError, match=r"10 VMs but the hosts take at most 8"):
        MinCut().partition(sc, uniform(2, max_vhost=4), {})
    with pytest.raises(PlanError, match=r"10 VMs need 640 MB, the hosts offer 600 MB"):
        MinCut().partition(sc, uniform(2, mem=300), {})


def test_a_vm_too_big_for_any_host():
    sc = islands(2, 5)
    sc.vms[0].mem = "2G"
    with pytest.raises(PlanError, match=r"no host can take VM v0_0 \(2048 MB\)"):
        MinCut().partition(sc, uniform(2, mem=2000), {})


def test_deterministic():
    sc = generate_scenario(800, 120, seed=9, locality=0.8)
    hosts = uniform(5)
    first = MinCut().partition(sc, hosts, {"vm7": "h3"})
    again = MinCut().partition(sc, hosts, {"vm7": "h3"})
    assert first.allocation == again.allocation and first.notes == again.notes
    assert list(first.allocation) != [] and first.notes[0].startswith("MinCut: ")


@pytest.mark.parametrize(
    ("text", "mb"),
    [("64M", 64), ("1G", 1024), ("512k", 1), ("1.5G", 64), ("128MB", 128), ("67108864", 64),
     ("", 64), (None, 64), ("lots", 64), (" 32m ", 32)],
)
def test_parse_mem(text, mb):
    assert parse_mem_mb(text) == mb


def test_vm_defaults_mem_counts():
    sc = islands(2, 5)
    sc.global_.vm_defaults = VmDefaults(mem="256M")
    with pytest.raises(PlanError, match="need 2560 MB"):
        MinCut().partition(sc, uniform(2, mem=1000), {})
