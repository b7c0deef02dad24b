"""Plans: allocation shape, segments, <host> section placement, determinism, JSON contract."""

from __future__ import annotations

import pytest

from ediv.cluster import Cluster, Host, Pool
from ediv.errors import PlanError
from ediv.plan import make_plan
from ediv.scenario.model import VM, Global, HostIf, HostSection, Interface, Net, Scenario


def scenario_two_lans() -> Scenario:
    nets = [Net("A"), Net("B"), Net("L", type="ppp")]
    vms = [
        VM("a1", interfaces=[Interface(1, "A")]),
        VM("a2", interfaces=[Interface(1, "A")]),
        VM("r1", interfaces=[Interface(1, "A"), Interface(2, "L")]),
        VM("r2", interfaces=[Interface(1, "B"), Interface(2, "L")]),
        VM("b1", interfaces=[Interface(1, "B")]),
        VM("b2", interfaces=[Interface(1, "B")]),
    ]
    return Scenario(global_=Global(simulation_name="two"), nets=nets, vms=vms)


def cluster(n: int = 3, **kw) -> Cluster:
    return Cluster(hosts=[Host(f"h{i}") for i in range(1, n + 1)], **kw)


def test_round_robin_plan_and_segments():
    p = make_plan(
        scenario_two_lans(), cluster(3, interconnect="vxlan", vxlan=Pool(500, 600)), "RoundRobin"
    )
    assert p.allocation == {"a1": "h1", "a2": "h2", "r1": "h3", "r2": "h1", "b1": "h2", "b2": "h3"}
    assert p.hosts == {"h1": ["a1", "r2"], "h2": ["a2", "b1"], "h3": ["r1", "b2"]}
    by_net = {s.net: s for s in p.segments}
    assert by_net["A"].hosts == ["h1", "h2", "h3"]
    assert by_net["L"].hosts == ["h1", "h3"]
    assert {s.kind for s in p.segments} == {"vxlan"}
    assert sorted(s.id for s in p.segments) == [500, 501, 502]


def test_net_on_one_host_is_no_segment():
    p = make_plan(scenario_two_lans(), cluster(1), "RoundRobin")
    assert p.segments == []
    assert p.used_hosts() == ["h1"]


def test_json_contract():
    data = make_plan(scenario_two_lans(), cluster(2), "RoundRobin").to_json()
    assert set(data) >= {"algorithm", "allocation", "hosts", "segments"}
    assert data["algorithm"] == "RoundRobin"
    assert all(set(v) == {"vms"} for v in data["hosts"].values())
    for seg in data["segments"]:
        assert set(seg) == {"net", "hosts", "kind", "id"}
        assert seg["kind"] in ("vlan", "vxlan") and isinstance(seg["id"], int)


def test_exhausted_pool_is_a_plan_error():
    with pytest.raises(PlanError, match="pool"):
        make_plan(
            scenario_two_lans(), cluster(3, interconnect="vlan", vlan=Pool(10, 11)), "RoundRobin"
        )


def test_unknown_algorithm_lists_the_known_ones():
    with pytest.raises(Exception, match="RoundRobin"):
        make_plan(scenario_two_lans(), cluster(2), "NoSuchAlgorithm")


def test_load_override_for_unknown_host():
    with pytest.raises(PlanError, match="nope"):
        make_plan(scenario_two_lans(), cluster(2), "RoundRobin", loads={"nope": 0.5})


def test_host_section_goes_to_the_host_with_most_vms_on_its_nets():
    sc = scenario_two_lans()
    sc.host = HostSection(hostifs=[HostIf("B")])
    p = make_plan(sc, cluster(3), "RoundRobin")
    # B's VMs: r2 (h1), b1 (h2), b2 (h3): one each, so the first in cluster order
    assert p.host_section == "h1"
    sc.vms.append(VM("b3", interfaces=[Interface(1, "B")]))  # 7th VM -> h1
    assert make_plan(sc, cluster(3), "RoundRobin").host_section == "h1"
    sc.vms.insert(0, VM("b0", interfaces=[Interface(1, "B")]))
    p = make_plan(sc, cluster(3), "RoundRobin")
    counts = {h: sum(1 for v in vms if v.startswith(("b", "r2"))) for h, vms in p.hosts.items()}
    assert p.host_section == max(counts, key=lambda h: (counts[h], -list(counts).index(h)))


def test_plans_are_deterministic():
    a = make_plan(scenario_two_lans(), cluster(3), "MinCut").to_json()
    b = make_plan(scenario_two_lans(), cluster(3), "MinCut").to_json()
    assert a == b


def test_every_registered_algorithm_places_every_vm_once():
    from ediv.partition import registry

    sc = scenario_two_lans()
    for name in registry.available():
        p = make_plan(sc, cluster(3), name, loads={"h1": 0.5, "h2": 0.3, "h3": 0.1})
        assert sorted(p.allocation) == sorted(v.name for v in sc.vms), name
        assert sum(len(v) for v in p.hosts.values()) == len(sc.vms), name
