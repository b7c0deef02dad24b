"""Descriptor reading: versions, sections in any order, units, profiles, repairs, refusals."""

from __future__ import annotations

import pytest

from ediv.errors import InputError
from ediv.ovf.envelope import VirtualSystemCollection
from ediv.ovf.inspect import Inspection, system_summary
from ediv.ovf.reader import read_descriptor
from ediv.ovf.units import byte_multiplier, parse_int
from tests import ovf_factory as f

RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"


@pytest.mark.parametrize("units, factor", [
    ("byte * 2^20", 2**20), ("byte*2^30", 2**30), ("bytes * 2^10 * 1024", 2**20),
    ("MegaBytes", 2**20), ("MB", 2**20), ("GigaBytes", 2**30), ("KB", 1024), ("byte", 1),
    ("byte * 10^6", 10**6), (" byte * 2^20 ", 2**20),
])
def test_byte_units(units, factor):
    assert byte_multiplier(units) == factor


@pytest.mark.parametrize("units", ["hertz * 10^6", "", "byte * 2^x", "byte * 2^999", None])
def test_not_byte_units(units):
    assert byte_multiplier(units) is None


def test_parse_int_rejects_placeholders():
    assert parse_int("@@VMDK_FILE_SIZE@@") is None
    assert parse_int("${disk.size}") is None
    assert parse_int(" 42 ") == 42


def summary_of(text: str) -> tuple[dict, list[str]]:
    env = read_descriptor(text.encode(), "test.ovf")
    warnings: list[str] = []
    return system_summary(env, env.systems()[0], env.default_configuration(), warnings), \
        env.warnings + warnings


@pytest.mark.parametrize("units, quantity, expected", [
    ("byte * 2^20", 512, 512), ("MegaBytes", 512, 512), ("MB", 512, 512),
    ("byte * 2^30", 2, 2048), ("GigaBytes", 1, 1024), ("KiloBytes", 1048576, 1024),
])
def test_memory_units(units, quantity, expected):
    summary, _ = summary_of(f.descriptor(mem_units=units, mem_mb=quantity))
    assert summary["memory_mb"] == expected


def test_memory_without_units_warns_and_assumes_mb():
    text = f.descriptor().replace("<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>", "")
    summary, warnings = summary_of(text)
    assert summary["memory_mb"] == 256
    assert any("no AllocationUnits" in w for w in warnings)


def test_version_from_namespace():
    assert read_descriptor(f.descriptor().encode()).ovf_version == "1.0"
    v2 = f.descriptor(namespace="http://schemas.dmtf.org/ovf/envelope/2")
    assert read_descriptor(v2.encode()).ovf_version == "2.0"


def test_sections_in_any_order_and_vendor_sections():
    text = f.descriptor(extra_sections="""
      <vmw:BootOrderSection xmlns:vmw="http://www.vmware.com/schema/ovf" ovf:required="false">
        <Info>boot</Info></vmw:BootOrderSection>
      <foo:Mystery xmlns:foo="urn:example:foo"><Info>x</Info></foo:Mystery>""")
    # Move DiskSection after NetworkSection: order must not matter.
    disk = text[text.index("<DiskSection>"):text.index("</DiskSection>") + len("</DiskSection>")]
    text = text.replace(disk, "").replace("</NetworkSection>", "</NetworkSection>" + disk)
    env = read_descriptor(text.encode())
    assert [e.name for e in env.extensions] == ["vmw:BootOrderSection", "foo:Mystery"]
    assert env.unknown_required == ["foo:Mystery"]  # no ovf:required="false": reported
    assert not any("BootOrderSection" in w for w in env.warnings)
    assert env.disks[0].capacity_bytes == 2**30


def test_ovf_09_vmware_namespace():
    text = f"""<?xml version="1.0"?>
<ovf:Envelope xmlns:ovf="http://www.vmware.com/schema/ovf/1/envelope" xmlns:rasd="{RASD}"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="0.9">
  <ovf:References><ovf:File ovf:href="a.vmdk" ovf:id="file1" ovf:size="10"/></ovf:References>
  <ovf:Section xsi:type="ovf:NetworkSection_Type"><ovf:Info>n</ovf:Info>
    <ovf:Network ovf:name="lan"/></ovf:Section>
  <ovf:Content ovf:id="old" xsi:type="ovf:VirtualSystem_Type"><ovf:Info>vm</ovf:Info>
    <ovf:Section xsi:type="ovf:VirtualHardwareSection_Type"><ovf:Info>hw</ovf:Info>
      <ovf:Item><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:VirtualQuantity>64</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item><rasd:InstanceId>2</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType>
        <rasd:Connection>lan</rasd:Connection></ovf:Item>
    </ovf:Section>
  </ovf:Content>
</ovf:Envelope>"""
    summary, _ = summary_of(text)
    assert summary["id"] == "old" and summary["memory_mb"] == 64
    assert summary["nics"] == [{"network": "lan"}]


def test_nested_collections_flatten():
    inner = f.descriptor(system_id="a")
    vs = inner[inner.index("<VirtualSystem "):inner.index("</VirtualSystem>") + 16]
    nested = (f'<VirtualSystemCollection ovf:id="outer"><Info>o</Info>{vs.replace("a", "a", 1)}'
              f'<VirtualSystemCollection ovf:id="inner"><Info>i</Info>'
              f'{vs.replace(chr(34) + "a" + chr(34), chr(34) + "b" + chr(34))}'
              f'</VirtualSystemCollection></VirtualSystemCollection>')
    env = read_descriptor(inner.replace(vs, nested).encode())
    assert isinstance(env.content, VirtualSystemCollection)
    assert [s.id for s in env.systems()] == ["a", "b"]


def test_deployment_option_selects_items_and_values():
    text = f.descriptor().replace("<NetworkSection>", """<DeploymentOptionSection>
      <Info>sizes</Info>
      <Configuration ovf:id="small"><Label>Small</Label></Configuration>
      <Configuration ovf:id="large" ovf:default="true"><Label>Large</Label></Configuration>
    </DeploymentOptionSection><NetworkSection>""")
    memory_item = "<Item>\n        <rasd:AllocationUnits>byte * 2^20"
    text = text.replace(memory_item, """<Item ovf:configuration="large">
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity>
      </Item>
      <Item ovf:configuration="small">
        <rasd:AllocationUnits>byte * 2^20""")
    text = text.replace('ovf:key="hostname" ovf:type="string" ovf:value="r1" '
                        'ovf:userConfigurable="true">',
                        'ovf:key="hostname" ovf:type="string" ovf:value="r1" '
                        'ovf:userConfigurable="true"><Value ovf:configuration="large" '
                        'ovf:value="big-r1"/>')
    env = read_descriptor(text.encode())
    assert env.default_configuration() == "large"
    vs = env.systems()[0]
    assert system_summary(env, vs, "large", [])["memory_mb"] == 4096
    assert system_summary(env, vs, "small", [])["memory_mb"] == 256
    prop = env.products()[0].properties[0]
    assert prop.value_for("large") == "big-r1" and prop.value_for("small") == "r1"


def test_product_class_and_instance_qualify_keys():
    text = f.descriptor().replace("<ProductSection>",
                                  '<ProductSection ovf:class="org.ediv" ovf:instance="2">')
    env = read_descriptor(text.encode())
    keys = [p.full_key for p in env.products()[0].properties]
    assert keys == ["org.ediv.hostname.2", "org.ediv.domain.2"]
    assert env.products()[0].properties[0].user_configurable is True


def test_repairs_bom_wrong_encoding_and_undeclared_prefix():
    text = f.descriptor().replace('encoding="UTF-8"', 'encoding="utf-16"')
    text = text.replace("<Info>A router appliance</Info>",
                        "<Info>A router appliance</Info><vnd:Note>x</vnd:Note>")
    env = read_descriptor(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    joined = "\n".join(env.warnings)
    assert "byte-order mark" in joined and "utf-16" in joined and "'vnd'" in joined
    assert env.systems()[0].name == "Router One"


@pytest.mark.parametrize("text, message", [
    ("<notovf/>", "root element is <notovf>"),
    ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/3"/>', "unknown OVF envelope"),
    ("<Envelope><References>", "malformed XML"),
    ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Envelope>&e;</Envelope>',
     "(?i)entity"),
])
def test_refusals(text, message):
    with pytest.raises(InputError, match=message):
        read_descriptor(text.encode())


def test_property_default_value_missing_is_null(tmp_path):
    text = f.descriptor(properties={}).replace(
        "<Product>Test Router</Product>",
        '<Product>Test Router</Product><Property ovf:key="secret" ovf:type="string" '
        'ovf:password="true"/>')
    env = read_descriptor(text.encode())
    prop = env.products()[0].properties[0]
    assert prop.password and prop.value is None
    built = f.build_package(tmp_path, descriptor_text=text.replace("disk1.img",
                                                                   "router-disk1.img"))
    from ediv.ovf.inspect import inspect_package

    result: Inspection = inspect_package(built.path)
    assert result.to_json()["properties"] == [{"key": "secret", "value": None}]
