"""Semantic checks: one test per rule (message and line), and all problems at once."""

from __future__ import annotations

import pytest

from ediv.errors import InputError
from ediv.scenario import check, load_string
from ediv.scenario.checks import mem_megabytes, prefix_length
from ediv.scenario.model import VM, Interface, Net, Scenario

# Line 1: declaration, 2: <vnuml>, 3: <global>; the body starts on line 4.
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<vnuml>\n'


def doc(body: str, global_extra: str = "") -> str:
    return (f"{HEAD}<global><version>1.8</version><simulation_name>t</simulation_name>"
            f"{global_extra}</global>\n{body}</vnuml>\n")


def problems(body: str, global_extra: str = "", *, deployable: bool = False) -> list[str]:
    """Every diagnostic (errors raised or warnings returned) as ``file:line: message``."""
    try:
        _, warnings = load_string(doc(body, global_extra), "c.xml", deployable=deployable)
    except InputError as exc:
        return [str(d) for d in exc.diagnostics]
    return [str(w) for w in warnings]


NETS = '<net name="a" mode="virtual_bridge"/>\n<net name="b" mode="virtual_bridge"/>\n'


def test_a_correct_scenario_has_no_problems():
    body = NETS + """<vm name="v1"><if id="1" net="a"><mac>02:00:00:00:00:01</mac>
<ipv4 mask="255.255.255.0">198.18.1.1</ipv4><ipv6>2001:db8::1/64</ipv6></if>
<route type="ipv4" gw="198.18.1.254">default</route>
<route type="ipv6" gw="2001:db8::ff">2001:db8:1::/48</route></vm>
<vm name="v2"><mem>65536K</mem><if id="1" net="a"/><if id="2" net="b"/></vm>
"""
    assert problems(body) == []


def test_vm_names_are_unique():
    body = NETS + '<vm name="v"/>\n<vm name="w"/>\n<vm name="v"/>\n'
    assert problems(body) == ["c.xml:8: vm 'v' is declared twice (first at line 6)"]


def test_net_names_are_unique():
    body = NETS + '<net name="a" mode="virtual_bridge"/>\n'
    assert problems(body) == ["c.xml:6: net 'a' is declared twice (first at line 4)"]


def test_names_must_be_usable_as_file_names():
    body = '<net name="a b" mode="virtual_bridge"/>\n<vm name="../x"/>\n'
    assert problems(body) == [
        "c.xml:4: net name 'a b' cannot be used: no '/', blanks or control characters, "
        "not '.' or '..'",
        "c.xml:5: vm name '../x' cannot be used: no '/', blanks or control characters, "
        "not '.' or '..'",
    ]


def test_interface_net_must_be_declared():
    body = NETS + '<vm name="v">\n<if id="1" net="c"/>\n</vm>\n'
    assert problems(body) == ["c.xml:7: vm 'v' interface 1: net 'c' is not declared"]


def test_hostif_net_must_be_declared():
    body = NETS + '<host>\n<hostif net="zz"/>\n</host>\n'
    assert problems(body) == ["c.xml:7: <hostif net='zz'>: net 'zz' is not declared"]


def test_interface_ids_are_unique_within_a_vm():
    body = NETS + '<vm name="v">\n<if id="1" net="a"/>\n<if id="1" net="b"/>\n</vm>\n' \
                  '<vm name="w"><if id="1" net="a"/></vm>\n'
    assert problems(body) == [
        "c.xml:8: vm 'v' interface 1: id 1 is used twice in this vm (first at line 7)"]


def test_ppp_net_needs_exactly_two_ends():
    body = ('<net name="p" mode="virtual_bridge" type="ppp"/>\n'
            '<net name="q" mode="virtual_bridge" type="ppp"/>\n'
            '<net name="r" mode="virtual_bridge" type="ppp"/>\n'
            '<vm name="v"><if id="1" net="p"/><if id="2" net="q"/><if id="3" net="r"/></vm>\n'
            '<vm name="w"><if id="1" net="p"/><if id="2" net="q"/><if id="3" net="r"/></vm>\n'
            '<vm name="x"><if id="1" net="q"/></vm>\n'
            '<host><hostif net="r"/></host>\n')
    assert problems(body) == [
        "c.xml:5: ppp net 'q' has 3 ends; a ppp net needs exactly two",
        "c.xml:6: ppp net 'r' has 3 ends; a ppp net needs exactly two",
    ]
    assert problems('<net name="p" mode="virtual_bridge" type="ppp"/>\n'
                    '<vm name="v"><if id="1" net="p"/></vm>\n') == [
        "c.xml:4: ppp net 'p' has 1 end; a ppp net needs exactly two"]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ('<ipv4>198.18.1.300</ipv4>', "<ipv4> '198.18.1.300' is not an IPv4 address"),
        ('<ipv4>2001:db8::1</ipv4>', "<ipv4> '2001:db8::1' is not an IPv4 address"),
        ('<ipv4>198.18.1.1/33</ipv4>', "<ipv4> '198.18.1.1/33': prefix /33 is not between 0 "
                                       "and 32"),
        ('<ipv4 mask="255.0.255.0">198.18.1.1</ipv4>',
         "<ipv4> mask '255.0.255.0' is not a prefix length or dotted netmask"),
        ('<ipv4 mask="255.255.0.0">198.18.1.1/24</ipv4>',
         "<ipv4> '198.18.1.1/24': prefix /24 and mask '255.255.0.0' disagree"),
        ('<ipv6>198.18.1.1</ipv6>', "<ipv6> '198.18.1.1' is not an IPv6 address"),
        ('<ipv6 mask="255.255.255.0">2001:db8::1</ipv6>',
         "<ipv6> mask '255.255.255.0' is not a prefix length"),
    ],
)
def test_address_syntax(element, message):
    body = NETS + f'<vm name="v">\n<if id="1" net="a">\n{element}\n</if>\n</vm>\n'
    assert problems(body) == [f"c.xml:8: vm 'v' interface 1: {message}"]


@pytest.mark.parametrize(
    ("element", "ok"),
    [
        ('<ipv4 mask="24">198.18.1.1</ipv4>', True),
        ('<ipv4 mask="/24">198.18.1.1</ipv4>', True),
        ('<ipv4 mask="255.255.255.252">198.18.1.1/30</ipv4>', True),
        ('<ipv6 mask="/64">2001:db8::1</ipv6>', True),
        ('<ipv6>2001:db8::1/129</ipv6>', False),
    ],
)
def test_address_mask_forms(element, ok):
    body = NETS + f'<vm name="v"><if id="1" net="a">{element}</if></vm>\n'
    assert (problems(body) == []) is ok


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ('<route type="ipv4" gw="198.18.1.1">somewhere</route>',
         "route destination 'somewhere' is neither 'default' nor an IPv4 address/prefix"),
        ('<route type="ipv4" gw="198.18.1.1">2001:db8::/32</route>',
         "route destination '2001:db8::/32' is neither 'default' nor an IPv4 address/prefix"),
        ('<route type="ipv4" gw="gateway">default</route>',
         "route gateway 'gateway' is not an IPv4 address"),
        ('<route type="ipv6" gw="198.18.1.1">default</route>',
         "route gateway '198.18.1.1' is not an IPv6 address"),
    ],
)
def test_route_destination_and_gateway(route, message):
    body = NETS + f'<vm name="v">\n{route}\n</vm>\n'
    assert problems(body) == [f"c.xml:7: vm 'v': {message}"]


def test_host_routes_and_physicalif_are_checked():
    body = NETS + ('<host>\n<physicalif name="eth1" ip="198.18.0.x" mask="255.255.255.0"/>\n'
                   '<route type="ipv4" gw="198.18.0.1">198.18.5.0/24x</route>\n</host>\n')
    assert problems(body) == [
        "c.xml:7: <physicalif name='eth1'> ip: <ipv4> '198.18.0.x' is not an IPv4 address",
        "c.xml:8: <host>: route destination '198.18.5.0/24x' is neither 'default' nor an IPv4 "
        "address/prefix",
    ]


@pytest.mark.parametrize(
    ("mac", "message"),
    [
        ("02:00:00:00:00", "mac '02:00:00:00:00' is not a MAC address (xx:xx:xx:xx:xx:xx)"),
        ("02-00-00-00-00-01", "mac '02-00-00-00-00-01' is not a MAC address (xx:xx:xx:xx:xx:xx)"),
        ("0g:00:00:00:00:01", "mac '0g:00:00:00:00:01' is not a MAC address (xx:xx:xx:xx:xx:xx)"),
        ("01:00:5e:00:00:01", "mac '01:00:5e:00:00:01' is a multicast address"),
    ],
)
def test_mac_syntax(mac, message):
    body = NETS + f'<vm name="v">\n<if id="3" net="a"><mac>{mac}</mac></if>\n</vm>\n'
    assert problems(body) == [f"c.xml:7: vm 'v' interface 3: {message}"]


def test_mem_syntax():
    body = '<vm name="v">\n<mem>lots</mem>\n</vm>\n<vm name="w"><mem>0M</mem></vm>\n' \
           '<vm name="x"><mem>1G</mem></vm>\n'
    assert problems(body) == [
        "c.xml:4: vm 'v': mem 'lots' is not a memory size (e.g. 64M, 65536K, 1G)",
        "c.xml:7: vm 'w': mem '0M' must be more than zero",
    ]


@pytest.mark.parametrize(
    ("text", "mb"),
    [("64M", 64), ("65536K", 64), ("1G", 1024), ("134217728", 128), ("256m", 256), ("64MB", 64),
     ("x", None), ("-5M", None), ("1T", None)],
)
def test_mem_megabytes(text, mb):
    assert mem_megabytes(text) == mb


def test_vm_order_must_be_an_integer():
    assert problems('<vm name="v" order="2.5"/>\n') == [
        "c.xml:4: vm 'v': order '2.5' is not an integer"]


@pytest.mark.parametrize(
    ("mgmt", "vms", "message"),
    [
        # /29 holds 8 addresses: two /30 blocks; offset 1 + 2 VMs needs three.
        ('<vm_mgmt type="private" network="198.18.0.0" mask="29" offset="1"/>', 2,
         "<vm_mgmt>: management network 198.18.0.0/29 has room for 2 VMs (a /30 each) but "
         "offset 1 + 2 VMs need 12 addresses"),
        ('<vm_mgmt type="private" network="198.18.0.0" mask="29" offset="0"/>', 2, None),
        ('<vm_mgmt type="private" network="nowhere" mask="24"/>', 1,
         "<vm_mgmt>: network 'nowhere' is not an IPv4 network"),
        ('<vm_mgmt type="none" network="198.18.0.0" mask="30"/>', 5, None),
    ],
)
def test_management_address_space(mgmt, vms, message):
    body = "".join(f'<vm name="v{i}"/>\n' for i in range(vms))
    expected = [] if message is None else [f"c.xml:3: {message}"]
    assert problems(body, mgmt) == expected


def test_uml_switch_is_a_warning_and_does_not_fail_loading():
    body = '<net name="s" mode="uml_switch" sock="/tmp/s.ctl"/>\n'
    assert problems(body) == [
        "c.xml:4: warning: net 's': mode uml_switch is deployed as a bridge (sock is ignored)"]


def test_vm_type_is_checked_for_deployment_only():
    body = '<vm name="d" type="dynamips"/>\n<vm name="u" type="uml"/>\n' \
           '<vm name="c" type="container"/>\n<vm name="n"/>\n'
    message = ("vm 'd': type 'dynamips' cannot be deployed by ediv (supported: uml, container, "
               "or no type for the host's default)")
    assert problems(body) == [f"c.xml:4: warning: {message}"]
    assert problems(body, deployable=True) == [f"c.xml:4: {message}"]


def test_several_errors_are_all_reported_sorted_by_line():
    # The InputError carries the errors; the uml_switch warning is not among them.
    body = """<net name="a" mode="virtual_bridge"/>
<net name="a" mode="uml_switch"/>
<vm name="v">
<mem>big</mem>
<if id="1" net="nope"><mac>zz</mac><ipv4>1.2.3.4.5</ipv4></if>
<route type="ipv4" gw="x">default</route>
</vm>
<vm name="v" order="z"/>
"""
    assert problems(body, '<vm_mgmt type="private" network="198.18.0.0" mask="31"/>') == [
        "c.xml:3: <vm_mgmt>: management network 198.18.0.0/31 has room for 0 VMs (a /30 each) "
        "but offset 0 + 2 VMs need 8 addresses",
        "c.xml:5: net 'a' is declared twice (first at line 4)",
        "c.xml:6: vm 'v': mem 'big' is not a memory size (e.g. 64M, 65536K, 1G)",
        "c.xml:8: vm 'v' interface 1: net 'nope' is not declared",
        "c.xml:8: vm 'v' interface 1: mac 'zz' is not a MAC address (xx:xx:xx:xx:xx:xx)",
        "c.xml:8: vm 'v' interface 1: <ipv4> '1.2.3.4.5' is not an IPv4 address",
        "c.xml:9: vm 'v': route gateway 'x' is not an IPv4 address",
        "c.xml:11: vm 'v': order 'z' is not an integer",
        "c.xml:11: vm 'v' is declared twice (first at line 6)",
    ]


def test_checks_run_on_models_built_in_code():
    s = Scenario(nets=[Net("a", line=1)],
                 vms=[VM("v", interfaces=[Interface(1, "a"), Interface(2, "b", line=7)])],
                 source="code")
    assert [str(d) for d in check(s)] == ["code:7: vm 'v' interface 2: net 'b' is not declared"]


@pytest.mark.parametrize(
    ("text", "family", "prefix"),
    [("24", 4, 24), ("/16", 4, 16), ("255.255.255.0", 4, 24), ("0.0.0.0", 4, 0),
     ("255.255.255.255", 4, 32), ("0.0.0.255", 4, None), ("33", 4, None), ("64", 6, 64),
     ("ffff::", 6, None), ("x", 4, None)],
)
def test_prefix_length(text, family, prefix):
    assert prefix_length(text, family) == prefix


@pytest.mark.parametrize(("body", "global_extra", "message"), [
    ('<net name="p" mode="virtual_bridge" type="ppp"><bw>fast</bw></net>', "",
     "c.xml:4: net 'p': <bw>fast</bw> is not a bandwidth"),
    ('<net name="l" mode="virtual_bridge"><bw>1000000</bw></net>', "",
     "c.xml:4: warning: net 'l': <bw> shapes ppp nets only; ignored here"),
    ('<net name="l" mode="virtual_bridge" vlan="10"/>', "",
     "c.xml:4: warning: net 'l': vlan= applies to external nets only; ignored"),
    ('<net name="l" mode="virtual_bridge" capture_expression="icmp"/>', "",
     "c.xml:4: warning: net 'l': capture_expression/capture_dev without capture_file"),
])
def test_read_but_not_acted_upon_is_said_aloud(body, global_extra, message):
    found = problems(body, global_extra)
    assert sum(p.startswith(message) for p in found) == 1, found  # once, with its line
