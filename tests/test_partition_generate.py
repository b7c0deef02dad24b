"""The scenario generator used by benchmarks and tests."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from ediv.scenario.generate import generate_scenario


def test_sizes_names_and_interfaces():
    sc = generate_scenario(500, 80, seed=1, ifs_per_vm=3)
    assert [v.name for v in sc.vms] == [f"vm{i}" for i in range(1, 501)]
    assert [n.name for n in sc.nets] == [f"net{i}" for i in range(1, 81)]
    names = {n.name for n in sc.nets}
    for vm in sc.vms:
        assert [i.id for i in vm.interfaces] == [1, 2, 3]
        assert len(set(vm.nets)) == 3 and set(vm.nets) <= names
    assert sc.name == "gen-500x80-s1"


def test_same_seed_same_scenario_other_seed_other_scenario():
    a = generate_scenario(300, 40, seed=7)
    assert a == generate_scenario(300, 40, seed=7)
    assert a != generate_scenario(300, 40, seed=8)


def test_locality_keeps_links_near_home():
    def far_links(locality: float) -> int:
        sc = generate_scenario(2000, 400, seed=2, locality=locality)
        far = 0
        for i, vm in enumerate(sc.vms):
            home = i * 400 // 2000
            other = int(vm.interfaces[1].net[3:]) - 1
            far += min((other - home) % 400, (home - other) % 400) > 3
        return far

    assert far_links(1.0) == 0
    assert 100 < far_links(0.9) < 300  # about 10 % of 2000 minus the few that land near
    assert far_links(0.0) > 1500


def test_addresses_are_unique_inside_each_nets_subnet_in_the_benchmark_range():
    sc = generate_scenario(1000, 200, seed=3)
    space = ipaddress.ip_network("198.18.0.0/15")
    subnet_of: dict[str, ipaddress.IPv4Network] = {}
    seen = Counter()
    for vm in sc.vms:
        for iface in vm.interfaces:
            (addr,) = iface.addresses
            ip = ipaddress.ip_address(addr.address)
            net = ipaddress.ip_network(f"{addr.address}/{addr.mask}", strict=False)
            assert ip in space and ip not in (net.network_address, net.broadcast_address)
            assert subnet_of.setdefault(iface.net, net) == net
            seen[ip] += 1
    assert max(seen.values()) == 1
    assert len(set(subnet_of.values())) == len(subnet_of)


def test_too_big_for_the_address_space_has_no_addresses():
    sc = generate_scenario(20000, 40000, seed=0, ifs_per_vm=1)
    assert all(not i.addresses for v in sc.vms for i in v.interfaces)
    assert not any(i.addresses for v in generate_scenario(10, 3, addresses=False).vms
                   for i in v.interfaces)


def test_edge_cases():
    assert generate_scenario(0, 0).vms == []
    tiny = generate_scenario(5, 2, ifs_per_vm=4)
    assert all(len(v.interfaces) == 2 for v in tiny.vms)
    with pytest.raises(ValueError):
        generate_scenario(3, 0)
    with pytest.raises(ValueError):
        generate_scenario(3, 3, locality=2.0)
