"""Parsing VNUML scenarios: model building, the two root spellings, entities, XSD errors."""

from __future__ import annotations

import pytest

from ediv.errors import InputError
from ediv.scenario import load_string, parse_string, to_xml
from ediv.scenario.model import VM

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def scenario_doc(body: str, *, root: str = "vnuml", name_tag: str = "simulation_name",
                 version: str = "1.8", global_extra: str = "") -> str:
    return (
        f"{HEAD}<{root}>\n"
        f"  <global><version>{version}</version><{name_tag}>t</{name_tag}>{global_extra}</global>\n"
        f"{body}"
        f"</{root}>\n"
    )


def errors_of(data: str, *, checked: bool = False, source: str = "s.xml") -> list[str]:
    with pytest.raises(InputError) as info:
        if checked:
            load_string(data, source)
        else:
            parse_string(data, source)
    return [str(d) for d in info.value.diagnostics]


FULL = f"""{HEAD}<!DOCTYPE vnuml SYSTEM "/usr/share/xml/vnuml/vnuml.dtd" [
  <!ENTITY VNUMLDIR "/usr/share/vnuml/">
]>
<vnuml>
  <global>
    <version>1.8</version>
    <simulation_name>full</simulation_name>
    <ssh_version>2</ssh_version>
    <ssh_key>~/.ssh/id.pub</ssh_key>
    <automac offset="3"/>
    <netconfig stp="on" promisc="off"/>
    <vm_mgmt type="private" network="198.18.0.0" mask="255.255.0.0" offset="2">
      <host_mapping/>
    </vm_mgmt>
    <tun_device>/dev/net/tun</tun_device>
    <vm_defaults exec_mode="mconsole">
      <filesystem type="cow">&VNUMLDIR;filesystems/root_fs</filesystem>
      <mem>64M</mem>
      <kernel initrd="/boot/initrd" trace="on">&VNUMLDIR;kernels/linux</kernel>
      <console id="0">xterm</console>
    </vm_defaults>
    <extension plugin="dhcp" conf="dhcp.xml"/>
  </global>
  <net name="Net0" mode="virtual_bridge" sock="" type="lan" external="" vlan="" hub="no"/>
  <net name="Link" mode="uml_switch" type="ppp" scope="shared"><bw>1000</bw></net>
  <vm name="r1" order="2" type="uml" exec_mode="net" appliance="fw.ova">
    <filesystem type="direct">/images/r1</filesystem>
    <mem>128M</mem>
    <if id="1" net="Net0">
      <mac>02:00:00:00:00:01</mac>
      <ipv4 mask="255.255.255.0">198.18.1.1</ipv4>
      <ipv6 mask="64">2001:db8::1</ipv6>
    </if>
    <if id="2" net="Link"><ipv4>198.18.3.1/30</ipv4></if>
    <route type="ipv4" gw="198.18.3.2">198.18.2.0/24</route>
    <forwarding type="ipv4"/>
    <user username="alice" group="staff"><group>wheel</group><ssh_key>k1</ssh_key></user>
    <filetree root="/etc" seq="start" user="root">conf/etc</filetree>
    <exec seq="start" type="verbatim" mode="mconsole">echo  hi</exec>
    <exec seq="stop" type="file">scripts/stop.sh</exec>
  </vm>
  <vm name="h1" order="">
    <if id="1" net="Link"/>
  </vm>
  <vm name="r0" order="1" type="container"/>
  <host>
    <hostif net="Net0"><ipv4 mask="24">198.18.1.254</ipv4></hostif>
    <physicalif name="eth9" ip="198.18.9.1" mask="255.255.255.0" gw="198.18.9.254"/>
    <route type="ipv4" gw="198.18.1.1">198.18.3.0/30</route>
    <forwarding/>
    <exec seq="start" type="verbatim">true</exec>
  </host>
</vnuml>
"""


def test_full_scenario_builds_every_part_of_the_model():
    s = parse_string(FULL, "full.xml", basedir="/base")
    g = s.global_
    assert (s.root, s.source, s.basedir, s.name) == ("vnuml", "full.xml", "/base", "full")
    assert (g.version, g.ssh_version, g.ssh_keys, g.automac) == ("1.8", "2", ["~/.ssh/id.pub"], 3)
    assert g.netconfig == {"stp": "on", "promisc": "off"}
    assert g.tun_device == "/dev/net/tun"
    assert g.extensions == [{"plugin": "dhcp", "conf": "dhcp.xml"}]
    m = g.vm_mgmt
    assert (m.type, m.network, m.mask, m.offset, m.host_mapping) == (
        "private", "198.18.0.0", 16, 2, True)
    d = g.vm_defaults
    assert d.exec_mode == "mconsole"
    assert d.filesystem.path == "/usr/share/vnuml/filesystems/root_fs"  # internal entity
    assert (d.kernel.path, d.kernel.initrd, d.kernel.trace) == (
        "/usr/share/vnuml/kernels/linux", "/boot/initrd", "on")
    assert [(c.id, c.value) for c in d.consoles] == [("0", "xterm")]

    net0, link = s.nets
    assert (net0.name, net0.mode, net0.type, net0.hub) == ("Net0", "virtual_bridge", "lan", "no")
    assert (net0.sock, net0.external, net0.vlan) == (None, None, None)  # "" means absent
    assert (link.type, link.bw, link.extra) == ("ppp", "1000", {"scope": "shared"})

    r1 = s.vm("r1")
    assert (r1.order, r1.type, r1.exec_mode, r1.appliance) == (2, "uml", "net", "fw.ova")
    assert (r1.filesystem.type, r1.mem) == ("direct", "128M")
    if1, if2 = r1.interfaces
    assert (if1.id, if1.net, if1.mac) == (1, "Net0", "02:00:00:00:00:01")
    assert [(a.family, a.address, a.mask) for a in if1.addresses] == [
        (4, "198.18.1.1", "255.255.255.0"), (6, "2001:db8::1", "64")]
    assert if2.addresses[0].address == "198.18.3.1/30"
    assert [(r.type, r.gw, r.destination) for r in r1.routes] == [
        ("ipv4", "198.18.3.2", "198.18.2.0/24")]
    assert r1.forwarding == "ipv4"
    assert (r1.users[0].username, r1.users[0].group, r1.users[0].groups,
            r1.users[0].ssh_keys) == ("alice", "staff", ["wheel"], ["k1"])
    assert (r1.filetrees[0].source, r1.filetrees[0].root, r1.filetrees[0].user) == (
        "conf/etc", "/etc", "root")
    assert [(e.seq, e.type, e.mode, e.command) for e in r1.execs] == [
        ("start", "verbatim", "mconsole", "echo  hi"), ("stop", "file", None, "scripts/stop.sh")]
    assert s.vm("h1").order is None  # order="" means absent
    assert s.vm("h1").type == ""  # no type: the host's default driver
    assert s.vm("h1").nets == ["Link"]

    h = s.host
    assert [(x.net, x.addresses[0].mask) for x in h.hostifs] == [("Net0", "24")]
    p = h.physicalifs[0]
    assert (p.name, p.ip, p.mask, p.gw, p.type) == (
        "eth9", "198.18.9.1", "255.255.255.0", "198.18.9.254", "ipv4")
    assert h.forwarding == "ip"  # <forwarding/> defaults to type ip
    assert h.execs[0].command == "true"


def test_line_numbers_are_the_source_lines_of_the_elements():
    s = parse_string(FULL, "full.xml")
    lines = FULL.splitlines()
    r1 = s.vm("r1")
    assert '<vm name="r1"' in lines[r1.line - 1]
    assert '<if id="2"' in lines[r1.interfaces[1].line - 1]
    assert "<route" in lines[r1.routes[0].line - 1]
    assert '<net name="Link"' in lines[s.net("Link").line - 1]
    assert "<physicalif" in lines[s.host.physicalifs[0].line - 1]


def test_vm_order_rule_ordered_first_then_document_order():
    s = parse_string(FULL)
    assert [v.name for v in s.ordered_vms()] == ["r0", "r1", "h1"]


def test_vnx_root_with_scenario_name_is_kept_for_writing_back():
    s = parse_string(scenario_doc("", root="vnx", name_tag="scenario_name", version="1.92"))
    assert (s.root, s.name, s.global_.version) == ("vnx", "t", "1.92")
    out = to_xml(s).decode()
    assert "<vnx>" in out and "<scenario_name>t</scenario_name>" in out
    assert "simulation_name" not in out


def test_real_files_mix_the_name_spellings_and_are_accepted():
    s = parse_string(scenario_doc("", root="vnx", name_tag="simulation_name"))
    assert (s.root, s.name) == ("vnx", "t")
    s = parse_string(scenario_doc("", root="vnuml", name_tag="scenario_name"))
    assert (s.root, s.name) == ("vnuml", "t")


def test_vnuml_19x_vm_types_and_vnx_elements_are_kept():
    body = """  <net name="n" mode="virtual_bridge"/>
  <vm name="win" type="libvirt" subtype="kvm" os="windows">
    <console id="0" display="yes"/>
    <on_boot>start</on_boot>
    <if id="1" net="n" name="e0/0"/>
  </vm>
"""
    s = parse_string(scenario_doc(body, root="vnx", name_tag="scenario_name",
                                  global_extra="<dynamips_ext>d.xml</dynamips_ext>"))
    vm = s.vm("win")
    assert (vm.type, vm.subtype, vm.os) == ("libvirt", "kvm", "windows")
    assert vm.consoles[0].attrs == {"display": "yes"}
    assert vm.extra == {"on_boot": "start"}
    assert vm.interfaces[0].name == "e0/0"
    assert s.global_.extra == {"dynamips_ext": "d.xml"}


def test_unsupported_vm_type_is_an_error_only_when_deployable():
    body = '  <vm name="win" type="libvirt"/>\n'
    doc = scenario_doc(body)
    _, warnings = load_string(doc, "s.xml")
    assert [w.message for w in warnings] == [
        "vm 'win': type 'libvirt' cannot be deployed by ediv (supported: uml, container, "
        "or no type for the host's default)"]
    with pytest.raises(InputError) as info:
        load_string(doc, "s.xml", deployable=True)
    assert [str(d) for d in info.value.diagnostics] == [
        "s.xml:4: vm 'win': type 'libvirt' cannot be deployed by ediv (supported: uml, "
        "container, or no type for the host's default)"]


# --- entities and malformed input ---------------------------------------------------


def test_external_entity_is_rejected_and_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doc = (f'{HEAD}<!DOCTYPE vnuml [\n<!ENTITY leak SYSTEM "file://{secret}">\n]>\n'
           "<vnuml><global><version>1.8</version>"
           "<simulation_name>&leak;</simulation_name></global></vnuml>\n")
    errs = errors_of(doc)
    assert len(errs) == 1 and errs[0].startswith("s.xml:5: ")
    assert "TOPSECRET" not in errs[0]


def test_external_dtd_is_never_loaded(tmp_path):
    dtd = tmp_path / "vnuml.dtd"
    dtd.write_text('<!ENTITY name "FROM-EXTERNAL-DTD">\n')
    doc = (f'{HEAD}<!DOCTYPE vnuml SYSTEM "{dtd}">\n'
           "<vnuml><global><version>1.8</version>"
           "<simulation_name>&name;</simulation_name></global></vnuml>\n")
    errs = errors_of(doc)
    assert len(errs) == 1 and "Entity 'name' not defined" in errs[0]
    # A DOCTYPE naming a DTD on the network is ignored, not fetched and not an error.
    doc = (f'{HEAD}<!DOCTYPE vnuml SYSTEM "http://www.dit.upm.es/vnuml/vnuml.dtd">\n'
           "<vnuml><global><version>1.8</version>"
           "<simulation_name>ok</simulation_name></global></vnuml>\n")
    assert parse_string(doc).name == "ok"


def test_billion_laughs_is_rejected_with_a_clear_message():
    entities = '<!ENTITY e0 "ha">\n' + "".join(
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">\n' for i in range(1, 10))
    doc = (f"{HEAD}<!DOCTYPE vnuml [\n{entities}]>\n<vnuml><global><version>1.8</version>"
           "<simulation_name>&e9;</simulation_name></global></vnuml>\n")
    errs = errors_of(doc)
    assert len(errs) == 1
    assert errs[0].startswith("s.xml:") and "amplification" in errs[0]


def test_malformed_xml_reports_file_and_line():
    errs = errors_of(f"{HEAD}<vnuml>\n  <global>\n    <version>1.8</version>\n</vnuml>\n")
    assert errs == ["s.xml:5: malformed XML: Opening and ending tag mismatch: global line 3 "
                    "and vnuml"]


# --- language and schema --------------------------------------------------------------


def test_vnx_20_is_rejected_with_one_diagnostic():
    doc = scenario_doc('<net name="n" mode="openvswitch"/><vm name="a" type="lxc"/>',
                       root="vnx", name_tag="scenario_name", version="2.0")
    assert errors_of(doc) == [
        "s.xml:3: VNX 2.0 scenarios are not supported (version 2.0); ediv reads VNUML 1.8/1.9x"]


def test_a_document_that_is_not_a_scenario_is_named_as_such():
    errs = errors_of(f"{HEAD}<deployment_restrictions/>\n")
    assert errs == ["s.xml:2: <deployment_restrictions> is not a VNUML scenario "
                    "(expected root <vnuml> or <vnx>)"]


def test_schema_errors_are_all_reported_with_their_lines():
    body = """  <net name="a" mode="virtual_bridge" type="star"/>
  <net mode="virtual_bridge"/>
  <vm name="v">
    <bogus/>
    <if net="a"/>
  </vm>
  <vm name="w">
    <if id="1" net="a"/>
    <mem>64M</mem>
  </vm>
"""
    errs = errors_of(scenario_doc(body))
    assert errs == [
        "s.xml:4: <net>: attribute type='star': value must be one of ['lan', 'ppp']",
        "s.xml:5: <net>: missing required attribute 'name'",
        "s.xml:7: in <vm>: <bogus> is not allowed here",
        "s.xml:8: <if>: missing required attribute 'id'",
        "s.xml:12: in <vm>: <mem> is out of order (VNUML fixes the order of the children "
        "of <vm>)",
    ]


def test_schema_and_semantic_errors_come_together():
    body = """  <net name="a" mode="virtual_bridge" hub="maybe"/>
  <vm name="v"><if id="1" net="nowhere"/></vm>
"""
    errs = errors_of(scenario_doc(body), checked=True)
    assert errs == [
        "s.xml:4: <net>: attribute hub='maybe': value must be one of ['yes', 'no']",
        "s.xml:5: vm 'v' interface 1: net 'nowhere' is not declared",
    ]


def test_numbers_that_are_not_numbers_are_reported_by_the_parser():
    body = '  <net name="a" mode="virtual_bridge"/>\n  <vm name="v" order="first">\n' \
           '    <if id="one" net="a"/>\n  </vm>\n'
    doc = scenario_doc(body, global_extra='<automac offset="x"/><vm_mgmt type="private" '
                                          'mask="255.0.255.0"/>')
    assert errors_of(doc) == [
        "s.xml:3: <automac>: offset 'x' is not an integer",
        "s.xml:3: <vm_mgmt>: mask '255.0.255.0' is neither a prefix length (0-32) nor a "
        "dotted netmask",
        "s.xml:5: vm 'v': order 'first' is not an integer",
        "s.xml:6: vm 'v' <if>: id 'one' is not an integer",
    ]


def test_comments_inside_elements_do_not_disturb_lines_or_text():
    body = """  <net name="a" mode="virtual_bridge"/>
  <!-- a comment -->
  <vm name="v">
    <!-- interfaces -->
    <if id="1" net="a"/>
    <exec seq="s" type="verbatim">echo <!-- c -->hi</exec>
  </vm>
"""
    s = parse_string(scenario_doc(body))
    assert s.vm("v").line == 6 and s.vm("v").interfaces[0].line == 8
    assert s.vm("v").execs[0].command == "echo hi"
    assert isinstance(s.vm("v"), VM)


def test_out_of_order_child_after_comments_is_reported_at_its_own_line():
    body = """  <net name="a" mode="virtual_bridge"/>
  <vm name="v">
    <!-- first -->
    <if id="1" net="a"/>
    <!-- second -->
    <mem>64M</mem>
  </vm>
"""
    assert errors_of(scenario_doc(body)) == [
        "s.xml:9: in <vm>: <mem> is out of order (VNUML fixes the order of the children of <vm>)"]
