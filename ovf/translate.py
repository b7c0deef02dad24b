"""OVF envelope -> VNUML ``<vm>`` models (``ediv.scenario.model.VM``).

One VM per VirtualSystem (collections flattened), under the envelope's default deployment
option: memory from the memory item as VNUML writes it ("256M"), one interface per
connected NIC, numbered from 1 as VNUML does (eth0 is the management interface), on the net
``net_map`` gives for the NIC's OVF network (the same name by default).
"""

from __future__ import annotations

import re

from ediv.scenario.model import VM, Interface

from . import envelope as m
from .inspect import memory_mb

_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


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
    net_map = net_map or {}
    sink: list[str] = warnings if warnings is not None else []
    configuration = envelope.default_configuration()
    vms: list[VM] = []
    used: set[str] = set()
    for vs in envelope.systems():
        name = _unique(vm_name(vs), used)
        items = vs.items(configuration)
        mem = memory_mb(vs, items, sink)
        vm = VM(name=name, type=vm_type, mem=f"{mem}M" if mem else None, appliance=appliance)
        for item in (i for i in items if i.resource_type == m.RT_ETHERNET):
            if not item.connections:
                sink.append(f"{name}: NIC {item.element_name or item.instance_id} has no "
                            "network; left out")
                continue
            ovf_net = item.connections[0]
            vm.interfaces.append(Interface(id=len(vm.interfaces) + 1,
                                           net=net_map.get(ovf_net, ovf_net)))
        vms.append(vm)
    return vms


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate
