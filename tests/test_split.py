"""Splitting a plan into per-host sub-scenarios and agent inputs."""

from __future__ import annotations

import ipaddress

import pytest

from ediv.cluster import Cluster, Host
from ediv.errors import PlanError
from ediv.plan import make_plan
from ediv.scenario.model import (
    VM,
    Address,
    Filetree,
    Global,
    HostIf,
    HostSection,
    Interface,
    Net,
    Scenario,
)
from ediv.split import mac_for, mgmt_blocks, split


def make(n_vms: int = 7) -> Scenario:
    nets = [Net("N0"), Net("N1")]
    vms = []
    for i in range(n_vms):
        ifs = [Interface(1, "N0", addresses=[Address(4, f"198.18.0.{10 + i}", "24")])]
        if i % 2:
            ifs.append(Interface(2, "N1"))
        vms.append(VM(f"vm{i}", interfaces=ifs, order=(n_vms - i) if i == 3 else None))
    vms[0].interfaces[0].mac = "02:00:00:00:00:aa"
    return Scenario(global_=Global(simulation_name="sc"), nets=nets, vms=vms)


def cl(n=3) -> Cluster:
    return Cluster(
        hosts=[
            Host(f"h{i}", address=f"198.19.0.{i}", ifname="eth9", vm_type="container")
            for i in range(1, n + 1)
        ],
        mgmt_network="198.18.128.0",
        mgmt_network_mask=24,
        interconnect="vxlan",
    )


def test_each_host_gets_its_vms_in_vm_order_and_only_its_nets():
    sc = make()
    plan = make_plan(sc, cl(), "RoundRobin")
    parts = split(sc, plan, cl())
    assert [p.host for p in parts] == ["h1", "h2", "h3"]
    order = [v.name for v in sc.ordered_vms()]
    for part in parts:
        names = [v.name for v in part.scenario.vms]
        assert names == [n for n in order if plan.allocation[n] == part.host]
        used = {i.net for v in part.scenario.vms for i in v.interfaces}
        assert {n.name for n in part.scenario.nets} == used
        assert part.scenario.name == f"sc-{part.host}"
    assert sorted(v for p in parts for v in p.vms) == sorted(v.name for v in sc.vms)


def test_original_is_not_modified():
    sc = make()
    before = repr(sc)
    split(sc, make_plan(sc, cl(), "RoundRobin"), cl())
    assert repr(sc) == before


def test_macs_unique_and_given_ones_kept():
    sc = make(40)
    parts = split(sc, make_plan(sc, cl(), "RoundRobin"), cl())
    macs = [i.mac for p in parts for v in p.scenario.vms for i in v.interfaces]
    assert len(macs) == len(set(macs))
    assert "02:00:00:00:00:aa" in macs
    assert all(m and len(m.split(":")) == 6 for m in macs)


def test_mac_base_separates_scenarios():
    assert mac_for(1, 5, 1) != mac_for(2, 5, 1)
    assert mac_for(0x1234, 0x0102, 3) == "02:12:34:01:02:03"


def test_management_blocks_are_disjoint_30s_and_match_vm_mgmt_offsets():
    sc = make(9)
    plan = make_plan(sc, cl(), "RoundRobin")
    parts = split(sc, plan, cl(), mgmt_offset=2)
    seen = set()
    for part in parts:
        mg = part.scenario.global_.vm_mgmt
        assert mg.type == "private" and mg.mask == 24
        for i, vm in enumerate(part.scenario.vms):
            host_end = ipaddress.IPv4Interface(part.deploy["mgmt"][vm.name]["host"])
            vm_end = ipaddress.IPv4Interface(part.deploy["mgmt"][vm.name]["vm"])
            assert host_end.network == vm_end.network and host_end.network.prefixlen == 30
            assert int(host_end.ip) - int(host_end.network.network_address) == 1
            assert int(vm_end.ip) - int(vm_end.network.network_address) == 2
            # VNUML's private rule: VM i of the sub-scenario takes block offset + i
            block = int(host_end.network.network_address) - int(
                ipaddress.IPv4Address("198.18.128.0")
            )
            assert block // 4 == mg.offset + i
            seen.add(host_end.network)
    assert len(seen) == 9
    assert min(int(n.network_address) for n in seen) == int(ipaddress.IPv4Address("198.18.128.8"))


def test_management_network_too_small():
    with pytest.raises(PlanError, match="management network"):
        mgmt_blocks(Cluster(mgmt_network="198.18.128.0", mgmt_network_mask=28), 5)


def test_segments_in_deploy_json_name_peers():
    sc = make()
    plan = make_plan(sc, cl(), "RoundRobin")
    parts = {p.host: p for p in split(sc, plan, cl())}
    for seg in plan.segments:
        for h in seg.hosts:
            entry = next(s for s in parts[h].deploy["segments"] if s["net"] == seg.net)
            assert entry["id"] == seg.id and entry["kind"] == "vxlan" and entry["dev"] == "eth9"
            assert entry["local"] == f"198.19.0.{h[1:]}"
            assert sorted(entry["peers"]) == sorted(
                f"198.19.0.{o[1:]}" for o in seg.hosts if o != h
            )
    assert all(p.deploy["vm_type"] == "container" for p in parts.values())


def test_host_section_only_on_its_host_and_nets_follow():
    sc = make(3)
    sc.host = HostSection(hostifs=[HostIf("N1")])
    plan = make_plan(sc, cl(), "RoundRobin")
    parts = split(sc, plan, cl())
    with_section = [p for p in parts if p.scenario.host is not None]
    assert [p.host for p in with_section] == [plan.host_section]
    assert "N1" in {n.name for n in with_section[0].scenario.nets}


def test_absolute_paths(tmp_path):
    sc = make(2)
    sc.basedir = str(tmp_path)
    sc.vms[0].filetrees.append(Filetree("conf/etc", "/etc", "start"))
    parts = split(sc, make_plan(sc, cl(1), "RoundRobin"), cl(1), absolute_paths=True)
    assert parts[0].scenario.vms[0].filetrees[0].source == str(tmp_path / "conf/etc")
    assert sc.vms[0].filetrees[0].source == "conf/etc"


def test_deterministic():
    sc = make(30)
    a = [
        (p.host, repr(p.scenario), p.deploy) for p in split(sc, make_plan(sc, cl(), "MinCut"), cl())
    ]
    b = [
        (p.host, repr(p.scenario), p.deploy) for p in split(sc, make_plan(sc, cl(), "MinCut"), cl())
    ]
    assert a == b
