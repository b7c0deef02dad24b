"""Semantic checks of a scenario model: what the XSD cannot say.

``check(scenario, deployable=False)`` returns every problem at once, as diagnostics
(``file:line: message``), errors and warnings (``severity="warning"``: tolerated, but the user
should know), sorted by line. All rules are O(size of the scenario).

Rules (errors unless noted):
- VM names and net names are unique; names are usable as file and device names (no ``/``,
  no blanks or control characters, not ``.``/``..``);
- every ``<if net=>`` and ``<hostif net=>`` names a declared net; an ``<if>`` id appears once
  per VM;
- a ``type="ppp"`` net has exactly two ends (VM interfaces plus host interfaces);
- addresses: ``<ipv4>`` is ``a.b.c.d`` or ``a.b.c.d/nn``, its mask a prefix length (``24``,
  ``/24``) or a dotted netmask; ``<ipv6>`` is an IPv6 address with an optional ``/nn``, its mask
  a prefix length; when both a ``/nn`` and a mask are given they must agree;
- routes: the destination is ``default`` or an address/prefix of the route's family, the
  gateway an address of that family; ``<physicalif>`` ip/mask/gw likewise;
- ``<if id>`` is between 0 and 1679615 (what fits an interface name);
- a route has a gateway;
- ``<filetree>`` and ``<exec type="file">`` paths do not leave the scenario's directory
  (``..``); absolute paths are checked at deploy time against the admin's allowed directories;
- with ``deployable=True``, ``<physicalif>`` is an error: ``ediv-host`` never reconfigures a
  host's physical interfaces;
- ``<mac>`` is six hexadecimal pairs separated by ``:`` and not a multicast address;
- ``<mem>``: a positive number with an optional unit K, M or G (``65536K``, ``64M``, ``1G``);
  a bare number is bytes, as UML's ``mem=`` (where VNUML passed the value) reads it, so a
  bare number below 1 MiB gets a warning (``64`` is 64 bytes; ``64M`` was meant);
- ``<vm_mgmt type="private">``: the management network is an IPv4 network and it is large
  enough. ediv gives each VM a /30 (EDIV's rule: host end .1, VM end .2), VM *i* (0-based,
  in VM order) taking block ``offset + i``; so ``2**(32 - mask)`` must hold
  ``4 * (offset + number of VMs)`` addresses;
- ``vm@type``: VNUML 1.9x files carry types such as ``libvirt`` or ``dynamips``; the model
  keeps them. With ``deployable=True`` (what ``ediv validate`` and deployment use) a type
  other than ``uml``, ``container`` or empty (the host's default driver) is an error;
  otherwise it is a warning;
- warning: ``mode="uml_switch"`` nets are deployed as bridges (``sock`` is ignored);
- ``<bw>``: bits per second (k/M/G suffixes accepted), at least 8000; a warning on a net that
  is not ppp; ``vlan=`` without ``external=`` and capture options without ``capture_file``:
  warnings;
- warnings for what ediv reads but does not act upon yet (kernel ``modules``/``initrd``): see
  docs/vnuml-elements.md.

The checks assume the document already went through the XSD: a name or reference that is
empty was reported there (a missing required attribute) and is not reported again here.
Non-numbers in numeric attributes (vm@order, if@id, ...) are reported by the parser.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import PurePosixPath

from ediv.errors import Diagnostic
from ediv.scenario.defaults import has_mgmt_if
from ediv.scenario.model import VM_TYPES, Address, Route, Scenario

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_MEM = re.compile(r"^(\d+)\s*([KkMmGg]?)[Bb]?$")
_UNSAFE_NAME = re.compile(r"[/\s\x00-\x1f\x7f]")
_MEM_FACTOR = {"": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1.0, "g": 1024.0}
MAX_IF_ID = 36**4 - 1  # the same bound as ediv.protocol.MAX_IF_ID (agent interface names)


MAX_MEM_MB = 2**20 * 16  # 16 TiB: beyond any host; larger values are typos or overflows


def mem_megabytes(value: str) -> float | None:
    """``<mem>`` in MiB: ``64M`` -> 64, ``65536K`` -> 64, ``1G`` -> 1024, ``67108864`` -> 64
    (a bare number is bytes, as UML reads ``mem=``); None when it is not a memory size."""
    m = _MEM.match(value.strip())
    if m is None:
        return None
    return int(m.group(1)) * _MEM_FACTOR[m.group(2).lower()]


def check(scenario: Scenario, *, deployable: bool = False) -> list[Diagnostic]:
    """Every semantic problem of ``scenario`` (errors and warnings), sorted by line."""
    c = _Checker(scenario, deployable)
    c.run()
    return sorted(c.out, key=lambda d: d.line)


class _Checker:
    def __init__(self, scenario: Scenario, deployable: bool):
        self.s = scenario
        self.deployable = deployable
        self.out: list[Diagnostic] = []

    def error(self, line: int, message: str) -> None:
        self.out.append(Diagnostic(self.s.source, line, message))

    def warning(self, line: int, message: str) -> None:
        self.out.append(Diagnostic(self.s.source, line, message, "warning"))

    def run(self) -> None:
        self.names()
        self.nets()
        self.not_supported()
        self.vms()
        self.host()
        self.ppp_ends()
        self.vm_mgmt()
        if self.s.global_.vm_defaults is not None:
            d = self.s.global_.vm_defaults
            self.mem(d.mem, d.line, "<vm_defaults>")
            for r in d.routes:
                self.route(r, "<vm_defaults>")

    # --- names ---------------------------------------------------------------------

    def names(self) -> None:
        g = self.s.global_
        if g.simulation_name:
            self.safe_name(g.simulation_name, g.line, "scenario name")
        for kind, items in (("net", self.s.nets), ("vm", self.s.vms)):
            seen: dict[str, int] = {}
            for item in items:
                if not item.name:
                    continue
                self.safe_name(item.name, item.line, f"{kind} name")
                if item.name in seen:
                    self.error(item.line, f"{kind} {item.name!r} is declared twice (first at "
                                          f"line {seen[item.name]})")
                else:
                    seen[item.name] = item.line

    def safe_name(self, name: str, line: int, what: str) -> None:
        if _UNSAFE_NAME.search(name) or name in (".", ".."):
            self.error(line, f"{what} {name!r} cannot be used: no '/', blanks or control "
                             "characters, not '.' or '..'")

    # --- nets ----------------------------------------------------------------------

    def nets(self) -> None:
        for n in self.s.nets:
            what = f"net {n.name!r}"
            if n.mode == "uml_switch":
                self.warning(n.line, f"{what}: mode uml_switch is deployed as a bridge"
                             + (" (sock is ignored)" if n.sock else ""))
            if n.bw is not None:
                try:
                    bandwidth_bps(n.bw)
                except ValueError as e:
                    self.error(n.line, f"{what}: {e}")
                if n.type != "ppp":
                    self.warning(n.line, f"{what}: <bw> shapes ppp nets only; ignored here")
            if n.vlan is not None and not n.external:
                self.warning(n.line, f"{what}: vlan= applies to external nets only; ignored")
            if "capture_file" not in n.extra and any(k in n.extra for k in (
                    "capture_expression", "capture_dev")):
                self.warning(n.line, f"{what}: capture_expression/capture_dev without "
                             "capture_file; nothing is captured")

    def not_supported(self) -> None:
        """Elements ediv reads but does not act upon yet: said once each, never silently."""
        g = self.s.global_
        owners = [("<vm_defaults>", g.vm_defaults)] if g.vm_defaults else []
        owners += [(f"vm {v.name!r}", v) for v in self.s.vms]
        for what, owner in owners:
            k = owner.kernel
            if k is not None and (k.modules or k.initrd):
                self.warning(k.line, f"{what}: <kernel> modules=/initrd= are ignored")

    def ppp_ends(self) -> None:
        ends: Counter[str] = Counter()
        for v in self.s.vms:
            for i in v.interfaces:
                ends[i.net] += 1
        if self.s.host is not None:
            for h in self.s.host.hostifs:
                ends[h.net] += 1
        for n in self.s.nets:
            if n.type == "ppp" and ends[n.name] != 2:
                self.error(n.line, f"ppp net {n.name!r} has {ends[n.name]} end"
                                   f"{'' if ends[n.name] == 1 else 's'}; a ppp net needs "
                                   "exactly two")

    # --- vms -----------------------------------------------------------------------

    def vms(self) -> None:
        nets = {n.name for n in self.s.nets}
        mgmt = self.s.global_.vm_mgmt.type if self.s.global_.vm_mgmt else "none"
        for v in self.s.vms:
            what = f"vm {v.name!r}"
            if mgmt != "none" and has_mgmt_if(v, mgmt, self.s.global_.vm_defaults):
                zero = next((i for i in v.interfaces if i.id == 0), None)
                if zero is not None:
                    self.error(zero.line, f"{what} interface 0: eth0 is the management interface "
                               f"(vm_mgmt type={mgmt}); use another id, or <mng_if>no</mng_if>")
            if v.type and v.type not in VM_TYPES:
                msg = (f"{what}: type {v.type!r} cannot be deployed by ediv (supported: "
                       f"{', '.join(VM_TYPES)}, or no type for the host's default)")
                (self.error if self.deployable else self.warning)(v.line, msg)
            self.mem(v.mem, v.line, what)
            seen_ids: dict[int, int] = {}
            for i in v.interfaces:
                where = f"{what} interface {i.id}"
                if not 0 <= i.id <= MAX_IF_ID:
                    self.error(i.line, f"{where}: id must be between 0 and {MAX_IF_ID}")
                if i.id in seen_ids:
                    self.error(i.line, f"{where}: id {i.id} is used twice in this vm (first at "
                                       f"line {seen_ids[i.id]})")
                else:
                    seen_ids[i.id] = i.line
                if i.net and i.net not in nets:
                    self.error(i.line, f"{where}: net {i.net!r} is not declared")
                if i.mac is not None:
                    self.mac(i.mac, i.line, where)
                for a in i.addresses:
                    self.address(a, where)
            for r in v.routes:
                self.route(r, what)
            for ft in v.filetrees:
                self.file_ref(ft.source, ft.line, f"{what} <filetree>")
            for ex in v.execs:
                if ex.type == "file":
                    self.file_ref(ex.command, ex.line, f"{what} <exec type=\"file\">")

    def file_ref(self, path: str, line: int, where: str) -> None:
        if ".." in PurePosixPath(path.strip()).parts:
            self.error(line, f"{where}: path {path!r} leaves the scenario directory ('..'); "
                             "use a path below it")

    def mem(self, mem: str | None, line: int, what: str) -> None:
        if mem is None:
            return
        value = mem_megabytes(mem)
        if value is None:
            self.error(line, f"{what}: mem {mem!r} is not a memory size (e.g. 64M, 65536K, 1G)")
        elif value <= 0:
            self.error(line, f"{what}: mem {mem!r} must be more than zero")
        elif value > MAX_MEM_MB:
            self.error(line, f"{what}: mem {mem!r} is more than {MAX_MEM_MB // 2**20} TiB: "
                       "not a memory size a VM can have")
        elif value < 1 and mem.strip().isdigit():
            self.warning(line, f"{what}: mem {mem!r} is {mem} bytes (a bare number is bytes, as "
                         f"UML reads it); write {mem}M for megabytes")

    def mac(self, mac: str, line: int, where: str) -> None:
        if not _MAC.match(mac):
            self.error(line, f"{where}: mac {mac!r} is not a MAC address (xx:xx:xx:xx:xx:xx)")
        elif int(mac[:2], 16) & 1:
            self.error(line, f"{where}: mac {mac!r} is a multicast address")

    # --- addresses -----------------------------------------------------------------

    def address(self, a: Address, where: str) -> None:
        tag = f"<ipv{a.family}>"
        text, _, prefix = a.address.partition("/")
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            self.error(a.line, f"{where}: {tag} {a.address!r} is not an IPv{a.family} address")
            return
        if addr.version != a.family:
            self.error(a.line, f"{where}: {tag} {a.address!r} is not an IPv{a.family} address")
            return
        bits = 32 if a.family == 4 else 128
        plen = None
        if prefix:
            plen = prefix_length(prefix, a.family)
            if plen is None:
                self.error(a.line, f"{where}: {tag} {a.address!r}: prefix /{prefix} is not "
                                   f"between 0 and {bits}")
                return
        if a.mask is not None:
            mlen = prefix_length(a.mask, a.family)
            if mlen is None:
                kind = "a prefix length or dotted netmask" if a.family == 4 else "a prefix length"
                self.error(a.line, f"{where}: {tag} mask {a.mask!r} is not {kind}")
            elif plen is not None and plen != mlen:
                self.error(a.line, f"{where}: {tag} {a.address!r}: prefix /{plen} and mask "
                                   f"{a.mask!r} disagree")

    def route(self, r: Route, what: str) -> None:
        family = 6 if r.type == "ipv6" else 4
        dest = r.destination
        if dest != "default":
            try:
                net = ipaddress.ip_network(dest, strict=False)
            except ValueError:
                net = None
            if net is None or net.version != family:
                self.error(r.line, f"{what}: route destination {dest!r} is neither 'default' "
                                   f"nor an IPv{family} address/prefix")
        if not r.gw.strip():
            self.error(r.line, f"{what}: route to {dest!r} has no gateway")
        else:
            try:
                gw = ipaddress.ip_address(r.gw)
            except ValueError:
                gw = None
            if gw is None or gw.version != family:
                self.error(r.line, f"{what}: route gateway {r.gw!r} is not an IPv{family} address")

    # --- host ----------------------------------------------------------------------

    def host(self) -> None:
        h = self.s.host
        if h is None:
            return
        nets = {n.name for n in self.s.nets}
        for hif in h.hostifs:
            where = f"<hostif net={hif.net!r}>"
            if hif.net and hif.net not in nets:
                self.error(hif.line, f"{where}: net {hif.net!r} is not declared")
            for a in hif.addresses:
                self.address(a, where)
        for p in h.physicalifs:
            family = 6 if p.type == "ipv6" else 4
            where = f"<physicalif name={p.name!r}>"
            if self.deployable:
                self.error(p.line, f"{where}: ediv-host does not reconfigure a host's physical "
                                   "interfaces (use net@external, which needs the host's "
                                   "allow_external)")
            for label, value in (("ip", p.ip), ("gw", p.gw)):
                if value:
                    self.address(Address(family, value, line=p.line), f"{where} {label}")
            if p.mask is not None and prefix_length(p.mask, family) is None:
                self.error(p.line, f"{where}: mask {p.mask!r} is not a valid mask")
        for r in h.routes:
            self.route(r, "<host>")
        for ex in h.execs:
            if ex.type == "file":
                self.file_ref(ex.command, ex.line, "<host> <exec type=\"file\">")

    # --- management network --------------------------------------------------------

    def vm_mgmt(self) -> None:
        m = self.s.global_.vm_mgmt
        if m is None or m.type != "private":
            return
        if not 0 <= m.mask <= 32:
            self.error(m.line, f"<vm_mgmt>: mask {m.mask} is not between 0 and 32")
            return
        try:
            net = ipaddress.IPv4Network(f"{m.network}/{m.mask}", strict=False)
        except ValueError:
            self.error(m.line, f"<vm_mgmt>: network {m.network!r} is not an IPv4 network")
            return
        needed = 4 * (m.offset + len(self.s.vms))
        if needed > net.num_addresses:
            self.error(m.line, f"<vm_mgmt>: management network {net} has room for "
                               f"{net.num_addresses // 4} VMs (a /30 each) but offset "
                               f"{m.offset} + {len(self.s.vms)} VMs need "
                               f"{needed} addresses")


def bandwidth_bps(text: str) -> int:
    """VNUML's <bw>: bits per second, as a number (an optional k/M/G suffix is accepted)."""
    t = text.strip().lower().removesuffix("bps").removesuffix("bit")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    digits = t[:-1] if scale != 1 else t
    if not digits.isdigit() or int(digits) * scale < 8000:
        raise ValueError(f"<bw>{text}</bw> is not a bandwidth of at least 8000 bits per second")
    return int(digits) * scale


def prefix_length(text: str, family: int = 4) -> int | None:
    """Prefix length from "24", "/24" or (IPv4) a netmask "255.255.255.0"; None when invalid."""
    value = text.strip().lstrip("/")
    bits = 32 if family == 4 else 128
    if value.isdigit():
        n = int(value)
        return n if 0 <= n <= bits else None
    if family != 4:
        return None
    try:
        mask = int(ipaddress.IPv4Address(value))
    except ValueError:
        return None
    host_bits = ~mask & 0xFFFFFFFF
    if host_bits & (host_bits + 1):  # ones must be contiguous from the left
        return None
    return 32 - host_bits.bit_length()
