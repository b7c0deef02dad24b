"""``ediv.ovf.cim.to_cim``: OVF systems as the CIM settings DefineSystem takes.

The instances are checked against the product's compiled MOF (class and property names,
types), sent through CIM-XML (``tocimxml``) and MOF (``tomof``) and parsed back the way the
server parses DefineSystem's embedded instances, then turned into a VNUML VM by the server's
own settings reader.
"""

from __future__ import annotations

import pytest
from pywbem import CIMInstance

from ediv.errors import InputError
from ediv.ovf.cim import to_cim, vm_to_cim
from ediv.ovf.reader import read_descriptor
from ediv.provider.schema import EDIV_NAMESPACE, load_schema
from ediv.scenario.model import VM, Address, Filesystem, Interface
from tests import ovf_factory as f


@pytest.fixture(scope="module")
def classes():
    return load_schema(use_cache=False).namespace(EDIV_NAMESPACE)


def settings():
    text = f.descriptor(mem_mb=512, cpus=2, networks=("VM Network", "lan")).replace(
        "<rasd:ElementName>eth1</rasd:ElementName>",
        "<rasd:Address>00:50:56:AB:CD:EF</rasd:Address><rasd:ElementName>eth1</rasd:ElementName>")
    return to_cim(read_descriptor(text.encode()), net_map={"lan": "Net0"},
                  image_path="/srv/ediv/router1.img")


def assert_conforms(inst: CIMInstance, classes) -> None:
    cls = classes.get_class(inst.classname)
    assert cls is not None, f"{inst.classname} is not a class of mof/ediv.mof"
    for name, prop in inst.properties.items():
        assert name in cls.properties, f"{inst.classname} has no property {name}"
        declared = cls.properties[name]
        assert (prop.type, prop.is_array) == (declared.type, declared.is_array), name


def test_mapping():
    vssd, rasds = settings()
    assert vssd.classname == "EDIV_VirtualSystemSettingData"
    assert (vssd["ElementName"], vssd["VirtualSystemIdentifier"], vssd["VirtualSystemType"]) == \
        ("router1", "router1", "uml")
    assert (vssd["Filesystem"], vssd["FilesystemType"]) == ("/srv/ediv/router1.img", "cow")
    by_class: dict[str, list[CIMInstance]] = {}
    for r in rasds:
        by_class.setdefault(r.classname, []).append(r)
    (cpu,) = by_class["EDIV_ProcessorRASD"]
    assert (cpu["ResourceType"], cpu["VirtualQuantity"]) == (3, 2)
    (mem,) = by_class["EDIV_MemoryRASD"]
    assert (mem["ResourceType"], mem["VirtualQuantity"], mem["AllocationUnits"]) == \
        (4, 512, "byte*2^20")
    ports = by_class["EDIV_EthernetPortAllocationSettingData"]
    assert [(p["Connection"], p["InterfaceIndex"], p.get("Address")) for p in ports] == \
        [(["VM_Network"], 1, None), (["Net0"], 2, "00:50:56:ab:cd:ef")]
    (disk,) = by_class["EDIV_StorageAllocationSettingData"]
    assert disk["HostResource"] == ["/srv/ediv/router1.img"]


def test_instances_conform_to_the_product_mof(classes):
    vssd, rasds = settings()
    for inst in [vssd, *rasds]:
        assert_conforms(inst, classes)


@pytest.mark.parametrize("encoding", ["cim-xml", "mof"])
def test_round_trip_through_define_system_parsing(classes, encoding):
    embedded = pytest.importorskip("ediv.provider.embedded")
    vm_settings = pytest.importorskip("ediv.provider.vm_settings")
    vssd, rasds = settings()
    parser = embedded.EmbeddedParser(classes)

    def wire(inst: CIMInstance, expect: str) -> CIMInstance:
        text = inst.tocimxmlstr() if encoding == "cim-xml" else inst.tomof()
        return parser.parse("ResourceSettings", text, expect)

    back_vssd = wire(vssd, "CIM_VirtualSystemSettingData")
    back = [wire(r, "CIM_ResourceAllocationSettingData") for r in rasds]
    def values(inst: CIMInstance) -> tuple[str, dict]:
        return inst.classname, {k: v for k, v in inst.items()}

    assert values(back_vssd) == values(vssd)
    assert [values(r) for r in back] == [values(r) for r in rasds]
    vm = vm_settings.vm_from_settings(back_vssd, back)
    assert (vm.name, vm.type, vm.mem) == ("router1", "uml", "512M")
    assert vm.filesystem == Filesystem("/srv/ediv/router1.img", "cow")
    assert [(i.id, i.net, i.mac) for i in vm.interfaces] == \
        [(1, "VM_Network", None), (2, "Net0", "00:50:56:ab:cd:ef")]


def test_vm_with_addresses(classes):
    vm = VM(name="r2", type="container", mem="64M", interfaces=[
        Interface(1, "Net0", addresses=[Address(4, "198.18.1.1", "255.255.255.0"),
                                        Address(6, "2001:db8::1/64")])])
    vssd, rasds = vm_to_cim(vm)
    (port,) = [r for r in rasds if r.classname == "EDIV_EthernetPortAllocationSettingData"]
    assert port["IPAddresses"] == ["198.18.1.1/24", "2001:db8::1/64"]
    assert vssd["VirtualSystemType"] == "container" and "Filesystem" not in vssd
    for inst in [vssd, *rasds]:
        assert_conforms(inst, classes)


def test_system_choice_in_a_collection(corpus):
    path = corpus / "ovf/govmomi/external/2011OVFs/StudioVappEulaOvf/StudioVappEulaOvf.ovf"
    if not path.is_file():
        pytest.skip(f"corpus file {path} not found")
    env = read_descriptor(path.read_bytes(), str(path))
    with pytest.raises(InputError, match="several systems"):
        to_cim(env)
    names = [s.id for s in env.systems()]
    vssd, _ = to_cim(env, names[1])
    assert vssd["ElementName"] != to_cim(env, names[0])[0]["ElementName"]
    with pytest.raises(InputError, match="no system 'nope'"):
        to_cim(env, "nope")


def test_mof_apostrophes_survive_the_embedded_parser(classes):
    """pywbem's tomof escapes ' as \\' and its MOF compiler drops such quotes; the server's
    parser must give back the text the client had (an XML declaration, a shell command)."""
    embedded = pytest.importorskip("ediv.provider.embedded")
    parser = embedded.EmbeddedParser(classes)
    texts = ["<?xml version='1.0' encoding='UTF-8'?>", "echo 'it''s'", "back\\'slash \\\\"]
    for text in texts:
        inst = CIMInstance("EDIV_VirtualSystemSettingData",
                           properties={"InstanceID": "ediv:x", "Kernel": text})
        back = parser.parse("SystemSettings", inst.tomof(), "CIM_VirtualSystemSettingData")
        assert back["Kernel"] == text
