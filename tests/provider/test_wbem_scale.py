"""A 2,000-VM scenario through a real server and real clients: association traversals and
``pywbemcli profile centralinsts`` complete (with generous client timeouts: the timings are
bench/bench_wbem.py's) and give the right answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wbem_support import USERS

from ediv import state as st

pywbem = pytest.importorskip("pywbem")
pytestmark = pytest.mark.slow

NS = "root/ediv"
VMS, NETS = 2000, 400
HOSTS = ("alpha", "beta", "gamma")  # examples/cluster.conf, the engine_server's cluster


def _spec(name: str) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<vnuml><global><version>1.8</version>'
           f"<simulation_name>{name}</simulation_name><automac/>"
           '<vm_mgmt type="none"/><vm_defaults><filesystem type="cow">/fs/root</filesystem>'
           "<mem>64M</mem><kernel>/k/linux</kernel></vm_defaults></global>\n"]
    out += [f'<net name="Net{n}" mode="virtual_bridge"/>\n' for n in range(NETS)]
    out += [f'<vm name="vm{i}"><if id="1" net="Net{i % NETS}"/></vm>\n' for i in range(VMS)]
    out.append("</vnuml>\n")
    return "".join(out)


@pytest.fixture(scope="module")
def big(engine_server):
    store = engine_server[1].engine.store()
    store.create_scenario("big", _spec("big"), basedir="/nonexistent", algorithm="RoundRobin",
                          state=st.DEPLOYING)
    store.set_vms("big", [(f"vm{i}", HOSTS[i % 3], "uml", "running") for i in range(VMS)])
    store.set_scenario_state("big", st.DEPLOYED)
    store.unlock("big")
    assert engine_server[1].engine.model(store.scenario("big")) is not None  # spec parses
    name, password = USERS["reader"]
    return pywbem.WBEMConnection(engine_server[0].url, (name, password), default_namespace=NS,
                                 ca_certs=str(engine_server[0].config.cert_file), timeout=300)


def _path(cls: str, name: str):
    return pywbem.CIMInstanceName(cls, {"CreationClassName": cls, "Name": name}, namespace=NS)


def test_associator_names_of_one_vm(big):
    found = big.AssociatorNames(_path("EDIV_VirtualSystem", "big/vm7"))
    assert {p.classname for p in found} == {
        "EDIV_HostSystem", "EDIV_Scenario", "EDIV_VirtualSystemSettingData",
        "EDIV_VirtualSystemManagementService", "EDIV_EnabledLogicalElementCapabilities",
        "EDIV_RegisteredProfile", "EDIV_Processor", "EDIV_Memory", "EDIV_NetworkPort",
        "EDIV_LogicalDisk"}  # the VM's devices (SystemDevice)
    (host,) = [p for p in found if p.classname == "EDIV_HostSystem"]
    assert host.keybindings["Name"] == HOSTS[7 % 3]


def test_associator_names_and_references_of_the_scenario(big):
    scenario = _path("EDIV_Scenario", "big")
    found = big.AssociatorNames(scenario)
    vms = {p.keybindings["Name"] for p in found if p.classname == "EDIV_VirtualSystem"}
    nets = [p for p in found if p.classname == "EDIV_VirtualNetwork"]
    assert vms == {f"big/vm{i}" for i in range(VMS)} and len(nets) == NETS
    assert len(found) == len(set(found)) == VMS + NETS + 4  # SSD, service, caps, profile
    parts = big.ReferenceNames(scenario, ResultClass="EDIV_SystemComponent")
    assert len(parts) == VMS + NETS
    vm_only = big.AssociatorNames(scenario, AssocClass="EDIV_SystemComponent",
                                  ResultClass="EDIV_VirtualSystem", ResultRole="PartComponent")
    assert len(vm_only) == VMS


def test_pull_streams_every_vm(big):
    seen = [i.path.keybindings["Name"] for i in big.IterEnumerateInstances(
        "EDIV_VirtualSystem", MaxObjectCount=500, PropertyList=["Name", "HostName"])]
    assert len([n for n in seen if n.startswith("big/")]) == VMS
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("profile, expect", [
    ("Profile Registration", "CIM_ObjectManager"),
    ("System Virtualization", 'Name="alpha"'),
    ("Virtual System", 'Name="big/vm1999"'),
    ("EDIV Distributed Scenario", 'Name="big"'),
    ("Resource Allocation", None),
])
def test_pywbemcli_profile_centralinsts(big, engine_server, tmp_path, profile, expect):
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    handle = engine_server[0]
    name, password = USERS["reader"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYWBEMCLI_SERVER")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [str(exe), "-s", handle.url, "-u", name, "-p", password, "--ca-certs",
         str(handle.config.cert_file), "-d", "interop", "--timeout", "300", "-o", "simple",
         "profile", "centralinsts", "--profile", profile],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    if expect:
        assert expect in re.sub(r"[\s|]+", "", proc.stdout)  # table borders, wrapping
