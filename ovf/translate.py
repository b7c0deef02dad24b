"""OVF envelope -> VNUML ``<vm>`` models (``ediv.scenario.model.VM``) and scenarios.

One VM per VirtualSystem (collections flattened), under the envelope's default deployment
option: memory from the memory item as VNUML writes it ("256M"), one interface per
connected NIC, numbered from 1 as VNUML does (eth0 is the management interface), on the net
``net_map`` gives for the NIC's OVF network (the same name by default), the NIC's MAC
(rasd:Address) when it has one. Disks and properties are turned into files by
``ediv.ovf.importer``; here ``boot_disk`` only says which disk a VM boots.
"""

from __future__ import annotations

import re

from ediv.scenario.model import VM, Global, Interface, Scenario

from . import envelope as m
from .edivsection import apply_interfaces, net_objects
from .inspect import memory_mb
from .requirements import startup_orders

_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


def vm_name(vs: m.VirtualSystem) -> str:
    """A VNUML-safe name from the system's ovf:id (or Name): letters, digits, '_' and '-'."""
    raw = vs.id or vs.name or "vm"
    name = _NOT_NAME.sub("_", raw).strip("_") or "vm"
    return name if name[0].isalpha() else f"vm_{name}"


def to_vms(envelope: m.Envelope, net_map: dict[str, str] | None = None, *,
           vm_type: str = "uml", appliance: str | None = None,
           warnings: list[str] | None = None) -> list[VM]:
    """VMs for every system of ``envelope``; NICs without a network are left out (and
    reported in ``warnings`` when given)."""
    return [vm for _vs, vm in translate_systems(envelope, net_map, vm_type=vm_type,
                                                appliance=appliance, warnings=warnings)]


def translate_systems(envelope: m.Envelope, net_map: dict[str, str] | None = None, *,
                      vm_type: str = "uml", appliance: str | None = None,
                      warnings: list[str] | None = None) -> list[tuple[m.VirtualSystem, VM]]:
    """Like ``to_vms``, each VM paired with the VirtualSystem it comes from."""
    net_map = net_map or {}
    sink: list[str] = warnings if warnings is not None else []
    configuration = envelope.default_configuration()
    out: list[tuple[m.VirtualSystem, VM]] = []
    used: set[str] = set()
    orders = startup_orders(envelope)
    for vs in envelope.systems():
        name = _unique(vm_name(vs), used)
        items = vs.items(configuration)
        mem = memory_mb(vs, items, sink)
        vm = VM(name=name, type=vm_type, mem=f"{mem}M" if mem else None, appliance=appliance,
                order=orders.get(id(vs)))
        ovf_nets: list[str] = []
        boot = boot_disk(envelope, vs, configuration)
        for disk in system_disks(envelope, vs, configuration):
            if disk is not boot:
                ref = envelope.file(disk.file_ref)
                sink.append(f"{name}: data disk {disk.disk_id!r} ("
                            + (f"file {ref.href}" if ref else "blank")
                            + ") is not attached: a VNUML VM has a single filesystem")
        for item in (i for i in items if i.resource_type == m.RT_ETHERNET):
            if not item.connections:
                sink.append(f"{name}: NIC {item.element_name or item.instance_id} has no "
                            "network; left out")
                continue
            ovf_net = item.connections[0]
            mac = item.address if item.address and _MAC.match(item.address) else None
            vm.interfaces.append(Interface(id=len(vm.interfaces) + 1,
                                           net=net_map.get(ovf_net, net_name(ovf_net)),
                                           mac=mac.replace("-", ":").lower() if mac else None))
            ovf_nets.append(ovf_net)
        apply_interfaces(envelope.ediv, vm, ovf_nets)
        out.append((vs, vm))
    return out


def net_name(ovf_network: str) -> str:
    """Default scenario net of an OVF network: the same name, blanks and '/' made '_'
    ("VM Network" -> "VM_Network")."""
    return re.sub(r"[/\s\x00-\x1f\x7f]+", "_", ovf_network).strip("_") or "net"


def boot_disk(envelope: m.Envelope, vs: m.VirtualSystem,
              configuration: str | None = None) -> m.Disk | None:
    """The disk ``vs`` boots: its first disk drive backed by a file of the package (OVF has
    no boot flag on disks; BootDeviceSection is rare and vendor-specific)."""
    return next((d for d in system_disks(envelope, vs, configuration)
                 if d.file_ref and envelope.file(d.file_ref)), None)


def system_disks(envelope: m.Envelope, vs: m.VirtualSystem,
                 configuration: str | None = None) -> list[m.Disk]:
    """The DiskSection disks ``vs``'s items attach (ovf:/disk/ID), in item order."""
    if configuration is None:
        configuration = envelope.default_configuration()
    out: list[m.Disk] = []
    for item in vs.items(configuration):
        for resource in item.host_resources:
            kind, _, ident = resource.removeprefix("ovf:").lstrip("/").partition("/")
            disk = envelope.disk(ident) if kind == "disk" else None
            if disk is not None and disk not in out:
                out.append(disk)
    return out


def to_scenario(vms: list[VM], name: str, *, extra_nets: list[str] = (),
                envelope: m.Envelope | None = None) -> Scenario:
    """A VNUML 1.8 scenario holding ``vms`` and one net per net they use: virtual_bridge
    lan, or as the ediv section of ``envelope`` (a package ediv exported) records it."""
    nets = list(dict.fromkeys([n for vm in vms for n in vm.nets] + list(extra_nets)))
    return Scenario(global_=Global(version="1.8", simulation_name=scenario_name(name)),
                    nets=net_objects(envelope.ediv if envelope else None, nets),
                    vms=list(vms))


def scenario_name(raw: str) -> str:
    """A scenario name from a package name: VNUML-safe like VM names."""
    name = _NOT_NAME.sub("_", raw).strip("_") or "appliance"
    return name if name[0].isalpha() else f"s_{name}"


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate
