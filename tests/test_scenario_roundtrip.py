"""Serializer: parse -> to_xml -> parse keeps the meaning; output is schema-valid VNUML."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ediv import xmlsafe
from ediv.scenario import parse_string, schema, to_xml, write
from ediv.scenario.model import (
    VM,
    Address,
    Console,
    Exec,
    Filesystem,
    Filetree,
    Global,
    HostIf,
    HostSection,
    Interface,
    Kernel,
    Net,
    PhysicalIf,
    Route,
    Scenario,
    User,
    VmDefaults,
    VmMgmt,
)


def without_lines(obj):
    """A deep copy of a model object with every ``line`` set to 0."""
    obj = copy.deepcopy(obj)
    _zero(obj)
    return obj


def _zero(obj) -> None:
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name == "line":
                obj.line = 0
            else:
                _zero(getattr(obj, f.name))
    elif isinstance(obj, list):
        for item in obj:
            _zero(item)


def test_serializer_writes_vnuml_order_and_is_schema_valid():
    s = Scenario(
        global_=Global(simulation_name="x", automac=0, vm_mgmt=VmMgmt(type="none")),
        nets=[Net("n")],
        vms=[VM("v", mem="64M", filesystem=Filesystem("/fs"), execs=[Exec("ls", "start")],
                interfaces=[Interface(1, "n", addresses=[Address(6, "2001:db8::1"),
                                                         Address(4, "198.18.0.1")])],
                routes=[Route("ipv4", "198.18.0.254", "default")])],
    )
    data = to_xml(s)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<vnuml>\n  <global>')
    tree = xmlsafe.parse_bytes(data, "out.xml")
    assert schema.validate(tree, "out.xml", fast=False) == []
    vm = tree.getroot().find("vm")
    assert [c.tag for c in vm] == ["filesystem", "mem", "if", "route", "exec"]
    assert [c.tag for c in vm.find("if")] == ["ipv4", "ipv6"]  # DTD order, whatever the model


def test_write_puts_the_document_in_a_file(tmp_path):
    s = Scenario(global_=Global(simulation_name="w"), root="vnx")
    write(s, tmp_path / "w.xml")
    assert parse_string((tmp_path / "w.xml").read_bytes()).root == "vnx"


def test_special_characters_survive(tmp_path):
    cmd = 'echo "a<b" && cat x > y 2>&1 \'q\' ñ €'
    s = Scenario(global_=Global(simulation_name="t"),
                 vms=[VM("v", execs=[Exec(cmd, "s")])])
    assert parse_string(to_xml(s)).vms[0].execs[0].command == cmd


# --- property: random valid scenarios ----------------------------------------------

NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,7}", fullmatch=True)
TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x17F, exclude_categories=("Cs",)),
    min_size=1, max_size=20,
).map(str.strip).filter(bool)
OPT_TEXT = st.none() | TEXT
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
NET4 = st.builds(lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
                 st.ip_addresses(v=4), st.integers(0, 32))
NET6 = st.builds(lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
                 st.ip_addresses(v=6), st.integers(0, 128))


def one_of(*values):
    return st.sampled_from(values)


def opt(*values):
    return st.none() | st.sampled_from(values)


addresses = st.tuples(
    st.lists(st.builds(Address, family=st.just(4), address=IPV4,
                       mask=opt("255.255.255.0", "24", "255.255.0.0")), max_size=2),
    st.lists(st.builds(Address, family=st.just(6), address=IPV6, mask=opt("64", "48")),
             max_size=2),
).map(lambda pair: pair[0] + pair[1])
routes = st.lists(
    st.one_of(
        st.builds(Route, type=st.just("ipv4"), gw=IPV4,
                  destination=st.just("default") | NET4),
        st.builds(Route, type=st.just("ipv6"), gw=IPV6,
                  destination=st.just("default") | NET6),
    ),
    max_size=2,
)
execs = st.lists(st.builds(
    Exec, command=TEXT, seq=NAME, type=one_of("verbatim", "file"),
    mode=opt("mconsole", "net", "system", "processy", "cdrom"), user=st.none() | NAME,
    gui=opt("yes", "no"), ostype=opt("system", "show", "xexec"),
), max_size=3)
filesystems = st.none() | st.builds(Filesystem, path=TEXT, type=one_of("direct", "cow", "hostfs"))
kernels = st.none() | st.builds(Kernel, path=TEXT, initrd=OPT_TEXT, devfs=opt("mount", "nomount"),
                                root=OPT_TEXT, modules=OPT_TEXT, trace=opt("on", "off"))
consoles = st.lists(st.builds(
    Console, id=one_of("0", "1", "2"), value=st.just("") | TEXT,
    attrs=st.dictionaries(one_of("display", "port"), NAME, max_size=2),
), max_size=2)
users = st.lists(st.builds(User, username=NAME, group=st.none() | NAME,
                           groups=st.lists(NAME, max_size=2), ssh_keys=st.lists(TEXT, max_size=2)),
                 max_size=2)
filetrees = st.lists(st.builds(Filetree, source=TEXT, root=TEXT, seq=NAME,
                               user=st.none() | NAME), max_size=2)
machine = dict(
    filesystem=filesystems, mem=opt("64M", "128M", "65536K", "1G"), kernel=kernels,
    shell=OPT_TEXT, basedir=OPT_TEXT, mng_if=opt("yes", "no"), consoles=consoles,
    xterm=OPT_TEXT, routes=routes, forwarding=opt("ip", "ipv4", "ipv6"), users=users,
    filetrees=filetrees,
)
vm_defaults = st.none() | st.builds(
    VmDefaults, exec_mode=opt("net", "mconsole", "pst"),
    extra=st.dictionaries(st.just("display_console"), TEXT, max_size=1), **machine)
vm_mgmt = st.none() | st.builds(
    VmMgmt, type=one_of("private", "net", "none"), network=IPV4,
    mask=st.integers(0, 32), offset=st.integers(0, 1000), host_mapping=st.booleans(),
    mgmt_net=st.none() | st.fixed_dictionaries({"sock": TEXT, "hostip": IPV4}),
)
globals_ = st.builds(
    Global, version=one_of("1.8", "1.91", "1.92"), simulation_name=NAME,
    ssh_version=opt("1", "2"), ssh_keys=st.lists(TEXT, max_size=2),
    automac=st.none() | st.integers(0, 100),
    netconfig=st.dictionaries(one_of("stp", "promisc"), one_of("on", "off"), max_size=2),
    vm_mgmt=vm_mgmt, tun_device=OPT_TEXT, vm_defaults=vm_defaults,
    extensions=st.lists(st.fixed_dictionaries({"plugin": NAME, "conf": TEXT}), max_size=2),
    extra=st.dictionaries(one_of("dynamips_ext", "olive_ext"), TEXT, max_size=2),
)


@st.composite
def scenarios(draw) -> Scenario:
    net_names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    nets = [draw(st.builds(
        Net, name=st.just(n), mode=one_of("virtual_bridge", "uml_switch"),
        type=one_of("lan", "ppp"), external=st.none() | NAME, vlan=opt("10", "200"),
        bw=opt("1000", "10000"), sock=OPT_TEXT, hub=opt("yes", "no"),
        extra=st.dictionaries(one_of("scope", "capture_file"), NAME, max_size=2)
        .filter(lambda d: d.get("scope", "shared") == "shared"),
    )) for n in net_names]
    vms = []
    for name in draw(st.lists(NAME, max_size=4, unique=True)):
        ids = draw(st.lists(st.integers(0, 9), max_size=3, unique=True))
        interfaces = [draw(st.builds(
            Interface, id=st.just(i), net=st.sampled_from(net_names),
            mac=st.none() | st.just(f"02:00:00:00:00:{i:02x}"), addresses=addresses,
            name=st.none() | NAME,
        )) for i in ids]
        vms.append(draw(st.builds(
            VM, name=st.just(name), order=st.none() | st.integers(0, 50),
            type=one_of("", "uml", "container", "libvirt"), subtype=opt("kvm", "3600"),
            os=opt("linux", "windows"), exec_mode=opt("net", "mconsole"),
            appliance=st.none() | TEXT, interfaces=st.just(interfaces), execs=execs,
            extra=st.dictionaries(one_of("conf", "on_boot", "dynamips_conf", "display_console"),
                                  TEXT, max_size=2),
            **machine,
        )))
    host = draw(st.none() | st.builds(
        HostSection,
        hostifs=st.lists(st.builds(HostIf, net=st.sampled_from(net_names), addresses=addresses),
                         max_size=2),
        physicalifs=st.lists(st.builds(PhysicalIf, name=NAME, ip=IPV4, type=st.just("ipv4"),
                                       mask=opt("24", "255.255.255.0"), gw=st.none() | IPV4),
                             max_size=2),
        routes=routes, forwarding=opt("ip", "ipv6"), execs=execs,
    ))
    return Scenario(global_=draw(globals_), nets=nets, vms=vms, host=host,
                    root=draw(one_of("vnuml", "vnx")), source="gen.xml", basedir="/b")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_scenarios_round_trip(scenario):
    data = to_xml(scenario)
    back = parse_string(data, "gen.xml", basedir="/b")  # also validates against the XSD
    assert without_lines(back) == scenario
    # and the serializer is stable: writing the parsed model gives the same bytes
    assert to_xml(back) == data


@settings(max_examples=25, deadline=None)
@given(scenarios())
def test_both_validators_accept_serializer_output(scenario):
    tree = etree.fromstring(to_xml(scenario), xmlsafe.make_parser()).getroottree()
    assert schema.is_valid_fast(tree)
    assert schema.validate(tree, "gen.xml", fast=False) == []
