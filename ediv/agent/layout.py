"""From a scenario + deploy.json to the concrete things this host will create.

Pure (no kernel access): names, addresses, MTUs, drivers, all checked up front so a bad
scenario is refused before anything exists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ediv.agent import naming
from ediv.agent.bundle import DeployInfo, Segment
from ediv.agent.commands import VXLAN_OVERHEAD
from ediv.errors import Diagnostic, InputError
from ediv.scenario.checks import bandwidth_bps
from ediv.scenario.defaults import effective_vm
from ediv.scenario.model import VM, Address, Exec, Filetree, Net, Route, Scenario

MGMT_IFNAME = "eth0"


@dataclass
class IfLayout:
    id: int
    inside: str  # name inside the VM (eth<id>)
    host: str  # name of the host-side link (veth end or tap)
    net: str | None  # None for the management link
    bridge: str | None
    mac: str | None
    addresses: list[str]  # CIDRs inside the VM
    mtu: int | None = None
    host_addresses: list[str] = field(default_factory=list)  # on the host end (management)


@dataclass
class RouteLayout:
    dest: str  # CIDR or "default"
    gw: str
    family: int


@dataclass
class VmLayout:
    name: str
    index: int
    driver: str
    hostname: str
    netns: str
    interfaces: list[IfLayout]
    mgmt: IfLayout | None
    routes: list[RouteLayout]
    forward4: bool
    forward6: bool
    vm: VM

    @property
    def all_interfaces(self) -> list[IfLayout]:
        return ([self.mgmt] if self.mgmt else []) + self.interfaces

    def filetrees(self, seq: str) -> list[Filetree]:
        return [f for f in self.vm.filetrees if f.seq == seq]

    def execs(self, seq: str) -> list[Exec]:
        return [e for e in self.vm.execs if e.seq == seq]


@dataclass
class NetLayout:
    name: str
    index: int
    bridge: str
    type: str
    mode: str
    mtu: int | None
    external: str | None
    segment: Segment | None
    segment_link: str | None
    stp: bool = False  # <netconfig stp="on">: spanning tree on the bridge
    hub: bool = False  # net@hub="yes": the bridge forgets MACs at once (floods like a hub)
    bw: int | None = None  # <bw> of a ppp net, bits/s: host-side ports shaped to it
    external_vlan: int | None = None  # net@vlan with net@external: an 802.1q subinterface
    capture: Capture | None = None  # net@capture_file: tcpdump on the bridge

    @property
    def external_link(self) -> str | None:
        """The host link put on the bridge: the external interface, or its VLAN subinterface."""
        if self.external and self.external_vlan is not None:
            return f"{self.external}.{self.external_vlan}"
        return self.external


@dataclass
class Capture:
    """tcpdump of one net: ``file`` is a bare name, written under the agent's capture_dir."""

    file: str
    expression: str | None = None
    dev: str | None = None  # capture_dev: another host interface (needs allow_external)


@dataclass
class HostLayout:
    key: str
    scenario: str
    nets: dict[str, NetLayout]
    vms: list[VmLayout]
    host_addrs: list[tuple[str, str]] = field(default_factory=list)  # (bridge, cidr)
    host_routes: list[RouteLayout] = field(default_factory=list)
    host_forwarding: str | None = None
    host_execs: list[Exec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    host_map: dict[str, str] = field(default_factory=dict)  # <host_mapping/>: name -> address
    root_keys: list[str] = field(default_factory=list)  # <global><ssh_key> bundle members

    def vm(self, name: str) -> VmLayout | None:
        return next((v for v in self.vms if v.name == name), None)

    def links(self) -> list[str]:
        """Every host interface name this layout creates."""
        out = [n.bridge for n in self.nets.values()]
        out += [n.segment_link for n in self.nets.values() if n.segment_link]
        out += [n.external_link for n in self.nets.values() if n.external_vlan is not None]
        out += [i.host for v in self.vms for i in v.all_interfaces]
        return out


def _prefix_of(mask: str | None, family: int) -> int:
    if mask is None or mask == "":
        return 24 if family == 4 else 64
    mask = mask.strip().lstrip("/")
    if mask.isdigit():
        return int(mask)
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


def address_cidr(addr: Address) -> str:
    """``Address`` -> "a.b.c.d/p" (mask as written: dotted, prefix, or "/p" in the address)."""
    text = addr.address.strip()
    if "/" not in text:
        text = f"{text}/{_prefix_of(addr.mask, addr.family)}"
    iface = ipaddress.ip_interface(text)
    if iface.version != addr.family:
        raise ValueError(f"{addr.address} is not IPv{addr.family}")
    return str(iface)


def route_layout(r: Route) -> RouteLayout:
    family = 6 if r.type == "ipv6" else 4
    gw = ipaddress.ip_address(r.gw.strip())
    if gw.version != family:
        raise ValueError(f"gateway {r.gw} is not IPv{family}")
    dest = r.destination.strip()
    if dest != "default":
        net = ipaddress.ip_network(dest, strict=False)
        if net.version != family:
            raise ValueError(f"destination {dest} is not IPv{family}")
        dest = str(net)
    return RouteLayout(dest, str(gw), family)


def _mac(mac: str | None) -> str | None:
    if mac is None:
        return None
    parts = mac.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise ValueError(f"bad MAC address {mac!r}")
    if int(parts[0], 16) & 1:
        raise ValueError(f"MAC {mac} is a multicast address")
    return ":".join(p.zfill(2) for p in parts)


def _automac(offset: int, vm_index: int, if_id: int) -> str:
    return f"fe:fd:{(offset >> 8) & 255:02x}:{offset & 255:02x}:{(vm_index + 1) % 256:02x}:" \
           f"{if_id % 256:02x}"


def _forwarding(value: str | None) -> tuple[bool, bool]:
    if value is None:
        return False, False
    value = value.strip().lower() or "ip"
    return value in ("ip", "ipv4", "yes", "true", "1"), value in ("ip", "ipv6", "yes", "true", "1")


def build_layout(scenario: Scenario, info: DeployInfo, *,
                 underlay_mtu: Callable[[str | None], int] = lambda dev: 1500,
                 known_drivers: tuple[str, ...] = ("container", "uml")) -> HostLayout:
    """Plan every name and address; raise InputError listing all problems found."""
    key = naming.check_key(info.key)
    diags: list[Diagnostic] = []
    src = scenario.source

    def bad(line: int, msg: str) -> None:
        diags.append(Diagnostic(src, line, msg))

    layout = HostLayout(key, info.scenario, {}, [], host_map=dict(info.hosts),
                        root_keys=list(scenario.global_.ssh_keys))
    seg_by_net = {s.net: s for s in info.segments}
    for s in info.segments:
        if scenario.net(s.net) is None:
            diags.append(Diagnostic("deploy.json", 0, f"segment for unknown net {s.net!r}"))
    for idx, net in enumerate(scenario.nets):
        _add_net(layout, net, idx, seg_by_net.get(net.name), underlay_mtu, bad)
        _net_options(layout.nets.get(net.name), net, scenario.global_.netconfig, bad)
    ends = {name: 0 for name in layout.nets}
    defaults = scenario.global_.vm_defaults
    automac = scenario.global_.automac
    for idx, vm in enumerate(scenario.ordered_vms()):
        driver = vm.type or info.vm_type or "container"
        if driver not in known_drivers:
            bad(vm.line, f"vm {vm.name}: unknown type {driver!r} (drivers: "
                         f"{', '.join(known_drivers)})")
        vm = effective_vm(vm, defaults)
        try:
            netns = naming.netns_name(key, idx)
            mgmt = None
            if vm.name in info.mgmt:
                m = info.mgmt[vm.name]
                mgmt = IfLayout(-1, MGMT_IFNAME, naming.mgmt_name(key, idx), None, None, None,
                                [m.vm], host_addresses=[m.host])
            ifaces: list[IfLayout] = []
            seen: set[str] = {MGMT_IFNAME} if mgmt else set()
            for itf in vm.interfaces:
                inside = f"eth{itf.id}"
                if inside in seen:
                    bad(itf.line, f"vm {vm.name}: interface name clash: {inside} is used twice"
                        + (" (eth0 is the management interface)" if inside == MGMT_IFNAME
                           and mgmt else ""))
                    continue
                seen.add(inside)
                net_l = layout.nets.get(itf.net)
                if net_l is None:
                    bad(itf.line, f"vm {vm.name}: interface {itf.id} on unknown net {itf.net!r}")
                    continue
                ends[itf.net] += 1
                hostname = (naming.tap_name if driver == "uml" else naming.veth_name)(
                    key, idx, itf.id)
                addrs = []
                for a in itf.addresses:
                    try:
                        addrs.append(address_cidr(a))
                    except ValueError as e:
                        bad(a.line or itf.line, f"vm {vm.name}: bad address: {e}")
                try:
                    mac = _mac(itf.mac)
                except ValueError as e:
                    bad(itf.line, f"vm {vm.name}: {e}")
                    mac = None
                if mac is None and automac is not None:
                    mac = _automac(automac, idx, itf.id)
                ifaces.append(IfLayout(itf.id, inside, hostname, itf.net, net_l.bridge, mac,
                                       addrs, net_l.mtu))
            routes = []
            for r in vm.routes:
                try:
                    routes.append(route_layout(r))
                except ValueError as e:
                    bad(r.line, f"vm {vm.name}: bad route: {e}")
            f4, f6 = _forwarding(vm.forwarding)
            layout.vms.append(VmLayout(vm.name, idx, driver, vm.name[:64], netns, ifaces, mgmt,
                                       routes, f4, f6, vm))
        except InputError as e:
            diags.extend(Diagnostic(src, vm.line, f"vm {vm.name}: {d.message}")
                         for d in e.diagnostics)
    for name, net_l in layout.nets.items():
        if net_l.type == "ppp":
            total = ends[name] + (1 if net_l.segment else 0)
            if total > 2:
                bad(scenario.net(name).line, f"ppp net {name} has {total} ends (at most 2)")
    _add_host(layout, scenario, bad)
    if diags:
        raise InputError(diags)
    return layout


def _add_net(layout: HostLayout, net: Net, idx: int, seg: Segment | None,
             underlay_mtu: Callable[[str | None], int], bad: Callable[[int, str], None]) -> None:
    key = layout.key
    try:
        bridge = naming.bridge_name(key, idx)
        seg_link = None
        mtu = None
        if seg is not None:
            if seg.kind == "vxlan":
                seg_link = naming.vxlan_name(key, idx)
                mtu = underlay_mtu(seg.dev) - VXLAN_OVERHEAD
            else:
                seg_link = naming.vlan_name(key, idx)
    except InputError as e:
        for d in e.diagnostics:
            bad(net.line, d.message)
        return
    if net.mode == "uml_switch":
        layout.warnings.append(f"net {net.name}: uml_switch mode is emulated with a Linux bridge")
    layout.nets[net.name] = NetLayout(net.name, idx, bridge, net.type, net.mode, mtu,
                                      net.external, seg, seg_link)


def _net_options(n: NetLayout | None, net: Net, netconfig: dict[str, str],
                 bad: Callable[[int, str], None]) -> None:
    """The VNUML net settings a bridge carries: stp, hub, ppp bandwidth, external VLAN,
    capture (each checked here, so a bad value refuses the deploy before anything runs)."""
    if n is None:
        return
    n.stp = (netconfig.get("stp") or "").lower() in ("on", "yes", "true", "1")
    n.hub = (net.hub or "").lower() in ("yes", "on", "true", "1")
    if net.bw is not None:
        try:
            n.bw = bandwidth_bps(net.bw)
        except ValueError as e:
            bad(net.line, f"net {net.name}: {e}")
    if net.vlan is not None and net.external:
        if not net.vlan.isdigit() or not 1 <= int(net.vlan) <= 4094:
            bad(net.line, f"net {net.name}: vlan={net.vlan!r} is not a VLAN id (1-4094)")
        else:
            n.external_vlan = int(net.vlan)
            if len(n.external_link) > 15:
                bad(net.line, f"net {net.name}: VLAN interface name {n.external_link} is longer "
                              "than 15 characters")
    file = net.extra.get("capture_file")
    if file is not None:
        name = Path(file).name
        if not name or name in (".", ".."):
            bad(net.line, f"net {net.name}: capture_file={file!r} names no file")
        else:
            n.capture = Capture(name, net.extra.get("capture_expression"),
                                net.extra.get("capture_dev"))


def _add_host(layout: HostLayout, scenario: Scenario, bad: Callable[[int, str], None]) -> None:
    host = scenario.host
    if host is None:
        return
    for hif in host.hostifs:
        net_l = layout.nets.get(hif.net)
        if net_l is None:
            bad(hif.line, f"host: hostif on unknown net {hif.net!r}")
            continue
        for a in hif.addresses:
            try:
                layout.host_addrs.append((net_l.bridge, address_cidr(a)))
            except ValueError as e:
                bad(a.line or hif.line, f"host: bad address: {e}")
    for r in host.routes:
        try:
            layout.host_routes.append(route_layout(r))
        except ValueError as e:
            bad(r.line, f"host: bad route: {e}")
    layout.host_forwarding = host.forwarding
    layout.host_execs = list(host.execs)
    for p in host.physicalifs:
        bad(p.line, f"host: physicalif {p.name}: ediv-host does not reconfigure the host's "
                    "physical interfaces")
