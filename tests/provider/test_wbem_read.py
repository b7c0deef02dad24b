"""The read side through the real pywbem client over HTTPS."""

from __future__ import annotations

import pytest
import pywbem
from wbem_support import HOSTS, connect

from ediv.provider.schema import INTEROP_NAMESPACE

HOST1 = pywbem.CIMInstanceName(
    "EDIV_HostSystem", {"CreationClassName": "EDIV_HostSystem", "Name": "host1"})


def _status(exc_info) -> int:
    return exc_info.value.status_code


def test_wbemserver_discovers_interop_brand_and_profiles(conn):
    server = pywbem.WBEMServer(conn)
    assert server.interop_ns == INTEROP_NAMESPACE
    assert sorted(server.namespaces) == ["interop", "root/ediv"]
    assert server.brand == "ediv"
    assert server.version == "0.1.0"
    names = {(p["RegisteredOrganization"], p["RegisteredName"], p["RegisteredVersion"])
             for p in server.profiles}
    assert names == {
        (2, "Profile Registration", "1.0.0"), (2, "System Virtualization", "1.0.0"),
        (2, "Virtual System", "1.0.0"), (2, "Resource Allocation", "1.1.0"),
        (2, "Allocation Capabilities", "1.0.0"),
        (1, "EDIV Distributed Scenario", "1.0.0"),
    }
    own = server.get_selected_profiles(registered_org="Other",
                                       registered_name="EDIV Distributed Scenario")
    assert own[0]["OtherRegisteredOrganization"] == "ediv"


def test_central_instances_cross_namespace(conn):
    server = pywbem.WBEMServer(conn)
    [sysvirt] = server.get_selected_profiles("DMTF", "System Virtualization")
    paths = server.get_central_instances(sysvirt.path)
    assert sorted(p.keybindings["Name"] for p in paths) == ["host1", "host2"]
    assert {p.namespace for p in paths} == {"root/ediv"}
    [reg] = server.get_selected_profiles("DMTF", "Profile Registration")
    [om] = server.get_central_instances(reg.path)
    assert om.classname == "CIM_ObjectManager" and om.namespace == "interop"
    [ra] = server.get_selected_profiles("DMTF", "Resource Allocation")
    assert server.get_central_instances(ra.path) == []  # no engine here: no pools


def test_get_class_flags(conn):
    full = conn.GetClass("EDIV_HostSystem", LocalOnly=False, IncludeQualifiers=True,
                         IncludeClassOrigin=True)
    assert full.superclass == "CIM_ComputerSystem"
    assert full.properties["Name"].class_origin == "CIM_ManagedSystemElement" or \
        full.properties["Name"].class_origin.startswith("CIM_")
    assert full.properties["Name"].qualifiers["Key"].value is True
    assert full.properties["Address"].class_origin == "EDIV_HostSystem"
    local = conn.GetClass("EDIV_HostSystem")  # LocalOnly defaults to true
    assert "Address" in local.properties and "Name" not in local.properties
    bare = conn.GetClass("EDIV_HostSystem", LocalOnly=False, IncludeQualifiers=False)
    assert not bare.qualifiers and not bare.properties["Name"].qualifiers
    assert bare.properties["Name"].class_origin is None
    some = conn.GetClass("EDIV_HostSystem", LocalOnly=False, PropertyList=["Load", "name"])
    assert set(some.properties) == {"Load", "Name"}
    vsms = conn.GetClass("EDIV_VirtualSystemManagementService", LocalOnly=False)
    assert vsms.methods["ExecuteSequence"].parameters["Job"].reference_class == "CIM_ConcreteJob"


def test_enumerate_classes_and_names(conn):
    top = conn.EnumerateClassNames()
    assert "CIM_ManagedElement" in top and "CIM_ComputerSystem" not in top
    deep = conn.EnumerateClassNames(DeepInheritance=True)
    assert {"EDIV_HostSystem", "EDIV_Scenario", "EDIV_HostedDependency"} <= set(deep)
    assert "EDIV_RegisteredProfile" not in deep
    direct = conn.EnumerateClassNames(ClassName="CIM_ComputerSystem")
    assert set(direct) == {"EDIV_HostSystem", "EDIV_Scenario", "EDIV_VirtualSystem"}
    classes = conn.EnumerateClasses(ClassName="CIM_ComputerSystem", LocalOnly=True)
    assert all(not p.propagated for c in classes for p in c.properties.values())
    assert pywbem.WBEMConnection.__name__  # keeps the import honest for readers


def test_qualifiers(conn):
    key = conn.GetQualifier("Key")
    assert key.type == "boolean"
    names = {q.name for q in conn.EnumerateQualifiers()}
    assert {"Key", "Association", "EmbeddedInstance", "ValueMap", "Override"} <= names
    with pytest.raises(pywbem.CIMError) as exc:
        conn.GetQualifier("NoSuchQualifier")
    assert _status(exc) == pywbem.CIM_ERR_NOT_FOUND


def test_enumerate_and_get_host_instances(conn, wbem_server):
    insts = conn.EnumerateInstances("EDIV_HostSystem")
    by_name = {i["Name"]: i for i in insts}
    assert set(by_name) == {h.name for h in HOSTS}
    assert by_name["host1"]["MemoryMB"] == 4096 and by_name["host1"]["Address"] == "198.18.0.11"
    assert by_name["host2"]["VirtualSystemType"] == "container"
    # Caption is NULL: left out without a PropertyList, sent (without VALUE) when named
    assert "Caption" not in by_name["host1"] and by_name["host1"].get("Caption") is None
    named = conn.GetInstance(by_name["host1"].path, PropertyList=["Caption", "MemoryMB"])
    assert set(named.properties) == {"Caption", "MemoryMB"} and named["Caption"] is None
    pulled = {i["Name"]: i for i in conn.OpenEnumerateInstances(
        "EDIV_HostSystem", MaxObjectCount=100).instances}
    assert "Caption" not in pulled["host1"] and pulled["host1"]["Name"] == "host1"
    listed = conn.EnumerateInstances("EDIV_HostSystem", PropertyList=["Caption"])
    assert all(set(i.properties) == {"Caption"} and i["Caption"] is None for i in listed)
    # parent class with DeepInheritance=False: only CIM_ComputerSystem's properties
    # (the hosts and the management server itself, which the service's keys name)
    shallow = conn.EnumerateInstances("CIM_ComputerSystem", DeepInheritance=False)
    assert sorted(i.classname for i in shallow) == \
        ["CIM_ComputerSystem", "EDIV_HostSystem", "EDIV_HostSystem"]
    assert not any("Address" in i for i in shallow)
    deep = conn.EnumerateInstances("CIM_ComputerSystem")
    assert all("Address" in i for i in deep if i.classname == "EDIV_HostSystem")
    picked = conn.EnumerateInstances("EDIV_HostSystem", PropertyList=["Load"])
    assert set(picked[0].properties) == {"Load"}
    names = conn.EnumerateInstanceNames("CIM_System")
    assert sorted(n.keybindings["Name"] for n in names) == \
        sorted(["host1", "host2", wbem_server.dispatcher.host])
    got = conn.GetInstance(HOST1, PropertyList=["CPUWeight", "Nonexistent"])
    assert dict(got) == {"CPUWeight": 100}
    assert got.path.keybindings["Name"] == "host1"


def test_associators_and_references(conn):
    [profile] = conn.Associators(HOST1, AssocClass="CIM_ElementConformsToProfile")
    assert profile["RegisteredName"] == "System Virtualization"
    assert profile.path.namespace == "interop"
    [ref] = conn.References(HOST1, ResultClass="CIM_ElementConformsToProfile",
                            Role="ManagedElement")
    assert ref["ManagedElement"].keybindings["Name"] == "host1"
    assert conn.References(HOST1, Role="ConformantStandard") == []
    assert conn.AssociatorNames(HOST1, ResultClass="CIM_ManagedElement")[0].classname == \
        "EDIV_RegisteredProfile"
    assert conn.AssociatorNames(HOST1, ResultRole="ManagedElement") == []
    interop = connect_interop(conn)
    [om] = interop.EnumerateInstanceNames("CIM_ObjectManager")
    spaces = interop.Associators(om, AssocClass="CIM_NamespaceInManager")
    assert sorted(s["Name"] for s in spaces) == ["interop", "root/ediv"]


def connect_interop(conn):
    return pywbem.WBEMConnection(conn.url, conn.creds, default_namespace=INTEROP_NAMESPACE,
                                 ca_certs=conn.ca_certs, timeout=20)


def test_class_level_associations(conn):
    refs = conn.ReferenceNames(pywbem.CIMClassName("EDIV_VirtualSystem"))
    names = {p.classname for p in refs}
    assert {"EDIV_HostedDependency", "EDIV_SystemComponent", "CIM_HostedDependency"} <= names
    others = {p.classname for p in conn.AssociatorNames(
        pywbem.CIMClassName("EDIV_VirtualSystem"), AssocClass="EDIV_HostedDependency")}
    assert others == {"EDIV_HostSystem"}


def test_pull_operations_page_through(conn):
    interop = connect_interop(conn)
    result = interop.OpenEnumerateInstances("CIM_RegisteredProfile", MaxObjectCount=2)
    got = list(result.instances)
    assert not result.eos and len(got) == 2
    ctx = result.context
    while not result.eos:
        result = interop.PullInstancesWithPath(ctx, MaxObjectCount=2)
        got += result.instances
        ctx = result.context
    assert len(got) == 6 and all(i.path.namespace == "interop" for i in got)
    paths = interop.OpenEnumerateInstancePaths("CIM_RegisteredProfile", MaxObjectCount=1)
    assert len(paths.paths) == 1 and not paths.eos
    interop.CloseEnumeration(paths.context)
    with pytest.raises(pywbem.CIMError) as exc:
        interop.PullInstancePaths(paths.context, MaxObjectCount=1)
    assert _status(exc) == pywbem.CIM_ERR_INVALID_ENUMERATION_CONTEXT
    assoc = conn.OpenAssociatorInstances(HOST1, MaxObjectCount=10)
    assert assoc.eos and [i["RegisteredName"] for i in assoc.instances] == \
        ["System Virtualization"]
    refs = conn.OpenReferenceInstancePaths(HOST1, MaxObjectCount=10)
    assert refs.eos and refs.paths[0].classname == "EDIV_ElementConformsToProfile"
    # iterator API used by pywbemcli: pull operations end to end
    assert len(list(conn.IterEnumerateInstances("EDIV_HostSystem", MaxObjectCount=1))) == 2


def test_pull_rejects_filters_and_other_users_contexts(wbem_server, ca_file):
    reader = connect(wbem_server, "reader", ca_file, INTEROP_NAMESPACE)
    with pytest.raises(pywbem.CIMError) as exc:
        reader.OpenEnumerateInstances("CIM_RegisteredProfile", FilterQueryLanguage="DMTF:FQL",
                                      FilterQuery="RegisteredName = 'x'")
    assert _status(exc) == pywbem.CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED
    opened = reader.OpenEnumerateInstancePaths("CIM_RegisteredProfile", MaxObjectCount=1)
    other = connect(wbem_server, "admin", ca_file, INTEROP_NAMESPACE)
    with pytest.raises(pywbem.CIMError) as exc:
        other.PullInstancePaths(opened.context, MaxObjectCount=1)
    assert _status(exc) == pywbem.CIM_ERR_INVALID_ENUMERATION_CONTEXT
    rest = reader.PullInstancePaths(opened.context, MaxObjectCount=100)
    assert rest.eos and len(rest.paths) == 5


@pytest.mark.parametrize("call, code", [
    (lambda c: c.GetClass("EDIV_Nope"), pywbem.CIM_ERR_NOT_FOUND),
    (lambda c: c.EnumerateInstances("EDIV_Nope"), pywbem.CIM_ERR_INVALID_CLASS),
    (lambda c: c.EnumerateClassNames(ClassName="EDIV_Nope"), pywbem.CIM_ERR_INVALID_CLASS),
    (lambda c: c.EnumerateInstances("EDIV_HostSystem", namespace="root/nope"),
     pywbem.CIM_ERR_INVALID_NAMESPACE),
    (lambda c: c.GetInstance(pywbem.CIMInstanceName(
        "EDIV_HostSystem", {"CreationClassName": "EDIV_HostSystem", "Name": "ghost"})),
     pywbem.CIM_ERR_NOT_FOUND),
    (lambda c: c.GetInstance(pywbem.CIMInstanceName("EDIV_Nope", {"Name": "x"})),
     pywbem.CIM_ERR_INVALID_CLASS),
    (lambda c: c.Associators(HOST1, AssocClass="EDIV_Nope"), pywbem.CIM_ERR_INVALID_PARAMETER),
    (lambda c: c.OpenEnumerateInstances("EDIV_HostSystem", OperationTimeout=100000),
     pywbem.CIM_ERR_INVALID_OPERATION_TIMEOUT),
    (lambda c: c.CreateInstance(pywbem.CIMInstance("EDIV_HostSystem")),
     pywbem.CIM_ERR_ACCESS_DENIED),
])
def test_cim_status_codes(conn, call, code):
    with pytest.raises(pywbem.CIMError) as exc:
        call(conn)
    assert _status(exc) == code
    assert conn.GetClass("EDIV_HostSystem").classname == "EDIV_HostSystem"


def test_methods_need_operator_and_are_not_yet_available(wbem_server, ca_file):
    service = pywbem.CIMClassName("EDIV_VirtualSystemManagementService")
    reader = connect(wbem_server, "reader", ca_file)
    with pytest.raises(pywbem.CIMError) as exc:
        reader.InvokeMethod("PlanScenario", service, [("SystemSettings", "x")])
    assert _status(exc) == pywbem.CIM_ERR_ACCESS_DENIED
    operator = connect(wbem_server, "operator", ca_file)
    with pytest.raises(pywbem.CIMError) as exc:
        operator.InvokeMethod("PlanScenario", service, [("SystemSettings", "x")])
    assert _status(exc) == pywbem.CIM_ERR_METHOD_NOT_AVAILABLE
    with pytest.raises(pywbem.CIMError) as exc:
        operator.InvokeMethod("NoSuchMethod", service)
    assert _status(exc) == pywbem.CIM_ERR_METHOD_NOT_FOUND
    admin = connect(wbem_server, "admin", ca_file)
    with pytest.raises(pywbem.CIMError) as exc:
        admin.CreateInstance(pywbem.CIMInstance("EDIV_HostSystem"))
    assert _status(exc) == pywbem.CIM_ERR_NOT_SUPPORTED


def test_association_operations_agree(conn):
    """The eight association operations share one implementation: same results, shaped per
    operation (paths or instances, PropertyList), the same parameter checks."""
    paths = {str(p) for p in conn.AssociatorNames(HOST1)}
    assert paths == {str(i.path) for i in conn.Associators(HOST1)}
    pulled = conn.OpenAssociatorInstancePaths(HOST1, MaxObjectCount=10)
    assert pulled.eos and {str(p) for p in pulled.paths} == paths
    refs = {str(p) for p in conn.ReferenceNames(HOST1)}
    assert refs == {str(i.path) for i in conn.References(HOST1)}
    opened = conn.OpenReferenceInstances(HOST1, MaxObjectCount=10, PropertyList=["ManagedElement"])
    assert opened.eos and {str(i.path) for i in opened.instances} == refs
    assert all(set(i.properties) == {"ManagedElement"} for i in opened.instances)
    [profile] = conn.Associators(HOST1, PropertyList=["RegisteredName"], IncludeClassOrigin=True)
    assert set(profile.properties) == {"RegisteredName"}
    assert profile.properties["RegisteredName"].class_origin.startswith("CIM_Registered")
    for call, code in (
            (lambda: conn.AssociatorNames(HOST1, ResultClass="Nope"),
             pywbem.CIM_ERR_INVALID_PARAMETER),
            (lambda: conn.ReferenceNames(HOST1, ResultClass="Nope"),
             pywbem.CIM_ERR_INVALID_PARAMETER),
            (lambda: conn.OpenAssociatorInstancePaths(HOST1, ContinueOnError=True),
             pywbem.CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED),
            (lambda: conn.OpenReferenceInstances(HOST1, OperationTimeout=0),
             pywbem.CIM_ERR_INVALID_OPERATION_TIMEOUT)):
        with pytest.raises(pywbem.CIMError) as exc:
            call()
        assert _status(exc) == code
