"""The ediv section of exported packages: what OVF has no place for, kept for the way back.

``ediv ovf export`` writes, in the scenario's VirtualSystemCollection::

    <ediv:ScenarioSection ovf:required="false" xmlns:ediv="urn:x-ediv:ovf:1">
      <Info>ediv scenario details (nets, interface addresses)</Info>
      <ediv:Net ediv:name="Net0" ediv:type="ppp" ediv:mode="virtual_bridge"/>
      <ediv:Interface ediv:vm="r1" ediv:id="1" ediv:net="Net0">
        <ediv:Address ediv:family="4" ediv:value="198.18.1.1/24"/>
      </ediv:Interface>
    </ediv:ScenarioSection>

``ovf:required="false"`` lets every other OVF consumer skip it (DSP0243 9.1). The reader
keeps it as ``Envelope.ediv`` and the translator puts net types and interface ids and
addresses back (``apply_interfaces``, ``net_objects``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

if TYPE_CHECKING:  # ediv.scenario loads xmlschema: not at inspect's start-up
    from ediv.scenario.model import VM, Net, Scenario

EDIV_OVF = "urn:x-ediv:ovf:1"
SECTION = "ScenarioSection"


@dataclass
class EdivInterface:
    id: int
    net: str
    addresses: list[tuple[int, str, str | None]] = field(default_factory=list)  # family..


@dataclass
class EdivScenario:
    nets: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> type, mode
    interfaces: dict[str, list[EdivInterface]] = field(default_factory=dict)  # per VM


def _q(local: str) -> str:
    return f"{{{EDIV_OVF}}}{local}"


def build_section(parent: etree._Element, ovf_ns: str, scenario: Scenario) -> etree._Element:
    """Append the section for ``scenario`` to ``parent`` (an OVF element)."""
    section = etree.SubElement(parent, _q(SECTION), nsmap={"ediv": EDIV_OVF})
    section.set(f"{{{ovf_ns}}}required", "false")
    etree.SubElement(section, f"{{{ovf_ns}}}Info").text = \
        "ediv scenario details (net types, interface addresses); other tools may skip it"
    for net in scenario.nets:
        el = etree.SubElement(section, _q("Net"))
        el.set(_q("name"), net.name)
        el.set(_q("type"), net.type)
        el.set(_q("mode"), net.mode)
    for vm in scenario.vms:
        for iface in vm.interfaces:
            el = etree.SubElement(section, _q("Interface"))
            el.set(_q("vm"), vm.name)
            el.set(_q("id"), str(iface.id))
            el.set(_q("net"), iface.net)
            for addr in iface.addresses:
                a = etree.SubElement(el, _q("Address"))
                a.set(_q("family"), str(addr.family))
                a.set(_q("value"), addr.address)
                if addr.mask:
                    a.set(_q("mask"), addr.mask)
    return section


def parse_section(el: etree._Element) -> EdivScenario:
    """The section's content; malformed entries are skipped (it is advisory)."""
    out = EdivScenario()
    for child in el:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        if local == "Net" and child.get(_q("name")):
            out.nets[child.get(_q("name"))] = {
                k: child.get(_q(k)) for k in ("type", "mode") if child.get(_q(k))}
        elif local == "Interface" and (child.get(_q("id")) or "").isdigit() \
                and child.get(_q("vm")) and child.get(_q("net")):
            addresses = [(int(a.get(_q("family"))), a.get(_q("value")), a.get(_q("mask")))
                         for a in child.iter(_q("Address"))
                         if a.get(_q("family")) in ("4", "6") and a.get(_q("value"))]
            out.interfaces.setdefault(child.get(_q("vm")), []).append(
                EdivInterface(int(child.get(_q("id"))), child.get(_q("net")), addresses))
    return out


def apply_interfaces(info: EdivScenario | None, vm: VM, ovf_nets: list[str]) -> None:
    """Give ``vm``'s interfaces (one per package NIC, OVF network ``ovf_nets[k]``) the ids
    and addresses the section records, when it describes the same NICs."""
    from ediv.scenario.model import Address

    recorded = (info.interfaces.get(vm.name) if info else None) or []
    if len(recorded) != len(vm.interfaces) or \
            any(r.net != n for r, n in zip(recorded, ovf_nets, strict=True)):
        return
    for iface, rec in zip(vm.interfaces, recorded, strict=True):
        iface.id = rec.id
        iface.addresses = [Address(family, value, mask) for family, value, mask in rec.addresses]


def net_objects(info: EdivScenario | None, names: list[str]) -> list[Net]:
    """``Net`` elements for ``names``, with the type and mode the section records."""
    from ediv.scenario.model import Net

    out = []
    for name in names:
        attrs = (info.nets.get(name) if info else None) or {}
        net = Net(name=name)
        if attrs.get("type") in ("lan", "ppp"):
            net.type = attrs["type"]
        if attrs.get("mode") in ("virtual_bridge", "uml_switch"):
            net.mode = attrs["mode"]
        out.append(net)
    return out

