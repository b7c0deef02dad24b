"""RoundRobin: EDIV's default segmentation."""

from __future__ import annotations

from collections import Counter

import pytest

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition.roundrobin import RoundRobin
from ediv.scenario.model import VM, Global, Interface, Net, Scenario


def chain(n: int) -> Scenario:
    """n VMs, vm_i on nets l_i and l_{i+1} (a chain of routers)."""
    nets = [Net(f"l{i}") for i in range(n + 1)]
    vms = [VM(f"vm{i}", interfaces=[Interface(1, f"l{i}"), Interface(2, f"l{i + 1}")])
           for i in range(n)]
    return Scenario(global_=Global(simulation_name="chain"), nets=nets, vms=vms)


def three(**kw) -> list[Host]:
    return [Host("a", **kw), Host("b", **kw), Host("c", **kw)]


@pytest.mark.parametrize(("vms", "each"), [(6, 2), (51, 17)])
def test_equal_shares_on_three_hosts(vms, each):
    result = RoundRobin().partition(chain(vms), three(), {})
    assert Counter(result.allocation.values()) == {"a": each, "b": each, "c": each}


def test_vm_i_goes_to_host_i_mod_n_in_vnuml_order():
    sc = chain(5)
    sc.vms[4].order = 1  # VNUML order: VMs with order= first
    sc.vms[2].order = 2
    result = RoundRobin().partition(sc, three(), {})
    # order: vm4, vm2, vm0, vm1, vm3 -> a, b, c, a, b
    assert result.allocation == {"vm4": "a", "vm2": "b", "vm0": "c", "vm1": "a", "vm3": "b"}
    assert result.notes == []


def test_full_host_passes_its_turn():
    hosts = [Host("a", max_vhost=1), Host("b"), Host("c")]
    result = RoundRobin().partition(chain(6), hosts, {})
    assert [result.allocation[f"vm{i}"] for i in range(6)] == ["a", "b", "c", "b", "c", "b"]


def test_with_restrictions_remaining_vms_go_to_least_used_host():
    placed = {"vm0": "a", "vm1": "a", "vm2": "c"}
    result = RoundRobin().partition(chain(7), three(), placed)
    # counts a2 b0 c1: vm3->b (0), vm4->b (1, tie with c: b first), vm5->c (1), vm6->a (2, first)
    assert result.allocation == {**placed, "vm3": "b", "vm4": "b", "vm5": "c", "vm6": "a"}


def test_cluster_too_small_names_the_numbers():
    message = r"7 VMs but the hosts take at most 6 \(max_vhost: a 2, b 2, c 2\)"
    with pytest.raises(PlanError, match=message):
        RoundRobin().partition(chain(7), three(max_vhost=2), {})


def test_placed_on_unknown_host_or_vm_is_refused():
    with pytest.raises(PlanError, match="unknown hosts: z"):
        RoundRobin().partition(chain(2), three(), {"vm0": "z"})
    with pytest.raises(PlanError, match="unknown VMs: ghost"):
        RoundRobin().partition(chain(2), three(), {"ghost": "a"})


def test_empty_scenario_and_single_host():
    assert RoundRobin().partition(chain(0), three(), {}).allocation == {}
    assert set(RoundRobin().partition(chain(4), [Host("solo")], {}).allocation.values()) == {"solo"}
