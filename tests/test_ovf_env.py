"""The OVF environment document (ovf-env.xml, DSP0243 section 11) ediv gives a VM."""

from __future__ import annotations

from ediv import xmlsafe
from ediv.ovf.environment import environment_xml, read_environment, system_properties
from ediv.ovf.namespaces import OVF_ENVIRONMENT
from ediv.ovf.reader import read_descriptor
from tests import ovf_factory as f

NS = {"e": OVF_ENVIRONMENT}


def test_document_shape():
    data = environment_xml("fw1", [("hostname", "fw1"), ("motd", 'a <b> & "c"')])
    root = xmlsafe.parse_bytes(data).getroot()
    assert root.tag == f"{{{OVF_ENVIRONMENT}}}Environment"
    assert root.get(f"{{{OVF_ENVIRONMENT}}}id") == "fw1"
    assert root.findtext("e:PlatformSection/e:Kind", namespaces=NS) == "ediv"
    props = root.findall("e:PropertySection/e:Property", NS)
    assert [(p.get(f"{{{OVF_ENVIRONMENT}}}key"), p.get(f"{{{OVF_ENVIRONMENT}}}value"))
            for p in props] == [("hostname", "fw1"), ("motd", 'a <b> & "c"')]
    assert read_environment(data) == ("fw1", {"hostname": "fw1", "motd": 'a <b> & "c"'})


def test_properties_of_a_system_use_the_default_configuration():
    text = f.descriptor(properties={"hostname": "r1"}).replace(
        'ovf:key="hostname" ovf:type="string" ovf:value="r1" ovf:userConfigurable="true">',
        'ovf:key="hostname" ovf:type="string" ovf:value="r1" ovf:userConfigurable="true">'
        '<Value ovf:configuration="big" ovf:value="r1-big"/>').replace(
        "<VirtualSystem ", '<DeploymentOptionSection><Info>x</Info>'
        '<Configuration ovf:id="small"><Label>s</Label><Description>s</Description>'
        '</Configuration><Configuration ovf:id="big" ovf:default="true"><Label>b</Label>'
        '<Description>b</Description></Configuration></DeploymentOptionSection>'
        "<VirtualSystem ", 1)
    env = read_descriptor(text.encode())
    (vs,) = env.systems()
    assert system_properties(env, vs) == [("hostname", "r1-big")]
    assert system_properties(env, vs, "small") == [("hostname", "r1")]


def test_collection_properties_reach_members_and_members_win():
    text = f"""<?xml version="1.0"?>
<Envelope xmlns="{f.OVF_NS}" xmlns:ovf="{f.OVF_NS}">
  <References/>
  <VirtualSystemCollection ovf:id="lab">
    <Info>lab</Info>
    <ProductSection ovf:class="org.lab"><Info>p</Info>
      <Property ovf:key="dns" ovf:type="string" ovf:value="198.18.0.53"/>
      <Property ovf:key="domain" ovf:type="string" ovf:value="lab"/>
    </ProductSection>
    <VirtualSystem ovf:id="a"><Info>a</Info>
      <ProductSection ovf:class="org.lab"><Info>p</Info>
        <Property ovf:key="domain" ovf:type="string" ovf:value="a.lab"/>
      </ProductSection>
    </VirtualSystem>
    <VirtualSystem ovf:id="b"><Info>b</Info></VirtualSystem>
  </VirtualSystemCollection>
</Envelope>"""
    env = read_descriptor(text.encode())
    a, b = env.systems()
    assert dict(system_properties(env, a)) == {"org.lab.dns": "198.18.0.53",
                                               "org.lab.domain": "a.lab"}
    assert dict(system_properties(env, b)) == {"org.lab.dns": "198.18.0.53",
                                               "org.lab.domain": "lab"}
