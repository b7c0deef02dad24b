"""The product's MOF: compiles, has the EDIV classes of the design, and agrees with DMTF 2.49."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ediv.provider import schema as schema_mod
from ediv.provider.schema import (
    EDIV_NAMESPACE,
    INTEROP_NAMESPACE,
    compile_namespace,
    is_association,
    load_schema,
    mof_dir,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DMTF_ZIP = CORPUS / "cim" / "cim_schema_2.49.0Final-MOFs.zip"
STRIPPED = {"description", "mappingstrings", "modelcorrespondence", "umlpackagepath"}

EDIV_CLASSES = {
    "EDIV_HostSystem": "CIM_ComputerSystem",
    "EDIV_Scenario": "CIM_ComputerSystem",
    "EDIV_VirtualSystem": "CIM_ComputerSystem",
    "EDIV_VirtualNetwork": "CIM_Network",
    "EDIV_ScenarioSettingData": "CIM_VirtualSystemSettingData",
    "EDIV_VirtualSystemSettingData": "CIM_VirtualSystemSettingData",
    "EDIV_ProcessorRASD": "CIM_ProcessorAllocationSettingData",  # CIM 2.49 (issue 17)
    "EDIV_MemoryRASD": "CIM_MemoryAllocationSettingData",
    "EDIV_EthernetPortAllocationSettingData": "CIM_EthernetPortAllocationSettingData",
    "EDIV_StorageAllocationSettingData": "CIM_StorageAllocationSettingData",
    "EDIV_VirtualSystemManagementService": "CIM_VirtualSystemManagementService",
    "EDIV_VirtualSystemManagementCapabilities": "CIM_VirtualSystemManagementCapabilities",
    "EDIV_EnabledLogicalElementCapabilities": "CIM_EnabledLogicalElementCapabilities",
    "EDIV_ConcreteJob": "CIM_ConcreteJob",
    "EDIV_ProcessorPool": "CIM_ResourcePool",
    "EDIV_MemoryPool": "CIM_ResourcePool",
    "EDIV_NetworkPortPool": "CIM_ResourcePool",
    "EDIV_StoragePool": "CIM_ResourcePool",
    "EDIV_AllocationCapabilities": "CIM_AllocationCapabilities",
    "EDIV_Processor": "CIM_Processor",
    "EDIV_Memory": "CIM_Memory",
    "EDIV_NetworkPort": "CIM_EthernetPort",
    "EDIV_LogicalDisk": "CIM_LogicalDisk",
}
EDIV_ASSOCIATIONS = [
    "HostedDependency", "SystemComponent", "SettingsDefineState",
    "VirtualSystemSettingDataComponent", "ElementSettingData", "HostedService",
    "ServiceAffectsElement", "ElementCapabilities", "AffectedJobElement", "OwningJobElement",
    "ElementConformsToProfile", "HostedResourcePool", "ElementAllocatedFromPool",
    "ResourceAllocationFromPool", "SettingsDefineCapabilities", "SystemDevice",
]


@pytest.fixture(scope="module")
def product():
    return load_schema(use_cache=False)


@pytest.fixture(scope="module")
def dmtf_dir(tmp_path_factory):
    if not DMTF_ZIP.is_file():
        pytest.skip(f"shared corpus not found at {DMTF_ZIP}")
    out = tmp_path_factory.mktemp("dmtf")
    with zipfile.ZipFile(DMTF_ZIP) as zf:
        zf.extractall(out)
    return out


@pytest.fixture(scope="module")
def against_dmtf(dmtf_dir):
    """The product's own MOF compiled on top of the real DMTF schema (not the shipped subset)."""
    quals = [dmtf_dir / "qualifiers.mof", dmtf_dir / "qualifiers_optional.mof"]
    return {
        EDIV_NAMESPACE: compile_namespace(
            EDIV_NAMESPACE, [*quals, mof_dir() / "ediv.mof"], [dmtf_dir]),
        INTEROP_NAMESPACE: compile_namespace(
            INTEROP_NAMESPACE, [*quals, mof_dir() / "ediv_interop.mof"], [dmtf_dir]),
    }


@pytest.fixture(scope="module")
def dmtf_base(dmtf_dir, product):
    """Every non-EDIV class the product ships, compiled from the real DMTF 2.49 files."""
    from pywbem_mock import FakedWBEMConnection

    files = {p.stem.lower(): p for p in dmtf_dir.rglob("*.mof")}
    ns = "root/dmtf"
    conn = FakedWBEMConnection(default_namespace=ns)
    for quals in ("qualifiers.mof", "qualifiers_optional.mof"):
        conn.compile_mof_file(str(dmtf_dir / quals), namespace=ns)
    store = conn.cimrepository.get_class_store(ns)
    names = {n for space in product for n in space.classes if not n.startswith("ediv_")}
    for name in sorted(names):
        assert name in files, f"{name} is not in DMTF 2.49"
        if not store.object_exists(name):
            conn.compile_mof_file(str(files[name]), namespace=ns, search_paths=[str(dmtf_dir)])
    return {c.classname.lower(): c for c in store.iter_values()}, {
        q.name.lower(): schema_mod.dsp0201_scopes(q)
        for q in conn.cimrepository.get_qualifier_store(ns).iter_values()}


def _key(obj) -> bool:
    q = obj.qualifiers.get("Key")
    return bool(q is not None and q.value)


def _qual(obj, name):
    q = obj.qualifiers.get(name)
    return None if q is None else q.value


def signature(cls) -> dict:
    """What a client depends on: features, their types, keys, array-ness, parameters."""
    props = {
        p.name.lower(): (p.name, p.type, p.is_array, (p.reference_class or "").lower(), _key(p),
                         _qual(p, "EmbeddedInstance"), bool(_qual(p, "EmbeddedObject")),
                         (p.class_origin or "").lower())
        for p in cls.properties.values()
    }
    methods = {
        m.name.lower(): (m.name, m.return_type, (m.class_origin or "").lower(), tuple(
            (p.name, p.type, p.is_array, (p.reference_class or "").lower(),
             bool(_qual(p, "In") is not False), bool(_qual(p, "Out")),
             _qual(p, "EmbeddedInstance"))
            for p in m.parameters.values()))
        for m in cls.methods.values()
    }
    return {"superclass": (cls.superclass or "").lower(), "properties": props,
            "methods": methods, "association": is_association(cls)}


def without_text(cls):
    """A copy without the free-text qualifiers the shipped subset leaves out."""
    cls = cls.copy()
    holders = [cls, *cls.properties.values(), *cls.methods.values()]
    holders += [p for m in cls.methods.values() for p in m.parameters.values()]
    for holder in holders:
        for name in [n for n in holder.qualifiers if n.lower() in STRIPPED]:
            del holder.qualifiers[name]
    return cls


def test_namespaces_compile_with_ediv_classes(product):
    ediv = product.namespace(EDIV_NAMESPACE)
    for name, base in EDIV_CLASSES.items():
        cls = ediv.get_class(name)
        assert cls is not None, name
        assert cls.superclass == base
        assert not is_association(cls)
    for short in EDIV_ASSOCIATIONS:
        cls = ediv.get_class(f"EDIV_{short}")
        assert cls is not None and is_association(cls), short
        assert cls.superclass == f"CIM_{short}"
    on_net = ediv.get_class("EDIV_NetworkPortOnNetwork")
    assert is_association(on_net) and on_net.superclass == "CIM_Dependency"
    interop = product.namespace(INTEROP_NAMESPACE)
    assert interop.get_class("EDIV_RegisteredProfile").superclass == "CIM_RegisteredProfile"
    assert is_association(interop.get_class("EDIV_ElementConformsToProfile"))
    for name in ("CIM_Namespace", "CIM_ObjectManager", "CIM_NamespaceInManager"):
        assert interop.get_class(name) is not None
    assert ediv.get_class("EDIV_RegisteredProfile") is None  # interop only


def test_scenario_settings_and_extension_methods(product):
    ediv = product.namespace(EDIV_NAMESPACE)
    ssd = ediv.get_class("EDIV_ScenarioSettingData")
    for prop in ("ScenarioDefinition", "Restrictions", "PartitionAlgorithm", "Archive"):
        assert ssd.properties[prop].type == "string"
        assert not ssd.properties[prop].propagated
    assert ssd.properties["InstanceID"].propagated and _key(ssd.properties["InstanceID"])
    vsms = ediv.get_class("EDIV_VirtualSystemManagementService")
    ex = vsms.methods["ExecuteSequence"]
    assert ex.return_type == "uint32"
    assert ex.parameters["AffectedSystem"].reference_class == "EDIV_Scenario"
    assert _qual(ex.parameters["AffectedSystem"], "In") is True
    assert ex.parameters["Sequence"].type == "string"
    job = ex.parameters["Job"]
    assert job.reference_class == "CIM_ConcreteJob" and _qual(job, "Out") is True
    assert _qual(job, "In") is False
    assert {"PlanScenario", "ImportVirtualSystem", "DefineSystem", "DestroySystem"} <= set(
        vsms.methods)
    assert _qual(vsms.methods["PlanScenario"].parameters["SystemSettings"],
                 "EmbeddedInstance") == "EDIV_ScenarioSettingData"


def test_association_references_narrowed(product):
    ediv = product.namespace(EDIV_NAMESPACE)
    hd = ediv.get_class("EDIV_HostedDependency")
    assert hd.properties["Antecedent"].reference_class == "EDIV_HostSystem"
    assert hd.properties["Dependent"].reference_class == "EDIV_VirtualSystem"
    assert _key(hd.properties["Antecedent"]) and _key(hd.properties["Dependent"])
    sc = ediv.get_class("EDIV_SystemComponent")
    assert sc.properties["GroupComponent"].reference_class == "EDIV_Scenario"
    # nets are CIM_Systems, so they fit SystemComponent.PartComponent
    assert ediv.is_subclass("EDIV_VirtualNetwork", sc.properties["PartComponent"].reference_class)
    assert ediv.is_subclass("EDIV_VirtualSystem", sc.properties["PartComponent"].reference_class)


def test_ediv_classes_match_dmtf_249(product, against_dmtf):
    """Compiled on the real DMTF 2.49 schema, every EDIV class is feature-for-feature the same."""
    checked = 0
    for ns, reference in against_dmtf.items():
        shipped = product.namespace(ns)
        for name, ref_cls in reference.classes.items():
            if not name.startswith("ediv_"):
                continue
            ours = shipped.get_class(name)
            assert ours is not None, name
            assert signature(ours) == signature(ref_cls), name
            checked += 1
    # + interop's two, + EDIV_NetworkPortOnNetwork (a CIM_Dependency: no CIM_ namesake)
    assert checked == len(EDIV_CLASSES) + len(EDIV_ASSOCIATIONS) + 3


def test_shipped_base_classes_match_dmtf_249(product, dmtf_base):
    """Every DMTF class shipped in mof/dmtf equals DMTF 2.49 except for the free-text qualifiers."""
    ref_classes, ref_quals = dmtf_base
    checked = set()
    for shipped in product:
        for name, cls in shipped.classes.items():
            if name.startswith("ediv_"):
                continue
            ref_cls = ref_classes[name]
            assert signature(cls) == signature(ref_cls), cls.classname
            assert without_text(cls) == without_text(ref_cls), cls.classname
            checked.add(name)
        assert shipped.qualifiers == ref_quals
    assert {"cim_computersystem", "cim_network", "cim_registeredprofile",
            "cim_namespace", "cim_objectmanager", "cim_concretejob"} <= checked


def test_signature_notices_a_changed_key(product):
    cls = product.namespace(EDIV_NAMESPACE).get_class("EDIV_HostSystem").copy()
    before = signature(cls)
    del cls.properties["Name"].qualifiers["Key"]
    assert signature(cls) != before


def test_schema_cache_written_and_reused(tmp_path, monkeypatch):
    first = load_schema(tmp_path)
    files = list(tmp_path.glob("schema-*.pickle"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(schema_mod, "compile_schema", lambda root=None: calls.append(root))
    second = load_schema(tmp_path)
    assert calls == []
    assert second.namespace(EDIV_NAMESPACE).classes.keys() == \
        first.namespace(EDIV_NAMESPACE).classes.keys()
    files[0].write_bytes(b"not a pickle")
    monkeypatch.undo()
    again = load_schema(tmp_path)
    assert again.namespace(INTEROP_NAMESPACE).get_class("EDIV_RegisteredProfile") is not None
