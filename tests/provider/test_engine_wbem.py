"""root/ediv over a real server and a real state store: instances, associations, jobs,
DefineSystem / DestroySystem / PlanScenario / ExecuteSequence / RequestStateChange checks.

No hosts are needed: rows are written into the state store the way the controller writes
them, and deploys (which need a testbed) are in tests/test_wbem_e2e.py. The server is the
``engine_server`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from wbem_support import USERS

from ediv import state as st

pywbem = pytest.importorskip("pywbem")

REPO = Path(__file__).resolve().parents[2]
SIMPLE6 = (REPO / "examples" / "simple6.xml").read_text()
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
NS = "root/ediv"


def connect(handle, role: str = "operator"):
    name, password = USERS[role]
    return pywbem.WBEMConnection(handle.url, (name, password), default_namespace=NS,
                                 ca_certs=str(handle.config.cert_file), timeout=30)


@pytest.fixture
def op(engine_server):
    return connect(engine_server[0])




def scenario_path(name: str):
    return pywbem.CIMInstanceName("EDIV_Scenario", {"CreationClassName": "EDIV_Scenario",
                                                    "Name": name}, namespace=NS)


def settings(spec: str, **extra) -> pywbem.CIMInstance:
    return pywbem.CIMInstance("EDIV_ScenarioSettingData",
                              properties={"ScenarioDefinition": spec, **extra})


def renamed(name: str) -> str:
    return SIMPLE6.replace("<simulation_name>simple6<", f"<simulation_name>{name}<")


def define(op, service, spec: str, **extra):
    return op.InvokeMethod("DefineSystem", service, [("SystemSettings", settings(spec, **extra))])


def deployed_rows(store, name: str) -> None:
    """What the controller records for a deployed simple6 (without the hosts)."""
    store.create_scenario(name, renamed(name), basedir="/nonexistent", algorithm="RoundRobin",
                          state=st.DEPLOYING)
    placement = {"h1": "alpha", "h2": "beta", "r1": "gamma", "r2": "alpha", "h3": "beta",
                 "h4": "gamma"}
    store.set_vms(name, [(vm, host, "container", "running") for vm, host in placement.items()])
    store.allocate_segments(name, "vxlan", 1000, 1999, [("Net0", ["alpha", "beta", "gamma"])])
    store.set_scenario_state(name, st.DEPLOYED)
    store.unlock(name)


def error_of(call) -> pywbem.CIMError:
    with pytest.raises(pywbem.CIMError) as info:
        call()
    return info.value


# ---------------------------------------------------------------- instances from the store

def test_deployed_rows_are_served_with_states_and_associations(op, store):
    deployed_rows(store, "lab1")
    sc = op.GetInstance(scenario_path("lab1"))
    assert sc["EnabledState"] == 2 and sc["RequestedState"] == 2
    assert sc["NumberOfVirtualSystems"] == 6 and sc["NumberOfNetworks"] == 3
    assert sorted(sc["Hosts"]) == ["alpha", "beta", "gamma"]
    vm = pywbem.CIMInstanceName("EDIV_VirtualSystem", {"CreationClassName": "EDIV_VirtualSystem",
                                                       "Name": "lab1/r1"}, namespace=NS)
    inst = op.GetInstance(vm)
    assert inst["HostName"] == "gamma" and inst["EnabledState"] == 2
    (host,) = op.AssociatorNames(vm, AssocClass="EDIV_HostedDependency")
    assert host.keybindings["Name"] == "gamma"
    assert op.GetInstance(host)["NumberOfVirtualSystems"] >= 2
    parts = op.AssociatorNames(scenario_path("lab1"), AssocClass="EDIV_SystemComponent")
    assert sorted(p.classname for p in parts).count("EDIV_VirtualSystem") == 6
    assert sorted(p.classname for p in parts).count("EDIV_VirtualNetwork") == 3
    nets = {n["ElementName"]: n for n in op.EnumerateInstances("EDIV_VirtualNetwork")
            if n["ScenarioName"] == "lab1"}
    assert nets["Net0"]["SegmentKind"] == "vxlan" and nets["Net0"]["SegmentID"] == 1000
    assert nets["Link"]["SegmentKind"] == "none" and nets["Link"].get("SegmentID") is None
    (ssd,) = op.Associators(scenario_path("lab1"), AssocClass="EDIV_SettingsDefineState")
    assert ssd["ScenarioDefinition"] == renamed("lab1")
    (vssd,) = op.Associators(vm, AssocClass="EDIV_ElementSettingData")
    assert vssd["VirtualSystemIdentifier"] == "r1"
    rasds = op.Associators(vssd.path, AssocClass="EDIV_VirtualSystemSettingDataComponent")
    ports = sorted((r["InterfaceIndex"], r["Connection"], r["IPAddresses"]) for r in rasds
                   if r.classname == "EDIV_EthernetPortAllocationSettingData")
    assert ports == [(1, ["Net0"], ["198.18.1.1/24"]), (2, ["Link"], ["198.18.3.1/30"])]
    (mem,) = [r for r in rasds if r.classname == "EDIV_MemoryRASD"]
    assert mem["AllocationUnits"] == "byte*2^20" and mem["VirtualQuantity"] > 0


def test_profiles_central_instances_resolve(engine_server, op, store):
    deployed_rows(store, "lab2")
    interop = connect(engine_server[0], "reader")
    for ectp in interop.EnumerateInstances("EDIV_ElementConformsToProfile", namespace="interop"):
        element = ectp["ManagedElement"]
        if element.namespace == NS:
            assert op.GetInstance(element).path.classname == element.classname
    server = pywbem.WBEMServer(interop)
    (vs,) = server.get_selected_profiles("DMTF", "Virtual System")
    central = server.get_central_instances(vs.path, "EDIV_VirtualSystem", NS)
    assert {p.keybindings["Name"] for p in central} >= {f"lab2/{v}" for v in
                                                        ("h1", "h2", "h3", "h4", "r1", "r2")}


def test_service_capabilities_and_hosts(op, service):
    caps = op.Associators(service, AssocClass="EDIV_ElementCapabilities")
    assert [c["VirtualSystemTypesSupported"] for c in caps] == [
        ["ediv-scenario", "uml", "container"]]
    hosts = op.AssociatorNames(service, AssocClass="EDIV_HostedService")
    assert sorted(h.keybindings["Name"] for h in hosts) == ["alpha", "beta", "gamma"]


# ---------------------------------------------------------------- jobs

def test_orphaned_job_failed_at_start(engine_server, store):
    job = store.job(engine_server[2])
    assert job["state"] == "failed" and "interrupted" in job["error"]


def test_jobs_map_onto_concrete_job_and_errors(op, store):
    running = store.start_job("deploy", None)
    store.job_progress(running, 40, "host alpha uploading")
    failed = store.start_job("exec", None)
    store.finish_job(failed, False, error="host beta: connection refused")
    job = pywbem.CIMInstanceName("EDIV_ConcreteJob", {"InstanceID": f"ediv:job:{running}"},
                                 namespace=NS)
    inst = op.GetInstance(job)
    assert inst["JobState"] == 4 and inst["PercentComplete"] == 40
    assert inst["JobStatus"] == "running: host alpha uploading"
    bad = job.copy()
    bad.keybindings["InstanceID"] = f"ediv:job:{failed}"
    inst = op.GetInstance(bad)
    assert inst["JobState"] == 10 and inst["ErrorDescription"] == "host beta: connection refused"
    rv, out = op.InvokeMethod("GetErrors", bad)
    assert rv == 0 and len(out["Errors"]) == 1
    err = out["Errors"][0]
    assert err.classname == "CIM_Error" and err["Message"] == "host beta: connection refused"
    rv, out = op.InvokeMethod("GetError", bad)
    assert rv == 0 and out["Error"]["CIMStatusCode"] == 1
    rv, out = op.InvokeMethod("GetErrors", job)
    assert rv == 0 and out["Errors"] == []


# ---------------------------------------------------------------- DefineSystem and friends

def test_define_scenario_then_add_and_remove_a_vm(op, service, store):
    rv, out = define(op, service, renamed("def1"), PartitionAlgorithm="MinCut")
    assert rv == 0
    path = out["ResultingSystem"]
    assert path.classname == "EDIV_Scenario" and path.keybindings["Name"] == "def1"
    row = store.scenario("def1")
    assert row.state == st.DEFINED and row.algorithm == "MinCut" and row.lock_owner is None
    assert op.GetInstance(path)["EnabledState"] == 3
    vms = [v for v in op.EnumerateInstances("EDIV_VirtualSystem") if v["ScenarioName"] == "def1"]
    assert len(vms) == 6 and {v["EnabledState"] for v in vms} == {3}

    # a VM from VSSD + RASDs, as MOF text (pywbemcli/wbemcli) and as CIM-XML (pywbem)
    vssd = ('instance of EDIV_VirtualSystemSettingData { VirtualSystemIdentifier = "h5"; '
            'VirtualSystemType = "container"; };')
    mem = ('instance of EDIV_MemoryRASD { ResourceType = 4; VirtualQuantity = 1; '
           'AllocationUnits = "byte*2^30"; };')
    eth = pywbem.CIMInstance("EDIV_EthernetPortAllocationSettingData", properties={
        "ResourceType": pywbem.Uint16(10), "Connection": ["Net1"],
        "Address": "02:00:00:00:00:55", "IPAddresses": ["198.18.2.55/24"]})
    ref = pywbem.CIMInstanceName("EDIV_ScenarioSettingData", {"InstanceID": "ediv:scenario:def1"},
                                 namespace=NS)
    rv, out = op.InvokeMethod("DefineSystem", service, [
        ("SystemSettings", vssd), ("ResourceSettings", [mem, eth.tocimxmlstr()]),
        ("ReferenceConfiguration", ref)])
    assert rv == 0 and out["ResultingSystem"].keybindings["Name"] == "def1/h5"
    spec = store.scenario("def1").spec
    assert '<vm name="h5"' in spec and "198.18.2.55/24" in spec and "1024M" in spec
    vm = op.GetInstance(out["ResultingSystem"])
    assert vm["VirtualSystemType"] == "container" and vm["EnabledState"] == 3

    # the same name twice is refused; so is a VM on an undeclared net
    err = error_of(lambda: op.InvokeMethod("DefineSystem", service, [
        ("SystemSettings", vssd), ("ReferenceConfiguration", ref)]))
    assert err.status_code == pywbem.CIM_ERR_ALREADY_EXISTS
    eth["Connection"] = ["NoSuchNet"]
    err = error_of(lambda: op.InvokeMethod("DefineSystem", service, [
        ("SystemSettings", vssd.replace("h5", "h6")), ("ResourceSettings", [eth]),
        ("ReferenceConfiguration", ref)]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "NoSuchNet" in err.status_description

    rv, _ = op.InvokeMethod("DestroySystem", service, [("AffectedSystem", vm.path)])
    assert rv == 0 and '<vm name="h5"' not in store.scenario("def1").spec
    err = error_of(lambda: define(op, service, renamed("def1")))
    assert err.status_code == pywbem.CIM_ERR_ALREADY_EXISTS
    rv, _ = op.InvokeMethod("DestroySystem", service, [("AffectedSystem", path)])
    assert rv == 0 and store.scenario("def1") is None


def _archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return base64.b64encode(buf.getvalue()).decode()


def test_archive_is_extracted_beside_the_definition(engine_server, op, service, store):
    files = {"conf/h1/etc/motd": b"hello\n", "scripts/run.sh": b"#!/bin/sh\n"}
    rv, _ = define(op, service, renamed("arc1"), Archive=_archive(files))
    assert rv == 0
    basedir = Path(store.scenario("arc1").basedir)
    assert basedir == Path(engine_server[0].config.data_dir) / "scenarios" / "arc1"
    assert (basedir / "conf/h1/etc/motd").read_bytes() == b"hello\n"


@pytest.mark.parametrize(("members", "links", "message"), [
    ({"../evil": b"x"}, None, "leaves the archive's directory"),
    ({"/etc/evil": b"x"}, None, "absolute name"),
    ({"a": b"x"}, {"link": "/etc/passwd"}, "is a link"),
    ({".ediv-definition.xml": b"x"}, None, "reserved"),
])
def test_unsafe_archives_are_refused(engine_server, op, service, store, members, links,
                                     message):
    err = error_of(lambda: define(op, service, renamed("arc2"),
                                  Archive=_archive(members, links)))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert message in err.status_description
    assert store.scenario("arc2") is None
    data = Path(engine_server[0].config.data_dir)
    assert not (data / "scenarios" / "arc2").exists()
    assert not list((data / "staging").glob("*"))


def test_plan_scenario_is_a_dry_run(op, service, store):
    rv, out = op.InvokeMethod("PlanScenario", service, [
        ("SystemSettings", settings(renamed("plan1"))),
        ("HostLoads", ["alpha=0.5"])])
    assert rv == 0
    plan = json.loads(out["Plan"])
    assert set(plan["allocation"]) == {"h1", "h2", "r1", "r2", "h3", "h4"}
    assert set(plan["allocation"].values()) <= {"alpha", "beta", "gamma"}
    assert plan["loads"]["alpha"] == 0.5
    assert store.scenario("plan1") is None
    err = error_of(lambda: op.InvokeMethod("PlanScenario", service, [
        ("SystemSettings", settings(renamed("plan1"))), ("HostLoads", ["alpha"])]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER and "HostLoads" in \
        err.status_description


def test_state_changes_that_cannot_happen(op, service, store):
    deployed_rows(store, "lab3")
    define(op, service, renamed("def3"))
    rv, _ = op.InvokeMethod("RequestStateChange", scenario_path("def3"),
                            [("RequestedState", pywbem.Uint16(4))])
    assert rv == 4097
    rv, _ = op.InvokeMethod("RequestStateChange", scenario_path("def3"),
                            [("RequestedState", pywbem.Uint16(3))])
    assert rv == 0  # already defined: nothing to do
    rv, _ = op.InvokeMethod("RequestStateChange", scenario_path("lab3"),
                            [("RequestedState", pywbem.Uint16(2))])
    assert rv == 0  # already deployed
    rv, _ = op.InvokeMethod("ExecuteSequence", service, [
        ("AffectedSystem", scenario_path("def3")), ("Sequence", "check")])
    assert rv == 5  # not deployed
    err = error_of(lambda: op.InvokeMethod("ExecuteSequence", service, [
        ("AffectedSystem", scenario_path("lab3")), ("Sequence", "nosuchseq")]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER and "check" in \
        err.status_description
    err = error_of(lambda: op.InvokeMethod("ExecuteSequence", service, [
        ("AffectedSystem", scenario_path("lab3")), ("Sequence", "a;rm -rf /")]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    err = error_of(lambda: op.InvokeMethod("ExecuteSequence", service, [
        ("AffectedSystem", scenario_path("lab3")), ("Sequence", "check"),
        ("VirtualSystems", ["h1", "nope"])]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER and "nope" in \
        err.status_description

    def vm_change(vm: str, state: int) -> int:
        path = pywbem.CIMInstanceName("EDIV_VirtualSystem", {
            "CreationClassName": "EDIV_VirtualSystem", "Name": vm}, namespace=NS)
        return op.InvokeMethod("RequestStateChange", path,
                               [("RequestedState", pywbem.Uint16(state))])[0]

    assert vm_change("lab3/h1", 2) == 0  # already running: no job, no host contacted
    assert vm_change("lab3/h1", 6) == 4097  # offline is not a state a VM offers
    assert vm_change("def3/h1", 2) == 5  # its scenario is not deployed
    store.set_vm_state("lab3", "h2", "stopped")
    assert vm_change("lab3/h2", 3) == 0
    assert vm_change("lab3/h2", 4) == 0  # shut down already
    assert vm_change("lab3/h2", 10) == 5 and vm_change("lab3/h2", 11) == 5
    assert vm_change("lab3/h2", 9) == 5  # a stopped VM cannot be paused
    store.set_vm_state("lab3", "h2", "paused")
    assert vm_change("lab3/h2", 9) == 0  # paused already
    err = error_of(lambda: vm_change("lab3/nope", 2))
    assert err.status_code == pywbem.CIM_ERR_NOT_FOUND
    err = error_of(lambda: op.InvokeMethod("RequestStateChange", scenario_path("nope"),
                                           [("RequestedState", pywbem.Uint16(2))]))
    assert err.status_code == pywbem.CIM_ERR_NOT_FOUND


# ---------------------------------------------------------------- security

def test_reader_cannot_define(engine_server, service, store):
    reader = connect(engine_server[0], "reader")
    err = error_of(lambda: define(reader, service, renamed("sec1")))
    assert err.status_code == pywbem.CIM_ERR_ACCESS_DENIED
    assert store.scenario("sec1") is None


@pytest.mark.parametrize(("value", "message"), [
    ("<INSTANCE CLASSNAME='EDIV_ScenarioSettingData'>", "not well-formed XML"),
    ("<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><INSTANCE CLASSNAME='X'>&e;"
     "</INSTANCE>", "SystemSettings"),
    ("instance of EDIV_ScenarioSettingData { Bogus = 1; };", "not declared"),
    ("instance of EDIV_ScenarioSettingData { ScenarioDefinition = 42; };", "malformed XML"),
    ("instance of EDIV_ScenarioSettingData { ScenarioDefinition = ; };", "not a valid MOF"),
    ("instance of EDIV_HostSystem { Name = \"x\"; };", "must be an instance of"),
    ("just text", "CIM-XML"),
])
def test_malformed_embedded_instance_is_invalid_parameter(op, service, value, message):
    err = error_of(lambda: op.InvokeMethod("DefineSystem", service,
                                           [("SystemSettings", value)]))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert message in err.status_description


def test_scenario_errors_come_back_as_vnuml_diagnostics(op, service, store):
    broken = renamed("bad1").replace('net="Net1"', 'net="Net9"', 1)
    err = error_of(lambda: define(op, service, broken))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "Net9" in text)
    assert f"ScenarioDefinition:{line}:" in err.status_description
    assert "Net9" in err.status_description
    assert store.scenario("bad1") is None
    err = error_of(lambda: define(op, service, "<vnuml><global>"))
    assert err.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "ScenarioDefinition:1:" in err.status_description


# ---------------------------------------------------------------- the ediv CLI with --server

def ediv(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}
    proc = subprocess.run([sys.executable, "-m", "ediv.client.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def profile(engine_server, tmp_path) -> Path:
    handle = engine_server[0]
    name, password = USERS["reader"]
    (tmp_path / "pw").write_text(password + "\n")
    path = tmp_path / "profile.toml"
    path.write_text(f'server = "{handle.url}"\nuser = "{name}"\npassword_file = "pw"\n'
                    f'ca_cert = "{handle.config.cert_file}"\n')
    return path


def test_cli_reads_give_direct_mode_json(engine_server, store, profile):
    deployed_rows(store, "cli1")
    state = str(engine_server[0].config.state_path)
    for args in (["status", "cli1", "--json"], ["locate", "-s", "cli1", "--json"],
                 ["segments", "cli1", "--json"]):
        direct = json.loads(ediv(*args, "--state", state).stdout)
        served = json.loads(ediv(*args, "--profile", str(profile)).stdout)
        assert served == direct, args
    assert json.loads(ediv("status", "cli1", "--json", "--profile", str(profile)).stdout)[
        "state"] == "deployed"
    text = ediv("status", "--profile", str(profile)).stdout
    assert "cli1: deployed, 6 VMs on 3 hosts, 1 segments" in text


def test_cli_server_errors_are_messages(engine_server, profile, tmp_path):
    handle = engine_server[0]
    proc = ediv("status", "nope", "--profile", str(profile), check=False)
    assert proc.returncode == 1 and "no scenario named 'nope'" in proc.stderr
    (tmp_path / "bad").write_text("wrong\n")
    proc = ediv("status", "--server", handle.url, "--user", "rita", "--password-file",
                str(tmp_path / "bad"), "--ca-cert", str(handle.config.cert_file), check=False)
    assert proc.returncode == 1 and "authentication failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = ediv("deploy", str(REPO / "examples" / "simple6.xml"), "--profile", str(profile),
                check=False)
    assert proc.returncode == 1 and "needs role operator" in proc.stderr
    proc = ediv("console", "cli1", "h1", "--profile", str(profile), check=False)
    assert proc.returncode == 1 and "not available with --server" in proc.stderr
