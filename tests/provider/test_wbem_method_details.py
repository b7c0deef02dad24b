"""DSP1042/DSP1052 details over the engine server: method targets, RequestStateChange
parameters, jobs (owner, affected element, GetError), capabilities, the management system,
filter namespaces, health, and pywbemcli's shrub."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from test_engine_wbem import (
    NS,
    connect,
    define,
    deployed_rows,
    error_of,
    renamed,
    scenario_path,
    settings,
)
from wbem_support import USERS

from ediv import state as st
from ediv.cluster import Host

pywbem = pytest.importorskip("pywbem")


@pytest.fixture
def op(engine_server):
    return connect(engine_server[0])


def vm_path(key: str):
    return pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": key}, namespace=NS)


def test_methods_on_a_service_that_does_not_exist(op, service, store):
    bogus = service.copy()
    bogus.keybindings["Name"] = "bogus"
    err = error_of(lambda: op.InvokeMethod("PlanScenario", bogus, [
        ("SystemSettings", settings(renamed("ghost1")))]))
    assert err.status_code == pywbem.CIM_ERR_NOT_FOUND
    wrong = service.copy()
    wrong.keybindings["SystemName"] = "not-this-server"
    err = error_of(lambda: define(op, wrong, renamed("ghost2")))
    assert err.status_code == pywbem.CIM_ERR_NOT_FOUND
    assert store.scenario("ghost2") is None
    rv, _ = define(op, service, renamed("real1"))  # the real one still works
    assert rv == 0 and store.scenario("real1") is not None


def test_the_system_the_service_names_exists(engine_server, op, service):
    system = pywbem.CIMInstanceName("CIM_ComputerSystem", {
        "CreationClassName": service.keybindings["SystemCreationClassName"],
        "Name": service.keybindings["SystemName"]}, namespace=NS)
    assert op.GetInstance(system)["Name"] == service.keybindings["SystemName"]
    interop = connect(engine_server[0], "reader")
    (om,) = interop.EnumerateInstances("CIM_ObjectManager", namespace="interop")
    system = pywbem.CIMInstanceName("CIM_ComputerSystem", {
        "CreationClassName": om["SystemCreationClassName"], "Name": om["SystemName"]},
        namespace="interop")
    assert interop.GetInstance(system)["HealthState"] == 5


def test_request_state_change_timeout_and_values(op, store):
    deployed_rows(store, "rsc1")
    zero = pywbem.CIMDateTime(timedelta(0))

    def change(path, state, timeout=None):
        params = [("RequestedState", pywbem.Uint16(state))]
        if timeout is not None:
            params.append(("TimeoutPeriod", timeout))
        return op.InvokeMethod("RequestStateChange", path, params)[0]

    # TimeoutPeriod 0 asks for nothing: the scenario is deployed already
    assert change(scenario_path("rsc1"), 2, zero) == 0
    assert change(scenario_path("rsc1"), 2, pywbem.CIMDateTime(timedelta(seconds=30))) == 4098
    assert change(vm_path("rsc1/h1"), 2, zero) == 0
    # outside the method's ValueMap: Invalid Parameter, not an invalid transition
    assert change(scenario_path("rsc1"), 99) == 5
    assert change(vm_path("rsc1/h1"), 99) == 5
    assert change(vm_path("rsc1/h1"), 6) == 4097  # a valid value this VM does not offer


def test_per_vm_job_owner_element_and_get_error(engine_server, op, store):
    handle, plugin, _orphan = engine_server
    deployed_rows(store, "job1")
    rv, out = op.InvokeMethod("RequestStateChange", vm_path("job1/h2"),
                              [("RequestedState", pywbem.Uint16(3))])
    assert rv == 4096
    job = out["Job"]
    plugin.jobs.wait(pywbem_job_id(job), 60)  # fails: the hosts do not exist here
    inst = op.GetInstance(job)
    assert inst["Owner"] == USERS["operator"][0]
    (affected,) = op.AssociatorNames(job, AssocClass="EDIV_AffectedJobElement")
    assert affected.classname == "EDIV_VirtualSystem"
    assert affected.keybindings["Name"] == "job1/h2"
    reader = connect(handle, "reader")
    rv, out = reader.InvokeMethod("GetError", job)
    assert rv == 0 and out["Error"] is not None
    rv, out = reader.InvokeMethod("GetErrors", job)
    assert rv == 0 and len(out["Errors"]) == 1
    err = error_of(lambda: reader.InvokeMethod("KillJob", job))
    assert err.status_code == pywbem.CIM_ERR_ACCESS_DENIED


def pywbem_job_id(path) -> int:
    return int(str(path.keybindings["InstanceID"]).rpartition(":")[2])


def test_capabilities_list_the_asynchronous_destroy(engine_server, op, service, store):
    (caps,) = op.Associators(service, AssocClass="EDIV_ElementCapabilities")
    assert 3 in caps["AsynchronousMethodsSupported"]  # DestroySystem
    deployed_rows(store, "async1")
    rv, out = op.InvokeMethod("DestroySystem", service, [
        ("AffectedSystem", scenario_path("async1"))])
    assert rv == 4096
    engine_server[1].jobs.wait(pywbem_job_id(out["Job"]), 60)


def test_filter_with_a_namespace_not_served_is_refused(engine_server):
    conn = connect(engine_server[0], "admin")
    mgr = pywbem.WBEMSubscriptionManager("details")
    try:
        server_id = mgr.add_server(pywbem.WBEMServer(conn))
        with pytest.raises(pywbem.CIMError) as info:
            mgr.add_filter(server_id, "root/cimv2", "SELECT * FROM CIM_InstCreation",
                           owned=True, filter_id="wrongns")
        assert info.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert "root/ediv" in info.value.status_description
        flt = mgr.add_filter(server_id, "root/ediv", "SELECT * FROM CIM_InstCreation",
                             owned=True, filter_id="rightns")
        assert flt.path is not None
    finally:
        mgr.remove_all_servers()


def test_health_of_hosts_and_vms(op, store):
    deployed_rows(store, "health1")
    assert op.GetInstance(vm_path("health1/h1"))["HealthState"] == 5
    assert op.GetInstance(vm_path("health1/h1"))["OperationalStatus"] == [2]
    store.set_vm_state("health1", "h2", "stopped")
    assert op.GetInstance(vm_path("health1/h2"))["OperationalStatus"] == [10]
    store.set_vm_state("health1", "h3", "failed")
    inst = op.GetInstance(vm_path("health1/h3"))
    assert (inst["OperationalStatus"], inst["HealthState"]) == ([6], 20)
    store.record_probe(Host("alpha", mem=1024, address="198.18.0.31"), {"load": 0.1}, "up")
    store.record_probe(Host("beta", mem=1024, address="198.18.0.32"), None, "unreachable")
    hosts = {h["Name"]: h for h in op.EnumerateInstances("EDIV_HostSystem")}
    assert (hosts["alpha"]["OperationalStatus"], hosts["alpha"]["HealthState"]) == ([2], 5)
    assert (hosts["beta"]["OperationalStatus"], hosts["beta"]["HealthState"]) == ([13], 20)
    assert op.GetInstance(scenario_path("health1"))["HealthState"] == 5
    store.set_scenario_state("health1", st.FAILED, "half released")
    assert op.GetInstance(scenario_path("health1"))["HealthState"] == 20


def _pywbemcli(handle, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYWBEMCLI_SERVER")}
    env["HOME"] = str(tmp_path)
    name, password = USERS["reader"]
    cmd = [str(exe), "-s", handle.url, "-u", name, "-p", password,
           "--ca-certs", str(handle.config.cert_file), "-d", NS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)


@pytest.mark.parametrize("path", [
    'EDIV_VirtualSystem.CreationClassName="EDIV_VirtualSystem",Name="shrub1/h1"',
    'EDIV_Scenario.CreationClassName="EDIV_Scenario",Name="shrub1"',
    'EDIV_HostSystem.CreationClassName="EDIV_HostSystem",Name="alpha"',
])
def test_pywbemcli_shrub(engine_server, store, tmp_path, path):
    if store.scenario("shrub1") is None:
        deployed_rows(store, "shrub1")
    proc = _pywbemcli(engine_server[0], tmp_path, "instance", "shrub", path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "EDIV_" in proc.stdout
