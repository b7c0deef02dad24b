"""DSP1042 resource methods of EDIV_VirtualSystemManagementService over a real server and a
real state store (the ``engine_server`` fixture of tests/conftest.py): AddResourceSettings,
ModifyResourceSettings, RemoveResourceSettings and ModifySystemSettings on the VMs of a
defined scenario, with pywbem and pywbemcli as clients.

Each test defines its own copy of examples/simple6.xml (h1 h2 on Net0, r1 r2 joined by the
ppp net Link, h3 h4 on Net1) and checks the result through the server's instances and the
stored scenario text; every refused call must leave the stored text as it was.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wbem_support import USERS, connect

from ediv import state as st

pywbem = pytest.importorskip("pywbem")

REPO = Path(__file__).resolve().parents[2]
SIMPLE6 = (REPO / "examples" / "simple6.xml").read_text()
NS = "root/ediv"
ETH = "EDIV_EthernetPortAllocationSettingData"
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYWBEMCLI_SERVER")
_COUNT = itertools.count(1)


# ---------------------------------------------------------------- helpers

@pytest.fixture
def handle(engine_server):
    return engine_server[0]


@pytest.fixture
def op(handle):
    return connect(handle, "operator", str(handle.config.cert_file))




@pytest.fixture
def scenario(request, op, service, store) -> str:
    """A defined copy of simple6 named after the test."""
    label = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.removeprefix("test_"))[:32]
    name = f"rm{next(_COUNT)}-{label.strip('-')}"
    spec = SIMPLE6.replace("<simulation_name>simple6<", f"<simulation_name>{name}<")
    rv, _ = op.InvokeMethod("DefineSystem", service, [("SystemSettings", pywbem.CIMInstance(
        "EDIV_ScenarioSettingData", properties={"ScenarioDefinition": spec}))])
    assert rv == 0 and store.scenario(name).state == st.DEFINED
    return name


def vssd_path(name: str, vm: str):
    return pywbem.CIMInstanceName("EDIV_VirtualSystemSettingData",
                                  {"InstanceID": f"ediv:vm:{name}/{vm}"}, namespace=NS)


def rasd_path(classname: str, name: str, vm: str, part: str):
    return pywbem.CIMInstanceName(classname, {"InstanceID": f"ediv:rasd:{name}/{vm}:{part}"},
                                  namespace=NS)


def vm_path(name: str, vm: str):
    return pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": f"{name}/{vm}"}, namespace=NS)


def port(**props) -> pywbem.CIMInstance:
    return pywbem.CIMInstance(ETH, properties={"ResourceType": pywbem.Uint16(33), **props})


def spec_of(store, name: str) -> str:
    return store.scenario(name).spec


def rasds_of(op, name: str, vm: str) -> dict[str, pywbem.CIMInstance]:
    """The VM's RASDs as the server shows them, by part (cpu, mem, disk, ifN)."""
    found = op.Associators(vssd_path(name, vm), AssocClass="EDIV_VirtualSystemSettingDataComponent")
    return {r["InstanceID"].rpartition(":")[2]: r for r in found}


def error_of(call) -> pywbem.CIMError:
    with pytest.raises(pywbem.CIMError) as info:
        call()
    return info.value


def refused(store, name: str, code: int, call) -> str:
    """``call`` fails with ``code`` and the stored scenario does not change."""
    before = spec_of(store, name)
    err = error_of(call)
    assert err.status_code == code, err
    assert spec_of(store, name) == before
    return err.status_description


def add(op, service, name: str, vm: str, *rasds):
    return op.InvokeMethod("AddResourceSettings", service, [
        ("AffectedConfiguration", vssd_path(name, vm)), ("ResourceSettings", list(rasds))])


def modify(op, service, *rasds):
    return op.InvokeMethod("ModifyResourceSettings", service,
                           [("ResourceSettings", list(rasds))])


def remove(op, service, *refs):
    return op.InvokeMethod("RemoveResourceSettings", service, [("ResourceSettings", list(refs))])


def modify_system(op, service, vssd):
    return op.InvokeMethod("ModifySystemSettings", service, [("SystemSettings", vssd)])


def pywbemcli(handle, home: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    user, password = USERS["operator"]
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}
    env["HOME"] = str(home)
    proc = subprocess.run([str(exe), "-s", handle.url, "-u", user, "-p", password,
                           "--ca-certs", str(handle.config.cert_file), "-d", NS, *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=home)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


# ---------------------------------------------------------------- discovery

def test_capabilities_list_the_resource_methods(op, service):
    (caps,) = op.Associators(service, AssocClass="EDIV_ElementCapabilities")
    # DSP1042 ValueMap: 5 Modify, 6 ModifySystemSettings, 7 Remove, 10 Add
    assert sorted(caps["SynchronousMethodsSupported"]) == [2, 3, 5, 6, 7, 10]


# ---------------------------------------------------------------- AddResourceSettings

def test_add_interface_memory_and_storage(op, service, store, scenario):
    mem = ('instance of EDIV_MemoryRASD { ResourceType = 4; VirtualQuantity = 256; '
           'AllocationUnits = "byte*2^20"; };')
    disk = ('instance of EDIV_StorageAllocationSettingData { ResourceType = 31; '
            'HostResource = {"/var/lib/ediv/rootfs.img"}; ResourceSubType = "direct"; };')
    eth = port(Connection=["Net1"], Address="02:00:00:00:01:50",
               IPAddresses=["198.18.2.50/24", "2001:db8:2::50/64"])
    rv, out = add(op, service, scenario, "h1", eth, mem, disk)
    assert rv == 0
    refs = out["ResultingResourceSettings"]
    assert [(r.classname, r["InstanceID"]) for r in refs] == [
        (ETH, f"ediv:rasd:{scenario}/h1:if2"),
        ("EDIV_MemoryRASD", f"ediv:rasd:{scenario}/h1:mem"),
        ("EDIV_StorageAllocationSettingData", f"ediv:rasd:{scenario}/h1:disk")]
    new = op.GetInstance(refs[0])
    assert new["InterfaceIndex"] == 2 and new["Connection"] == ["Net1"]
    assert new["Address"] == "02:00:00:00:01:50"
    assert new["IPAddresses"] == ["198.18.2.50/24", "2001:db8:2::50/64"]
    parts = rasds_of(op, scenario, "h1")
    assert sorted(parts) == ["cpu", "disk", "if1", "if2", "mem"]
    assert parts["mem"]["VirtualQuantity"] == 256
    assert parts["disk"]["HostResource"] == ["/var/lib/ediv/rootfs.img"]
    vssd = op.GetInstance(vssd_path(scenario, "h1"))
    assert vssd["Filesystem"] == "/var/lib/ediv/rootfs.img" and vssd["FilesystemType"] == "direct"
    spec = spec_of(store, scenario)
    assert '<if id="2" net="Net1">' in spec and "198.18.2.50/24" in spec
    assert "<mem>256M</mem>" in spec and "02:00:00:00:01:50" in spec
    # the VM's memory and filesystem are now its own: a second one is refused
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                      lambda: add(op, service, scenario, "h1", mem))
    assert "already has its memory" in message and "ModifyResourceSettings" in message
    # the next free index when InterfaceIndex is not given, through the ssd's text too
    rv, out = add(op, service, scenario, "h1", port(NetworkName="Net0"))
    assert rv == 0 and out["ResultingResourceSettings"][0]["InstanceID"].endswith(":if3")
    ssd = op.GetInstance(pywbem.CIMInstanceName(
        "EDIV_ScenarioSettingData", {"InstanceID": f"ediv:scenario:{scenario}"}, namespace=NS))
    assert '<if id="3" net="Net0"' in ssd["ScenarioDefinition"]


def test_add_refuses_unknown_net_and_duplicate_index(op, service, store, scenario):
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: add(
        op, service, scenario, "h2", port(Connection=["NoSuchNet"])))
    assert "'NoSuchNet' is not declared" in message
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: add(
        op, service, scenario, "h2", port(Connection=["Net1"],
                                          InterfaceIndex=pywbem.Uint32(1))))
    assert "InterfaceIndex 1" in message
    # all or nothing: a good port and a bad address in one call store neither
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: add(
        op, service, scenario, "h2", port(Connection=["Net1"]),
        port(Connection=["Net0"], IPAddresses=["198.18.1.300/24"])))
    assert "198.18.1.300/24" in message
    assert sorted(rasds_of(op, scenario, "h2")) == ["cpu", "if1", "mem"]
    # a third end on the ppp net: the scenario checks say no
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: add(
        op, service, scenario, "h2", port(Connection=["Link"])))
    assert "ppp net 'Link' has 3 ends" in message
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: add(
        op, service, scenario, "h2", 'instance of EDIV_ProcessorRASD { ResourceType = 3; };'))
    assert "processor" in message


# ---------------------------------------------------------------- ModifyResourceSettings

def test_modify_memory_and_an_interface(op, service, store, scenario):
    # what GetInstance returned, changed and sent back whole
    mem = op.GetInstance(rasd_path("EDIV_MemoryRASD", scenario, "h3", "mem"))
    mem["VirtualQuantity"] = pywbem.Uint64(2)
    mem["AllocationUnits"] = "byte*2^30"
    rv, out = modify(op, service, mem)
    assert rv == 0
    assert [r["InstanceID"] for r in out["ResultingResourceSettings"]] == [
        f"ediv:rasd:{scenario}/h3:mem"]
    (shown,) = [m for m in op.EnumerateInstances("EDIV_MemoryRASD")
                if m["InstanceID"] == f"ediv:rasd:{scenario}/h3:mem"]
    assert shown["VirtualQuantity"] == 2048 and shown["AllocationUnits"] == "byte*2^20"
    assert "<mem>2048M</mem>" in spec_of(store, scenario)

    # only what is given changes: the net and addresses of h3's port, as MOF text
    eth = (f'instance of {ETH} {{ InstanceID = "ediv:rasd:{scenario}/h3:if1"; '
           'Connection = {"Net0"}; IPAddresses = {"198.18.1.30/24"}; '
           'Address = "02:00:00:00:03:01"; };')
    rv, out = modify(op, service, eth)
    assert rv == 0 and out["ResultingResourceSettings"][0]["InstanceID"].endswith("h3:if1")
    now = rasds_of(op, scenario, "h3")["if1"]
    assert now["Connection"] == ["Net0"] and now["NetworkName"] == "Net0"
    assert now["IPAddresses"] == ["198.18.1.30/24"] and now["Address"] == "02:00:00:00:03:01"
    spec = spec_of(store, scenario)
    assert "198.18.1.30/24" in spec and ">198.18.2.10</ipv4>" not in spec
    assert rasds_of(op, scenario, "h3")["mem"]["VirtualQuantity"] == 2048  # kept

    # an unchanged round trip of every RASD of a VM is accepted and changes nothing
    before = spec_of(store, scenario)
    rv, _ = modify(op, service, *rasds_of(op, scenario, "r1").values())
    assert rv == 0 and spec_of(store, scenario) == before


def test_modify_renumbers_and_refuses_bad_changes(op, service, store, scenario):
    r1 = rasds_of(op, scenario, "r1")
    # swapping the two indexes in one call is fine; giving one the other's is not
    a, b = r1["if1"].copy(), r1["if2"].copy()
    a["InterfaceIndex"], b["InterfaceIndex"] = pywbem.Uint32(2), pywbem.Uint32(1)
    rv, out = modify(op, service, a, b)
    assert rv == 0
    assert [r["InstanceID"].rpartition(":")[2] for r in out["ResultingResourceSettings"]] == [
        "if2", "if1"]
    assert rasds_of(op, scenario, "r1")["if1"]["Connection"] == ["Link"]
    dup = rasds_of(op, scenario, "r1")["if1"]
    dup["InterfaceIndex"] = pywbem.Uint32(2)
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                      lambda: modify(op, service, dup))
    assert "id 2 is used twice" in message

    eth = rasds_of(op, scenario, "h4")["if1"]
    eth["Connection"] = ["Net7"]
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                      lambda: modify(op, service, eth))
    assert "'Net7' is not declared" in message
    cpu = rasds_of(op, scenario, "h4")["cpu"]
    cpu["VirtualQuantity"] = pywbem.Uint64(4)
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                      lambda: modify(op, service, cpu))
    assert "VirtualQuantity cannot be changed" in message
    mem = rasds_of(op, scenario, "h4")["mem"]
    mem["AllocationUnits"] = "furlongs"
    assert "AllocationUnits" in refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                                        lambda: modify(op, service, mem))
    # all or nothing: a good memory change with a bad MAC stores neither
    mem = rasds_of(op, scenario, "h4")["mem"]
    mem["VirtualQuantity"] = pywbem.Uint64(128)
    eth = rasds_of(op, scenario, "h4")["if1"]
    eth["Address"] = "01:00:5e:00:00:01"
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                      lambda: modify(op, service, mem, eth))
    assert "multicast" in message
    wrong = rasds_of(op, scenario, "h4")["mem"]
    wrong["ResourceType"] = pywbem.Uint16(10)
    assert "ResourceType" in refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                                     lambda: modify(op, service, wrong))


def test_modify_storage_adds_then_changes_it(op, service, store, scenario):
    disk = ('instance of EDIV_StorageAllocationSettingData { ResourceType = 31; '
            'HostResource = {"/images/a.img"}; };')
    rv, out = add(op, service, scenario, "h2", disk)
    assert rv == 0
    now = op.GetInstance(out["ResultingResourceSettings"][0])
    assert now["ResourceSubType"] == "cow"
    now["HostResource"] = ["/images/b.img"]
    now["ResourceSubType"] = "hostfs"
    rv, _ = modify(op, service, now)
    assert rv == 0
    assert '<filesystem type="hostfs">/images/b.img</filesystem>' in spec_of(store, scenario)
    now["ResourceSubType"] = "qcow2"
    assert "qcow2" in refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                              lambda: modify(op, service, now))


# ---------------------------------------------------------------- RemoveResourceSettings

def test_remove_interface_and_memory(op, service, store, scenario):
    # the port as CIM-XML INSTANCE text, the memory as MOF text
    eth = port(Connection=["Net0"], IPAddresses=["198.18.1.44/24"]).tocimxmlstr()
    rv, out = add(op, service, scenario, "h4", eth,
                  'instance of EDIV_MemoryRASD { ResourceType = 4; VirtualQuantity = 96; };')
    assert rv == 0
    new_port, mem = out["ResultingResourceSettings"]
    assert "<mem>96M</mem>" in spec_of(store, scenario)
    rv, out = remove(op, service, new_port, mem)
    assert rv == 0 and out == {}
    assert sorted(rasds_of(op, scenario, "h4")) == ["cpu", "if1", "mem"]
    assert rasds_of(op, scenario, "h4")["mem"]["VirtualQuantity"] == 64  # the default again
    spec = spec_of(store, scenario)
    assert "198.18.1.44" not in spec and "<mem>" not in spec
    assert error_of(lambda: op.GetInstance(new_port)).status_code == pywbem.CIM_ERR_NOT_FOUND


def test_remove_refuses_what_cannot_go(op, service, store, scenario):
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: remove(
        op, service, rasd_path("EDIV_ProcessorRASD", scenario, "h1", "cpu")))
    assert "processor" in message and "cannot be removed" in message
    # r2's end of the ppp link: the link would have one end left
    message = refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: remove(
        op, service, rasd_path(ETH, scenario, "r2", "if2")))
    assert "ppp net 'Link' has 1 end" in message
    # all or nothing: h1's port and the processor together remove neither
    refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: remove(
        op, service, rasd_path(ETH, scenario, "h1", "if1"),
        rasd_path("EDIV_ProcessorRASD", scenario, "h1", "cpu")))
    assert "if1" in rasds_of(op, scenario, "h1")
    assert refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: remove(
        op, service, vm_path(scenario, "h1")))


# ---------------------------------------------------------------- ModifySystemSettings

def test_rename_and_retype_a_vm_with_pywbemcli(handle, op, service, store, scenario, tmp_path):
    service_text = f"{service.classname}." + ",".join(
        f'{k}="{v}"' for k, v in service.keybindings.items())
    mof = (f'instance of EDIV_VirtualSystemSettingData {{ InstanceID = "ediv:vm:{scenario}/h3";'
           ' VirtualSystemIdentifier = "web3"; VirtualSystemType = "container"; };')
    out = pywbemcli(handle, tmp_path, "instance", "invokemethod", service_text,
                    "ModifySystemSettings", "-p", f"SystemSettings={mof}")
    assert "ReturnValue=0" in out.replace(" ", "")
    vm = op.GetInstance(vm_path(scenario, "web3"))
    assert vm["VirtualSystemType"] == "container" and vm["EnabledState"] == 3
    assert error_of(lambda: op.GetInstance(vm_path(scenario, "h3"))).status_code == \
        pywbem.CIM_ERR_NOT_FOUND
    assert '<vm name="web3" type="container">' in spec_of(store, scenario)
    # its RASDs follow the new name
    assert sorted(rasds_of(op, scenario, "web3")) == ["cpu", "if1", "mem"]

    # pywbem: ElementName alone renames too; kernel and filesystem of a UML VM
    vssd = op.GetInstance(vssd_path(scenario, "web3"))
    vssd["ElementName"] = "web4"
    vssd["VirtualSystemType"] = "uml"
    vssd["Kernel"] = "/boot/linux-uml"
    vssd["Filesystem"] = "/images/web.img"
    vssd["FilesystemType"] = "cow"
    rv, out = modify_system(op, service, vssd)
    assert rv == 0 and out == {}
    shown = op.GetInstance(vssd_path(scenario, "web4"))
    assert shown["VirtualSystemIdentifier"] == "web4" and shown["Kernel"] == "/boot/linux-uml"
    assert shown["Filesystem"] == "/images/web.img" and shown["VirtualSystemType"] == "uml"


def test_modify_system_refusals(op, service, store, scenario):
    vssd = op.GetInstance(vssd_path(scenario, "h1"))
    taken = vssd.copy()
    taken["VirtualSystemIdentifier"] = taken["ElementName"] = "h2"
    assert "already has a VM named 'h2'" in refused(
        store, scenario, pywbem.CIM_ERR_ALREADY_EXISTS, lambda: modify_system(op, service, taken))
    bad = vssd.copy()
    bad["VirtualSystemIdentifier"] = bad["ElementName"] = "no/slash"
    assert "not usable" in refused(store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER,
                                   lambda: modify_system(op, service, bad))
    bad = vssd.copy()
    bad["VirtualSystemType"] = "kvm"
    assert "'kvm' is not supported" in refused(
        store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: modify_system(op, service, bad))
    bad = vssd.copy()
    bad["Notes"] = ["not a VNUML setting"]
    assert "Notes cannot be changed" in refused(
        store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: modify_system(op, service, bad))
    ghost = vssd.copy()
    ghost.path = None
    ghost["InstanceID"] = f"ediv:vm:{scenario}/nobody"
    assert "no VM 'nobody'" in refused(store, scenario, pywbem.CIM_ERR_NOT_FOUND,
                                       lambda: modify_system(op, service, ghost))


# ---------------------------------------------------------------- unknown things, state, role

def test_unknown_instance_ids_are_not_found(op, service, store, scenario):
    for call in (
        lambda: modify(op, service, port(InstanceID=f"ediv:rasd:{scenario}/h1:if9",
                                         Connection=["Net0"])),
        lambda: modify(op, service, port(InstanceID=f"ediv:rasd:{scenario}/ghost:if1",
                                         Connection=["Net0"])),
        lambda: modify(op, service, port(InstanceID="nonsense", Connection=["Net0"])),
        lambda: remove(op, service, rasd_path(ETH, scenario, "h1", "if7")),
        lambda: remove(op, service, rasd_path("EDIV_StorageAllocationSettingData", scenario,
                                              "h1", "disk")),  # h1 has no filesystem
        lambda: remove(op, service, rasd_path("EDIV_MemoryRASD", scenario, "h1", "if1")),
        lambda: add(op, service, scenario, "ghost", port(Connection=["Net0"])),
    ):
        refused(store, scenario, pywbem.CIM_ERR_NOT_FOUND, call)
    err = error_of(lambda: add(op, service, "no-such-scenario", "h1", port(Connection=["x"])))
    assert err.status_code == pywbem.CIM_ERR_NOT_FOUND
    # a memory InstanceID sent as an Ethernet port is bad input, not a lookup miss
    assert "is an EDIV_MemoryRASD" in refused(
        store, scenario, pywbem.CIM_ERR_INVALID_PARAMETER, lambda: modify(op, service, port(
            InstanceID=f"ediv:rasd:{scenario}/h1:mem", Connection=["Net0"])))


def test_deployed_scenario_is_invalid_state(op, service, store, scenario):
    store.set_scenario_state(scenario, st.DEPLOYED)
    try:
        before = spec_of(store, scenario)
        mem = rasds_of(op, scenario, "h1")["mem"]
        mem["VirtualQuantity"] = pywbem.Uint64(512)
        assert modify(op, service, mem)[0] == 5
        assert remove(op, service, rasd_path(ETH, scenario, "h1", "if1"))[0] == 5
        vssd = op.GetInstance(vssd_path(scenario, "h1"))
        vssd["VirtualSystemIdentifier"] = vssd["ElementName"] = "h9"
        assert modify_system(op, service, vssd)[0] == 5
        # AddResourceSettings has no Invalid State value in its ValueMap: an error that says so
        err = error_of(lambda: add(op, service, scenario, "h1", port(Connection=["Net1"])))
        assert err.status_code == pywbem.CIM_ERR_FAILED
        assert f"scenario '{scenario}' is deployed" in err.status_description
        assert spec_of(store, scenario) == before
    finally:
        store.set_scenario_state(scenario, st.DEFINED)


def test_reader_is_refused(handle, service, store, scenario):
    reader = connect(handle, "reader", str(handle.config.cert_file))
    for call in (
        lambda: add(reader, service, scenario, "h1", port(Connection=["Net1"])),
        lambda: remove(reader, service, rasd_path(ETH, scenario, "h1", "if1")),
        lambda: modify_system(reader, service, pywbem.CIMInstance(
            "EDIV_VirtualSystemSettingData", properties={
                "InstanceID": f"ediv:vm:{scenario}/h1", "ElementName": "x1"})),
    ):
        assert "needs role operator" in refused(store, scenario,
                                                pywbem.CIM_ERR_ACCESS_DENIED, call)


@pytest.mark.parametrize(("params", "message"), [
    ([], "AffectedConfiguration must be a reference"),
    ([("AffectedConfiguration", "text")], "AffectedConfiguration must be a reference"),
    ([("ResourceSettings", ["instance of EDIV_MemoryRASD { Bogus = 1; };"])], "Bogus"),
    ([("ResourceSettings", ["<INSTANCE CLASSNAME='EDIV_MemoryRASD'>"])], "not well-formed"),
])
def test_malformed_add_is_invalid_parameter(op, service, scenario, params, message):
    if params and params[0][0] == "ResourceSettings":
        params = [("AffectedConfiguration", vssd_path(scenario, "h1")), *params]
    err = error_of(lambda: op.InvokeMethod("AddResourceSettings", service, params))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert message in err.status_description
