"""Every advertised profile, walked the way a console does: pywbem's WBEMServer finds the
profile, its central instances, and from them the mandatory classes, properties and
associations (the table "Profile conformance" in docs/cim.md). Resource pools, allocation
capabilities and virtual devices over a real server and store (rows written as the
controller writes them for a deployed simple6, placed on the hosts of examples/cluster.conf).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wbem_support import USERS

from ediv import state as st

pywbem = pytest.importorskip("pywbem")

REPO = Path(__file__).resolve().parents[2]
SIMPLE6 = (REPO / "examples" / "simple6.xml").read_text()
NS = "root/ediv"
PLACEMENT = {"h1": "alpha", "h2": "beta", "r1": "gamma", "r2": "alpha", "h3": "beta",
             "h4": "gamma"}
IFS = {"h1": 1, "h2": 1, "r1": 2, "r2": 2, "h3": 1, "h4": 1}  # interfaces of simple6's VMs
HOSTS = {"alpha": (4096, 0), "beta": (2048, 0), "gamma": (2048, 20)}  # cluster.conf mem, max_vhost


def connect(handle, role: str = "reader", namespace: str = NS):
    name, password = USERS[role]
    return pywbem.WBEMConnection(handle.url, (name, password), default_namespace=namespace,
                                 ca_certs=str(handle.config.cert_file), timeout=60)


@pytest.fixture(scope="module")
def lab(engine_server):
    """simple6 deployed on alpha, beta, gamma (store rows only), h3 paused."""
    store = engine_server[1].engine.store()
    name = "prof6"
    store.create_scenario(name, SIMPLE6.replace(">simple6<", f">{name}<"), basedir="/nonexistent",
                          algorithm="RoundRobin", state=st.DEPLOYING)
    store.set_vms(name, [(vm, host, "container", "paused" if vm == "h3" else "running")
                         for vm, host in PLACEMENT.items()])
    store.allocate_segments(name, "vxlan", 1000, 1999, [("Net0", ["alpha", "beta", "gamma"])])
    store.set_scenario_state(name, st.DEPLOYED)
    store.unlock(name)
    return name


def vm_path(scenario: str, vm: str):
    return pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": f"{scenario}/{vm}"}, namespace=NS)


def host_path(host: str):
    return pywbem.CIMInstanceName("EDIV_HostSystem", {
        "CreationClassName": "EDIV_HostSystem", "Name": host}, namespace=NS)


def assoc(conn, path, assoc_class: str, **kw) -> list:
    return conn.Associators(path, AssocClass=assoc_class, **kw)


def names(conn, path, assoc_class: str, **kw) -> list:
    return conn.AssociatorNames(path, AssocClass=assoc_class, **kw)


# ---------------------------------------------------------------- per-profile checks

def check_profile_registration(conn, om) -> None:
    assert om.classname == "CIM_ObjectManager"
    inst = conn.GetInstance(om)
    assert inst["ElementName"] == "ediv" and inst["Started"] is True


def check_system_virtualization(conn, host) -> None:
    """DSP1042: host system, its hosted VMs, its management service and capabilities, its
    resource pools."""
    inst = conn.GetInstance(host)
    for prop in ("Name", "ElementName", "EnabledState", "OperationalStatus"):
        assert inst[prop] is not None, prop
    (service,) = names(conn, host, "EDIV_HostedService")
    assert service.classname == "EDIV_VirtualSystemManagementService"
    (caps,) = assoc(conn, host, "EDIV_ElementCapabilities")
    assert caps.classname == "EDIV_VirtualSystemManagementCapabilities"
    assert set(caps["VirtualSystemTypesSupported"]) >= {"uml", "container"}
    pools = names(conn, host, "EDIV_HostedResourcePool")
    assert sorted(p.classname for p in pools) == [
        "EDIV_MemoryPool", "EDIV_NetworkPortPool", "EDIV_ProcessorPool", "EDIV_StoragePool"]
    hosted = names(conn, host, "EDIV_HostedDependency")
    assert all(v.classname == "EDIV_VirtualSystem" for v in hosted)


def check_virtual_system(conn, vm) -> None:
    """DSP1057: state, settings (VSSD + RASDs), capabilities, devices with their settings."""
    inst = conn.GetInstance(vm)
    for prop in ("Name", "ElementName", "EnabledState", "RequestedState", "EnabledDefault"):
        assert inst[prop] is not None, prop
    (vssd,) = assoc(conn, vm, "EDIV_SettingsDefineState")
    assert vssd.classname == "EDIV_VirtualSystemSettingData"
    rasds = names(conn, vssd.path, "EDIV_VirtualSystemSettingDataComponent")
    (caps,) = assoc(conn, vm, "EDIV_ElementCapabilities")
    assert list(caps["RequestedStatesSupported"]) == [2, 3, 4, 9, 10, 11]
    devices = names(conn, vm, "EDIV_SystemDevice")
    assert len(devices) == len(rasds)
    for dev in devices:
        (rasd,) = names(conn, dev, "EDIV_SettingsDefineState")
        assert rasd.keybindings["InstanceID"].endswith(":" + dev.keybindings["DeviceID"])
        assert rasd in [r for r in rasds]
        device = conn.GetInstance(dev)
        assert device["EnabledState"] == inst["EnabledState"]
    (host,) = names(conn, vm, "EDIV_HostedDependency")
    assert host.classname == "EDIV_HostSystem"


def check_resource_allocation(conn, pool) -> None:
    """DSP1041: primordial pool of its host, with capabilities and what was allocated."""
    inst = conn.GetInstance(pool)
    for prop in ("InstanceID", "PoolID", "ResourceType", "Primordial", "Reserved",
                 "AllocationUnits"):
        assert inst[prop] is not None, prop
    assert inst["Primordial"] is True
    (host,) = names(conn, pool, "EDIV_HostedResourcePool")
    assert host.classname == "EDIV_HostSystem"
    (caps,) = assoc(conn, pool, "EDIV_ElementCapabilities")
    assert caps["ResourceType"] == inst["ResourceType"]
    devices = names(conn, pool, "EDIV_ElementAllocatedFromPool")
    rasds = assoc(conn, pool, "EDIV_ResourceAllocationFromPool")
    assert len(devices) == len(rasds)
    assert all(r["ResourceType"] == inst["ResourceType"] for r in rasds)


def check_allocation_capabilities(conn, caps) -> None:
    """DSP1043: the capabilities and their Default / Minimum / Maximum / Increment RASDs."""
    inst = conn.GetInstance(caps)
    for prop in ("InstanceID", "ResourceType", "RequestTypesSupported", "SharingMode"):
        assert inst[prop] is not None, prop
    refs = conn.References(caps, ResultClass="EDIV_SettingsDefineCapabilities")
    roles = sorted((int(r["ValueRole"]), int(r["ValueRange"])) for r in refs)
    assert roles == [(0, 0), (3, 1), (3, 2), (3, 3)]
    for ref in refs:
        rasd = conn.GetInstance(ref["PartComponent"])
        assert rasd["ResourceType"] == inst["ResourceType"]
    (pool,) = names(conn, caps, "EDIV_ElementCapabilities")
    assert pool.classname.endswith("Pool")


def check_scenario(conn, scenario) -> None:
    parts = names(conn, scenario, "EDIV_SystemComponent")
    assert {p.classname for p in parts} <= {"EDIV_VirtualSystem", "EDIV_VirtualNetwork"}
    (ssd,) = names(conn, scenario, "EDIV_SettingsDefineState")
    assert ssd.classname == "EDIV_ScenarioSettingData"


CHECKS = {
    "Profile Registration": check_profile_registration,
    "System Virtualization": check_system_virtualization,
    "Virtual System": check_virtual_system,
    "Resource Allocation": check_resource_allocation,
    "Allocation Capabilities": check_allocation_capabilities,
    "EDIV Distributed Scenario": check_scenario,
}


def test_every_profile_central_instances_and_mandatory_elements(engine_server, lab):
    conn = connect(engine_server[0])
    server = pywbem.WBEMServer(conn)
    advertised = {p["RegisteredName"]: p for p in server.profiles}
    assert set(advertised) == set(CHECKS)
    for name, profile in advertised.items():
        central = server.get_central_instances(profile.path)
        assert central, f"{name}: no central instances"
        for path in central:
            if path.namespace == NS and path.classname == "EDIV_VirtualSystem" and \
                    not path.keybindings["Name"].startswith(f"{lab}/"):
                continue
            CHECKS[name](conn, path)
    pools = server.get_central_instances(advertised["Resource Allocation"].path)
    assert len(pools) == 4 * len(HOSTS)
    caps = server.get_central_instances(advertised["Allocation Capabilities"].path)
    assert len(caps) == 4 * len(HOSTS)


def test_pools_capacity_and_reserved_follow_the_placement(engine_server, lab):
    conn = connect(engine_server[0])
    for host, (mem, max_vhost) in HOSTS.items():
        vms = [v for v, h in PLACEMENT.items() if h == host]
        pools = {p.classname: p for p in assoc(conn, host_path(host), "EDIV_HostedResourcePool")}
        cpu, memory = pools["EDIV_ProcessorPool"], pools["EDIV_MemoryPool"]
        assert cpu.get("Capacity") == (max_vhost or None) and cpu["Reserved"] == len(vms)
        assert memory["Capacity"] == mem and memory["AllocationUnits"] == "byte*2^20"
        assert memory["Reserved"] == 64 * len(vms)  # simple6 VMs have no <mem>: 64 MB each
        ports = pools["EDIV_NetworkPortPool"]
        assert ports["Reserved"] == sum(IFS[v] for v in vms)
        assert pools["EDIV_StoragePool"]["Reserved"] == 0  # no <filesystem> in simple6
        # the devices allocated from the pools are the placed VMs' devices
        allocated = names(conn, ports.path, "EDIV_ElementAllocatedFromPool")
        assert sorted(d.keybindings["SystemName"] for d in allocated) == \
            sorted(f"{lab}/{v}" for v in vms for _ in range(IFS[v]))
        mem_rasds = assoc(conn, memory.path, "EDIV_ResourceAllocationFromPool")
        assert sum(r["VirtualQuantity"] for r in mem_rasds) == memory["Reserved"]
        (mem_caps,) = assoc(conn, memory.path, "EDIV_ElementCapabilities")
        maximum = [r for r in assoc(conn, mem_caps.path, "EDIV_SettingsDefineCapabilities")
                   if r["InstanceID"].endswith(":Maximum")]
        assert [r["VirtualQuantity"] for r in maximum] == [mem]


def test_devices_of_a_vm_follow_its_state_and_nets(engine_server, lab):
    conn = connect(engine_server[0])
    r1 = vm_path(lab, "r1")
    devices = {d["DeviceID"]: d for d in assoc(conn, r1, "EDIV_SystemDevice")}
    assert sorted(devices) == ["cpu", "if1", "if2", "mem"]
    assert devices["mem"]["NumberOfBlocks"] * devices["mem"]["BlockSize"] == 64 << 20
    port = devices["if2"]
    assert port.classname == "EDIV_NetworkPort" and port["PortNumber"] == 2
    assert port["NetworkName"] == "Link" and port["LinkUp"] is True
    # automac offset 0, r1 is the third VM: 02:00:00:00:02:02
    assert port["PermanentAddress"] == "020000000202"
    (net,) = assoc(conn, port.path, "EDIV_NetworkPortOnNetwork")
    assert net.classname == "EDIV_VirtualNetwork" and net["ElementName"] == "Link"
    on_link = names(conn, net.path, "EDIV_NetworkPortOnNetwork")
    assert sorted(p.keybindings["SystemName"] for p in on_link) == [f"{lab}/r1", f"{lab}/r2"]
    (pool,) = names(conn, port.path, "EDIV_ElementAllocatedFromPool")
    assert pool.keybindings["InstanceID"] == "ediv:pool:gamma:net"
    # h3 is paused: it and its devices are Quiesce (9), its links down
    h3 = conn.GetInstance(vm_path(lab, "h3"))
    assert h3["EnabledState"] == 9 and h3["RequestedState"] == 9
    h3_devices = assoc(conn, h3.path, "EDIV_SystemDevice")
    assert {d["EnabledState"] for d in h3_devices} == {9}
    assert [d["LinkUp"] for d in h3_devices if d.classname == "EDIV_NetworkPort"] == [False]


def test_processor_and_memory_rasds_are_cim_249_classes(engine_server, lab):
    conn = connect(engine_server[0])
    cls = conn.GetClass("EDIV_MemoryRASD", LocalOnly=False)
    assert cls.superclass == "CIM_MemoryAllocationSettingData"
    assert conn.GetClass("EDIV_ProcessorRASD").superclass == "CIM_ProcessorAllocationSettingData"
    (vssd,) = assoc(conn, vm_path(lab, "h1"), "EDIV_ElementSettingData")
    rasds = {r.classname: r for r in assoc(conn, vssd.path,
                                           "EDIV_VirtualSystemSettingDataComponent")}
    assert rasds["EDIV_MemoryRASD"]["ResourceType"] == 4
    assert rasds["EDIV_ProcessorRASD"]["ResourceType"] == 3
    # the capability RASDs are not settings of any VM
    assert all(not r["InstanceID"].startswith("ediv:alloccaps:")
               for r in rasds.values())


def test_association_lookups_cost_the_answer(engine_server, lab):
    """A pool's devices are found from the VMs on its host, a device's pool from its VM:
    neither enumerates the association (enumerating it would count every VM's devices)."""
    plugin = engine_server[1]
    model = plugin.model
    calls = {"n": 0}
    real = model.iter_vms

    def counting():
        calls["n"] += 1
        return real()
    model.iter_vms = counting
    try:
        conn = connect(engine_server[0])
        pool = pywbem.CIMInstanceName("EDIV_MemoryPool", {"InstanceID": "ediv:pool:beta:mem"},
                                      namespace=NS)
        assert len(names(conn, pool, "EDIV_ElementAllocatedFromPool")) == 2
        dev = names(conn, vm_path(lab, "h2"), "EDIV_SystemDevice")
        assert names(conn, dev[0], "EDIV_ElementAllocatedFromPool")
        assert names(conn, pool, "EDIV_HostedResourcePool")
    finally:
        model.iter_vms = real
    assert calls["n"] == 0


def _pywbemcli(handle, tmp_path: Path, *args: str, namespace: str = NS) -> str:
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    name, password = USERS["reader"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE",
                        "PYWBEMCLI_SERVER")}
    env["HOME"] = str(tmp_path)
    cmd = [str(exe), "-s", handle.url, "-u", name, "-p", password, "--ca-certs",
           str(handle.config.cert_file), "-d", namespace, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def test_pywbemcli_centralinsts_and_shrub(engine_server, lab, tmp_path):
    handle = engine_server[0]
    for profile, expect in (("Resource Allocation", "EDIV_MemoryPool"),
                            ("Allocation Capabilities", "EDIV_AllocationCapabilities"),
                            ("Virtual System", "EDIV_VirtualSystem")):
        out = _pywbemcli(handle, tmp_path, "profile", "centralinsts", "--profile", profile)
        assert expect in out, profile
    targets = {
        "host": ('EDIV_HostSystem.CreationClassName="EDIV_HostSystem",Name="gamma"',
                 ("EDIV_HostedResourcePool", "EDIV_HostedDependency")),
        "scenario": (f'EDIV_Scenario.CreationClassName="EDIV_Scenario",Name="{lab}"',
                     ("EDIV_SystemComponent",)),
        "vm": (f'EDIV_VirtualSystem.CreationClassName="EDIV_VirtualSystem",Name="{lab}/r1"',
               ("EDIV_SystemDevice", "EDIV_HostedDependency")),
        "pool": ('EDIV_NetworkPortPool.InstanceID="ediv:pool:gamma:net"',
                 ("EDIV_ElementAllocatedFromPool", "EDIV_HostedResourcePool")),
    }
    for what, (path, assocs) in targets.items():
        out = _pywbemcli(handle, tmp_path, "instance", "shrub", path)
        for name in assocs:
            assert name in out, (what, name, out)
    # a VM's port, its pool and its net, by pywbemcli
    port = (f'EDIV_NetworkPort.SystemCreationClassName="EDIV_VirtualSystem",'
            f'SystemName="{lab}/r1",CreationClassName="EDIV_NetworkPort",DeviceID="if2"')
    out = _pywbemcli(handle, tmp_path, "instance", "associators", port, "--ac",
                     "EDIV_ElementAllocatedFromPool", "--no")
    assert "ediv:pool:gamma:net" in out
    out = _pywbemcli(handle, tmp_path, "instance", "associators", port, "--ac",
                     "EDIV_NetworkPortOnNetwork", "--no")
    assert f"{lab}/Link" in out


def test_define_system_takes_cim_249_processor_and_memory_settings(engine_server, lab):
    """A console that knows only the DMTF classes sends CIM_ProcessorAllocationSettingData /
    CIM_MemoryAllocationSettingData: DefineSystem adds the VM; the VM's RASDs come back as
    EDIV_ProcessorRASD / EDIV_MemoryRASD (their subclasses)."""
    handle = engine_server[0]
    op = connect(handle, "operator")
    (service,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    spec = SIMPLE6.replace(">simple6<", ">prof249<")
    rv, _out = op.InvokeMethod("DefineSystem", service, [("SystemSettings", pywbem.CIMInstance(
        "EDIV_ScenarioSettingData", properties={"ScenarioDefinition": spec}))])
    assert rv == 0
    vssd = pywbem.CIMInstance("EDIV_VirtualSystemSettingData", properties={
        "VirtualSystemIdentifier": "h9", "VirtualSystemType": "container"})
    cpu = pywbem.CIMInstance("CIM_ProcessorAllocationSettingData", properties={
        "ResourceType": pywbem.Uint16(3), "VirtualQuantity": pywbem.Uint64(1)})
    mem = ('instance of CIM_MemoryAllocationSettingData { ResourceType = 4; '
           'VirtualQuantity = 96; AllocationUnits = "byte*2^20"; };')
    ref = pywbem.CIMInstanceName("EDIV_ScenarioSettingData",
                                 {"InstanceID": "ediv:scenario:prof249"}, namespace=NS)
    rv, out = op.InvokeMethod("DefineSystem", service, [
        ("SystemSettings", vssd.tocimxmlstr()), ("ResourceSettings", [cpu.tocimxmlstr(), mem]),
        ("ReferenceConfiguration", ref)])
    assert rv == 0 and out["ResultingSystem"].keybindings["Name"] == "prof249/h9"
    (settings,) = assoc(op, out["ResultingSystem"], "EDIV_ElementSettingData")
    rasds = {r.classname: r for r in assoc(op, settings.path,
                                           "EDIV_VirtualSystemSettingDataComponent")}
    assert rasds["EDIV_MemoryRASD"]["VirtualQuantity"] == 96
    assert "EDIV_ProcessorRASD" in rasds
    (memory,) = [d for d in assoc(op, out["ResultingSystem"], "EDIV_SystemDevice")
                 if d.classname == "EDIV_Memory"]
    assert memory["NumberOfBlocks"] == 96 and memory["EnabledState"] == 3  # defined
    rv, _out = op.InvokeMethod("DestroySystem", service, [("AffectedSystem", pywbem.CIMInstanceName(
        "EDIV_Scenario", {"CreationClassName": "EDIV_Scenario", "Name": "prof249"},
        namespace=NS))])
    assert rv == 0
