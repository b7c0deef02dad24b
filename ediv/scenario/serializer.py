"""Write a scenario model back as VNUML XML.

The output is UTF-8, pretty printed, in the element order of the VNUML DTD, so that it
validates against ``vnuml.xsd``; the root keeps the spelling the model says (``<vnuml>`` with
``<simulation_name>``, or ``<vnx>`` with ``<scenario_name>``). Attributes that are None are
left out; ``parse(to_xml(s))`` gives ``s`` back (up to line numbers and surrounding blanks
of text, which the parser strips).
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from ediv.scenario.model import (
    VM,
    Address,
    Console,
    Exec,
    Filetree,
    Global,
    HostSection,
    Interface,
    Kernel,
    Net,
    Route,
    Scenario,
    User,
    VmDefaults,
    VmMgmt,
)
from ediv.scenario.parser import CANONICAL_NAME_TAG


def to_xml(scenario: Scenario) -> bytes:
    """The scenario as a VNUML document (bytes, UTF-8, with an XML declaration)."""
    root_tag = scenario.root if scenario.root in CANONICAL_NAME_TAG else "vnuml"
    root = etree.Element(root_tag)
    _global(root, scenario.global_, CANONICAL_NAME_TAG[root_tag])
    for net in scenario.nets:
        _net(root, net)
    for vm in scenario.vms:
        _vm(root, vm)
    if scenario.host is not None:
        _host(root, scenario.host)
    etree.indent(root, space="  ")
    body = etree.tostring(root, xml_declaration=False, encoding="UTF-8", pretty_print=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def write(scenario: Scenario, path: str | Path) -> None:
    """Write ``to_xml(scenario)`` to ``path``."""
    Path(path).write_bytes(to_xml(scenario))


# --- building blocks -------------------------------------------------------------------


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None
        ) -> etree._Element:
    elem = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        if value is not None:
            elem.set(key.rstrip("_"), str(value))
    if text is not None:
        elem.text = text
    return elem


def _opt(parent: etree._Element, tag: str, text: str | None) -> None:
    if text is not None:
        _el(parent, tag, text)


def _global(root: etree._Element, g: Global, name_tag: str) -> None:
    elem = _el(root, "global")
    _el(elem, "version", g.version)
    _el(elem, name_tag, g.simulation_name)
    _opt(elem, "ssh_version", g.ssh_version)
    for key in g.ssh_keys:
        _el(elem, "ssh_key", key)
    if g.automac is not None:
        _el(elem, "automac", offset=str(g.automac))
    if g.netconfig:
        _el(elem, "netconfig", stp=g.netconfig.get("stp"), promisc=g.netconfig.get("promisc"))
    if g.vm_mgmt is not None:
        _vm_mgmt(elem, g.vm_mgmt)
    _opt(elem, "tun_device", g.tun_device)
    if g.vm_defaults is not None:
        _vm_defaults(elem, g.vm_defaults)
    for ext in g.extensions:
        _el(elem, "extension", plugin=ext.get("plugin"), conf=ext.get("conf"))
    for tag in ("dynamips_ext", "olive_ext"):
        _opt(elem, tag, g.extra.get(tag))


def _vm_mgmt(parent: etree._Element, m: VmMgmt) -> None:
    elem = _el(parent, "vm_mgmt", type=m.type, network=m.network, mask=str(m.mask),
               offset=str(m.offset))
    if m.mgmt_net is not None:
        _el(elem, "mgmt_net", **m.mgmt_net)
    if m.host_mapping:
        _el(elem, "host_mapping")


def _vm_defaults(parent: etree._Element, d: VmDefaults) -> None:
    elem = _el(parent, "vm_defaults", exec_mode=d.exec_mode)
    _machine_head(elem, d)
    _opt(elem, "display_console", d.extra.get("display_console"))
    _opt(elem, "xterm", d.xterm)
    _machine_tail(elem, d)


def _net(root: etree._Element, n: Net) -> None:
    attrs = {
        "name": n.name, "mode": n.mode, "type": n.type, "external": n.external,
        "vlan": n.vlan, "sock": n.sock, "hub": n.hub, **n.extra,
    }
    elem = etree.SubElement(root, "net")
    for key, value in attrs.items():
        if value is not None:
            elem.set(key, value)
    _opt(elem, "bw", n.bw)


def _vm(root: etree._Element, v: VM) -> None:
    elem = _el(root, "vm", name=v.name, type=v.type or None, subtype=v.subtype, os=v.os,
               order=None if v.order is None else str(v.order), exec_mode=v.exec_mode,
               appliance=v.appliance)
    if v.filesystem is not None:
        _el(elem, "filesystem", v.filesystem.path, type=v.filesystem.type)
    _opt(elem, "dynamips_conf", v.extra.get("dynamips_conf"))
    _opt(elem, "mem", v.mem)
    if v.kernel is not None:
        _kernel(elem, v.kernel)
    _opt(elem, "conf", v.extra.get("conf"))
    _opt(elem, "shell", v.shell)
    _opt(elem, "basedir", v.basedir)
    _opt(elem, "mng_if", v.mng_if)
    for console in v.consoles:
        _console(elem, console)
    _opt(elem, "display_console", v.extra.get("display_console"))
    _opt(elem, "on_boot", v.extra.get("on_boot"))
    _opt(elem, "xterm", v.xterm)
    for interface in v.interfaces:
        _interface(elem, interface)
    _machine_tail(elem, v)
    for ex in v.execs:
        _exec(elem, ex)


def _machine_head(elem: etree._Element, m: VM | VmDefaults) -> None:
    """filesystem, mem, kernel, shell, basedir, mng_if, console* (vm_defaults order)."""
    if m.filesystem is not None:
        _el(elem, "filesystem", m.filesystem.path, type=m.filesystem.type)
    _opt(elem, "mem", m.mem)
    if m.kernel is not None:
        _kernel(elem, m.kernel)
    _opt(elem, "shell", m.shell)
    _opt(elem, "basedir", m.basedir)
    _opt(elem, "mng_if", m.mng_if)
    for console in m.consoles:
        _console(elem, console)


def _machine_tail(elem: etree._Element, m: VM | VmDefaults) -> None:
    """route*, forwarding?, user*, filetree*."""
    for route in m.routes:
        _route(elem, route)
    if m.forwarding is not None:
        _el(elem, "forwarding", type=m.forwarding)
    for user in m.users:
        _user(elem, user)
    for ft in m.filetrees:
        _filetree(elem, ft)


def _kernel(parent: etree._Element, k: Kernel) -> None:
    _el(parent, "kernel", k.path, initrd=k.initrd, devfs=k.devfs, root=k.root,
        modules=k.modules, trace=k.trace)


def _console(parent: etree._Element, c: Console) -> None:
    elem = _el(parent, "console", c.value, id=c.id)
    for key, value in c.attrs.items():
        elem.set(key, value)


def _interface(parent: etree._Element, i: Interface) -> None:
    elem = _el(parent, "if", id=str(i.id), net=i.net, name=i.name)
    _opt(elem, "mac", i.mac)
    _addresses(elem, i.addresses)


def _addresses(parent: etree._Element, addresses: list[Address]) -> None:
    # The DTD wants every <ipv4> before the first <ipv6>; sorted() is stable.
    for a in sorted(addresses, key=lambda a: a.family):
        _el(parent, "ipv4" if a.family == 4 else "ipv6", a.address, mask=a.mask)


def _route(parent: etree._Element, r: Route) -> None:
    _el(parent, "route", r.destination, type=r.type, gw=r.gw)


def _user(parent: etree._Element, u: User) -> None:
    elem = _el(parent, "user", username=u.username, group=u.group)
    for group in u.groups:
        _el(elem, "group", group)
    for key in u.ssh_keys:
        _el(elem, "ssh_key", key)


def _filetree(parent: etree._Element, f: Filetree) -> None:
    _el(parent, "filetree", f.source, root=f.root, seq=f.seq, user=f.user)


def _exec(parent: etree._Element, e: Exec) -> None:
    _el(parent, "exec", e.command, seq=e.seq, type=e.type, mode=e.mode, user=e.user,
        gui=e.gui, ostype=e.ostype)


def _host(root: etree._Element, h: HostSection) -> None:
    elem = _el(root, "host")
    for hif in h.hostifs:
        _addresses(_el(elem, "hostif", net=hif.net), hif.addresses)
    for p in h.physicalifs:
        _el(elem, "physicalif", name=p.name, type=p.type, ip=p.ip, mask=p.mask, gw=p.gw)
    for route in h.routes:
        _route(elem, route)
    if h.forwarding is not None:
        _el(elem, "forwarding", type=h.forwarding)
    for ex in h.execs:
        _exec(elem, ex)
