"""<vm_defaults> resolved once (ediv.scenario.defaults) and seen the same by split, bundle,
plan and the CIM provider."""

from __future__ import annotations

import io
import tarfile

import pytest

from ediv.bundle import build_bundle
from ediv.cluster import default_cluster
from ediv.partition.common import vm_mem_mb
from ediv.plan import make_plan
from ediv.scenario import parse_string
from ediv.scenario.defaults import effective_vm, resolved
from ediv.split import split

SCENARIO = """<vnuml><global><version>1.8</version><simulation_name>tut</simulation_name>
<vm_mgmt type="none"/>
<vm_defaults exec_mode="mconsole">
  <mem>96M</mem>
  <console id="0">xterm</console>
  <route type="ipv4" gw="198.18.1.1">198.18.99.0/24</route>
  <route type="ipv4" gw="198.18.1.1">default</route>
  <user username="lab"><group>wheel</group></user>
  <filetree seq="start" root="/etc/lab">conf</filetree>
</vm_defaults></global>
<net name="Net0" mode="virtual_bridge"/>
<vm name="a"><if id="1" net="Net0"><ipv4>198.18.1.10</ipv4></if></vm>
<vm name="b"><mem>128M</mem><console id="0">pts</console>
  <if id="1" net="Net0"><ipv4>198.18.1.11</ipv4></if>
  <route type="ipv4" gw="198.18.1.2">default</route>
  <user username="lab"><group>staff</group></user>
  <filetree seq="start" root="/etc/own">own</filetree>
</vm>
</vnuml>"""


def load(tmp_path):
    for d in ("conf", "own"):
        (tmp_path / d).mkdir()
        (tmp_path / d / f"{d}.txt").write_text(d)
    return parse_string(SCENARIO, "tut.xml", str(tmp_path))


def test_one_valued_override_lists_add_and_the_model_is_untouched(tmp_path):
    sc = load(tmp_path)
    d = sc.global_.vm_defaults
    a, b = (effective_vm(v, d) for v in sc.vms)
    assert (a.mem, b.mem) == ("96M", "128M")
    assert (a.exec_mode, b.exec_mode) == ("mconsole", "mconsole")
    assert [c.value for c in a.consoles] == ["xterm"] and [c.value for c in b.consoles] == ["pts"]
    assert [(r.destination, r.gw) for r in a.routes] == [
        ("198.18.99.0/24", "198.18.1.1"), ("default", "198.18.1.1")]
    # b's own default route replaces the inherited one; the other inherited route stays
    assert [(r.destination, r.gw) for r in b.routes] == [
        ("198.18.99.0/24", "198.18.1.1"), ("default", "198.18.1.2")]
    assert [u.username for u in a.users] == ["lab"] and a.users[0] is d.users[0]
    assert len(b.users) == 1 and b.users[0] is sc.vms[1].users[0]
    assert [f.root for f in a.filetrees] == ["/etc/lab"]
    assert [f.root for f in b.filetrees] == ["/etc/lab", "/etc/own"]
    # pure: the parsed model still says what the file says
    assert sc.vms[0].mem is None and sc.vms[0].routes == [] and sc.vms[0].filetrees == []
    assert effective_vm(sc.vms[0], None) is sc.vms[0]
    assert resolved(sc).global_.vm_defaults is None and sc.global_.vm_defaults is not None


def test_split_bundle_plan_and_cim_see_the_defaults(tmp_path):
    from ediv.provider.engine_providers import rasd_instances

    sc = load(tmp_path)
    cluster = default_cluster()
    plan = make_plan(sc, cluster, "RoundRobin")
    parts = split(sc, plan, cluster, key="k1")
    by_vm = {v.name: v for p in parts for v in p.scenario.vms}
    assert [r.destination for r in by_vm["a"].routes] == ["198.18.99.0/24", "default"]
    assert all(p.scenario.global_.vm_defaults is None for p in parts)
    part_a = next(p for p in parts if "a" in p.vms)
    bundle = build_bundle(part_a.scenario, part_a.deploy, sc.basedir)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        assert "files/conf/conf.txt" in tar.getnames()
    assert vm_mem_mb(sc.vms[0], sc) == 96
    mem = next(i for i in rasd_instances(sc, sc.vms[0]) if i.classname == "EDIV_MemoryRASD")
    assert mem["VirtualQuantity"] == 96


MGMT_ZERO = """<vnuml><global><version>1.8</version><simulation_name>z</simulation_name>
<vm_mgmt type="{mgmt}"/></global>
<net name="Net0" mode="virtual_bridge"/>
<vm name="a"><if id="0" net="Net0"><ipv4>198.18.1.10</ipv4></if></vm>
<vm name="b">{mng}<if id="1" net="Net0"><ipv4>198.18.1.11</ipv4></if></vm>
</vnuml>"""


def test_vm_mgmt_none_with_if_0_deploys_without_management_on_that_vm():
    """VNUML: vm_mgmt none means no management interface, so <if id="0"> is the VM's own
    eth0; ediv keeps management for the other VMs (as EDIV did) and leaves it out there."""
    from ediv.agent.bundle import parse_deploy_info
    from ediv.agent.layout import build_layout

    sc = parse_string(MGMT_ZERO.format(mgmt="none", mng="<mng_if>no</mng_if>"), "z.xml")
    cluster = default_cluster(1)
    parts = split(sc, make_plan(sc, cluster, "RoundRobin"), cluster, key="kz")
    assert set(parts[0].deploy["mgmt"]) == set()  # a: uses eth0; b: mng_if no
    layout = build_layout(parts[0].scenario,
                          parse_deploy_info(parts[0].deploy, parts[0].scenario.name))
    assert [i.inside for i in layout.vm("a").interfaces] == ["eth0"]
    sc2 = parse_string(MGMT_ZERO.format(mgmt="none", mng=""), "z.xml")
    parts2 = split(sc2, make_plan(sc2, cluster, "RoundRobin"), cluster, key="kz")
    assert set(parts2[0].deploy["mgmt"]) == {"b"}


def test_if_0_with_private_management_is_refused_by_validate():
    from ediv.errors import InputError
    from ediv.scenario import load_string

    with pytest.raises(InputError) as exc:
        load_string(MGMT_ZERO.format(mgmt="private", mng=""), "z.xml")
    assert any("z.xml:4" in str(d) and "eth0 is the management interface" in str(d)
               for d in exc.value.diagnostics), exc.value.diagnostics
    ok, _ = load_string(MGMT_ZERO.format(mgmt="private", mng="").replace(
        '<vm name="a">', '<vm name="a"><mng_if>no</mng_if>'), "z.xml")
    assert ok.vm("a") is not None
