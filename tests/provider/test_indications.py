"""Lifecycle indications to a real pywbem WBEMListener on 127.0.0.1, subscribed with pywbem's
WBEMSubscriptionManager (CreateInstance of filter, destination and subscription in interop)."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import time

import pytest
from wbem_support import USERS

from ediv import state as st
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.indications import parse_query
from ediv.provider.server import serve

pywbem = pytest.importorskip("pywbem")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SPEC = """<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>
<vm_mgmt type="none"/></global><net name="n" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="n"/></vm></vnuml>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(cfg):
    """A server with the engine plugin on ``cfg`` (its state store), stopped on the way out."""
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    plugin = EnginePlugin()
    handle = serve(cfg, plugins=[plugin])
    plugin.indications.interval = 0.1
    try:
        yield handle, plugin
    finally:
        handle.stop()
        plugin.stop()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("ind")
    cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
    cfg.schema_cache_dir = base / "cache"
    cfg.indication_listeners = ["127.0.0.1"]  # the tests' listeners (default: none)
    for role, (name, password) in USERS.items():
        add_user(cfg.users_file, name, Role.parse(role), password)
    with running(cfg) as pair:
        yield pair


@pytest.fixture
def listener():
    received: queue.Queue = queue.Queue()
    port = free_port()
    lis = pywbem.WBEMListener("127.0.0.1", http_port=port, https_port=None)
    lis.add_callback(lambda ind, _host: received.put(ind))
    lis.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        lis.stop()


def connect(handle, role="operator"):
    name, password = USERS[role]
    return pywbem.WBEMConnection(handle.url, (name, password), default_namespace="root/ediv",
                                 ca_certs=str(handle.config.cert_file), timeout=30)


def wait_for(received: queue.Queue, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            ind = received.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(ind)
        if predicate(ind):
            return ind
    raise AssertionError(f"no matching indication; got {[i.classname for i in seen]}")


def test_scenario_and_job_lifecycle_indications(server, listener):
    handle, plugin = server
    url, received = listener
    conn = connect(handle)
    wbem = pywbem.WBEMServer(conn)
    mgr = pywbem.WBEMSubscriptionManager("ediv-test")
    server_id = mgr.add_server(wbem)
    try:
        mgr.add_destination(server_id, url, owned=True, destination_id="d1")
        dest = mgr.get_owned_destinations(server_id)[0]
        mod = mgr.add_filter(server_id, "root/ediv", "SELECT * FROM CIM_InstModification "
                             "WHERE SourceInstance ISA EDIV_Scenario", owned=True,
                             filter_id="mod")
        new_jobs = mgr.add_filter(server_id, "root/ediv", "SELECT * FROM CIM_InstCreation "
                                  "WHERE SourceInstance ISA EDIV_ConcreteJob", owned=True,
                                  filter_id="jobs")
        mgr.add_subscriptions(server_id, mod.path, [dest.path], owned=True)
        mgr.add_subscriptions(server_id, new_jobs.path, [dest.path], owned=True)
        assert len(conn.EnumerateInstances("CIM_IndicationSubscription",
                                           namespace="interop")) == 2
        time.sleep(0.5)  # the watcher takes its first snapshot

        service = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")[0]
        ssd = pywbem.CIMInstance("EDIV_ScenarioSettingData",
                                 properties={"ScenarioDefinition": SPEC.format(name="ind1")})
        conn.InvokeMethod("DefineSystem", service, [("SystemSettings", ssd)])
        time.sleep(0.5)  # changes between two looks at the store are one creation
        store = plugin.engine.store()
        store.set_scenario_state("ind1", st.FAILED, "host x unreachable")
        ind = wait_for(received, lambda i: i.classname == "CIM_InstModification")
        assert ind["SourceInstance"]["Name"] == "ind1"
        assert ind["SourceInstance"]["EnabledState"] == 6
        assert ind["PreviousInstance"]["EnabledState"] == 3
        assert "EnabledState" in ind["ChangedPropertyNames"]
        assert ind["IndicationFilterName"] == mod["Name"]

        job = store.start_job("deploy", "ind1")
        ind = wait_for(received, lambda i: i.classname == "CIM_InstCreation")
        assert ind["SourceInstance"].classname == "EDIV_ConcreteJob"
        assert ind["SourceInstance"]["InstanceID"] == f"ediv:job:{job}"
        # the creation of the scenario was not subscribed to: only those two arrived
        assert received.empty() or all(
            i.classname != "CIM_InstCreation" or
            i["SourceInstance"].classname == "EDIV_ConcreteJob" for i in list(received.queue))
    finally:
        mgr.remove_server(server_id)
    assert conn.EnumerateInstances("CIM_IndicationSubscription", namespace="interop") == []


def test_subscription_objects_are_checked(server):
    handle, _plugin = server
    conn = connect(handle)
    reader = connect(handle, "reader")
    flt = pywbem.CIMInstance("CIM_IndicationFilter", properties={
        "Name": "f", "Query": "SELECT * FROM CIM_InstCreation", "QueryLanguage": "WQL"})
    with pytest.raises(pywbem.CIMError) as err:
        reader.CreateInstance(flt, namespace="interop")
    assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
    bad = flt.copy()
    bad["Query"] = "SELECT Name FROM CIM_InstCreation WHERE 1=1"
    with pytest.raises(pywbem.CIMError) as err:
        conn.CreateInstance(bad, namespace="interop")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_QUERY
    bad["QueryLanguage"] = "XPath"
    with pytest.raises(pywbem.CIMError) as err:
        conn.CreateInstance(bad, namespace="interop")
    assert err.value.status_code == pywbem.CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED
    dest = pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", properties={
        "Name": "d", "Destination": "file:///etc/passwd"})
    with pytest.raises(pywbem.CIMError) as err:
        conn.CreateInstance(dest, namespace="interop")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    fpath = conn.CreateInstance(flt, namespace="interop")
    dest["Destination"] = "http://127.0.0.1:9"
    dpath = conn.CreateInstance(dest, namespace="interop")
    sub = pywbem.CIMInstance("CIM_IndicationSubscription",
                             properties={"Filter": fpath, "Handler": dpath})
    spath = conn.CreateInstance(sub, namespace="interop")
    with pytest.raises(pywbem.CIMError) as err:
        conn.DeleteInstance(fpath)  # still subscribed
    assert err.value.status_code == pywbem.CIM_ERR_FAILED
    for path in (spath, fpath, dpath):
        conn.DeleteInstance(path)
    assert conn.EnumerateInstances("CIM_IndicationFilter", namespace="interop") == []


def test_query_subset(server):
    schema = server[0].dispatcher.schema
    q = parse_query("select * from CIM_InstModification where SourceInstance isa "
                    "EDIV_VirtualSystem", "DMTF:CQL", schema)
    assert (q.indication, q.isa) == ("CIM_InstModification", "EDIV_VirtualSystem")
    assert parse_query("SELECT * FROM CIM_InstIndication", "WQL", schema).isa is None
    with pytest.raises(pywbem.CIMError):
        parse_query("SELECT * FROM CIM_AlertIndication", "WQL", schema)
    with pytest.raises(pywbem.CIMError):
        parse_query("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Nope", "WQL",
                    schema)


# ---------------------------------------------------------------- kept in the state store

@pytest.fixture
def config(tmp_path):
    cfg = load_config(tmp_path / "server.toml", listen="127.0.0.1:0", state=tmp_path / "state.db")
    cfg.schema_cache_dir = tmp_path / "cache"
    cfg.indication_listeners = ["127.0.0.1"]
    for role, (name, password) in USERS.items():
        add_user(cfg.users_file, name, Role.parse(role), password)
    return cfg


def kept(cfg) -> list[str]:
    """The subscription objects in the state store, by kind (a connection of the test's own)."""
    store = st.StateStore(cfg.state_path)
    try:
        return sorted(r["kind"] for r in store.subscriptions())
    finally:
        store.close()


def interop_paths(conn) -> dict[str, list]:
    out = {}
    for cls in ("CIM_IndicationFilter", "CIM_ListenerDestinationCIMXML",
                "CIM_IndicationSubscription"):
        out[cls] = sorted(str(_bare(i.path)) for i in conn.EnumerateInstances(
            cls, namespace="interop"))
    return out


def _bare(path):
    path = path.copy()
    path.host = None
    return path


def test_subscriptions_survive_a_restart(config, listener):
    url, received = listener
    with running(config) as (handle, _plugin):
        conn = connect(handle)
        flt = conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationFilter", properties={
            "Name": "keep", "QueryLanguage": "DMTF:CQL",
            "Query": "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA EDIV_Scenario"}),
            namespace="interop")
        dest = conn.CreateInstance(pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", properties={
            "Name": "keep", "Destination": url}), namespace="interop")
        conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationSubscription", properties={
            "Filter": flt, "Handler": dest}), namespace="interop")
        before = interop_paths(conn)
        assert kept(config) == sorted(before)
    with running(config) as (handle, plugin):
        conn = connect(handle)
        assert interop_paths(conn) == before
        [got] = conn.EnumerateInstances("CIM_IndicationFilter", namespace="interop")
        assert got["Query"].endswith("ISA EDIV_Scenario") and got["QueryLanguage"] == "DMTF:CQL"
        [got] = conn.EnumerateInstances("CIM_ListenerDestinationCIMXML", namespace="interop")
        assert got["Destination"] == url and got["PersistenceType"] == 2
        [sub] = conn.EnumerateInstances("CIM_IndicationSubscription", namespace="interop")
        assert sub["SubscriptionState"] == 2
        # the server looked at the store when it started: this change is indicated
        plugin.engine.store().create_scenario("kept1", SPEC.format(name="kept1"), basedir=".",
                                              algorithm=None)
        ind = wait_for(received, lambda i: i.classname == "CIM_InstCreation")
        assert ind["SourceInstance"]["Name"] == "kept1"
        assert ind["IndicationFilterName"] == "keep"
        with pytest.raises(pywbem.CIMError) as err:
            conn.DeleteInstance(dest)  # still subscribed
        assert err.value.status_code == pywbem.CIM_ERR_FAILED
        assert len(kept(config)) == 3
        conn.DeleteInstance(sub.path)
        assert kept(config) == ["CIM_IndicationFilter", "CIM_ListenerDestinationCIMXML"]
        conn.DeleteInstance(flt)
        conn.DeleteInstance(dest)
        assert kept(config) == []
    with running(config) as (handle, _plugin):
        assert all(not paths for paths in interop_paths(connect(handle)).values())


def test_unusable_kept_objects_are_skipped(config):
    store = st.StateStore(config.state_path)
    store.add_subscription("CIM_IndicationFilter", "bad", {
        "classname": "CIM_IndicationFilter", "properties": [
            {"name": "Name", "type": "string", "array": False, "value": "bad"},
            {"name": "Query", "type": "string", "array": False, "value": "SELECT Name FROM X"},
            {"name": "QueryLanguage", "type": "string", "array": False, "value": "WQL"}]})
    store.add_subscription("CIM_ListenerDestinationCIMXML", "garbage", {"no": "properties"})
    store.close()
    with running(config) as (handle, _plugin):
        conn = connect(handle)
        assert all(not paths for paths in interop_paths(conn).values())
        flt = pywbem.CIMInstance("CIM_IndicationFilter", properties={
            "Name": "bad", "Query": "SELECT * FROM CIM_InstDeletion", "QueryLanguage": "WQL"})
        conn.CreateInstance(flt, namespace="interop")
        assert len(interop_paths(conn)["CIM_IndicationFilter"]) == 1
    # the skipped rows stay (a later ediv may read them); they are only logged
    assert kept(config) == ["CIM_IndicationFilter"] * 2 + ["CIM_ListenerDestinationCIMXML"]


def test_virtual_system_lifecycle_from_store_changes(config, listener):
    """Only what changed is read again; creations, modifications and deletions of VMs still
    arrive as before (rows written by another connection, as the controller does)."""
    url, received = listener
    with running(config) as (handle, _plugin):
        conn = connect(handle)
        flt = conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationFilter", properties={
            "Name": "vms", "QueryLanguage": "WQL",
            "Query": "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA "
                     "EDIV_VirtualSystem"}), namespace="interop")
        dest = conn.CreateInstance(pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", properties={
            "Name": "vms", "Destination": url}), namespace="interop")
        conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationSubscription", properties={
            "Filter": flt, "Handler": dest}), namespace="interop")
        controller = st.StateStore(config.state_path)
        try:
            controller.create_scenario("vms1", SPEC.format(name="vms1"), basedir=".",
                                       algorithm=None, state=st.DEPLOYING)
            ind = wait_for(received, lambda i: i.classname == "CIM_InstCreation")
            assert ind["SourceInstance"]["Name"] == "vms1/a"  # from the spec while deploying
            assert ind["SourceInstance"]["EnabledState"] == 3
            controller.set_vms("vms1", [("a", "h1", "container", "running")])
            ind = wait_for(received, lambda i: i.classname == "CIM_InstModification")
            assert ind["SourceInstance"]["HostName"] == "h1"
            assert {"EnabledState", "HostName"} <= set(ind["ChangedPropertyNames"])
            controller.set_vm_states("vms1", "h1", "stopped")
            ind = wait_for(received, lambda i: i.classname == "CIM_InstModification")
            assert ind["PreviousInstance"]["EnabledState"] == 2
            assert ind["SourceInstance"]["EnabledState"] == 3
            controller.delete_scenario("vms1")
            ind = wait_for(received, lambda i: i.classname == "CIM_InstDeletion")
            assert ind["SourceInstance"]["Name"] == "vms1/a"
        finally:
            controller.close()
