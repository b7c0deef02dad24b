"""Splitting: one VNUML sub-scenario per host, plus what each host agent needs to join them.

For every host with VMs the splitter produces:
- a sub-scenario: the global settings, the nets its VMs use, its VMs in VM order, the <host>
  section on the one host the plan gave it; ``simulation_name`` is ``<name>-<host>``; each VM
  carries its ``<vm_defaults>`` (ediv.scenario.defaults), so the sub-scenario has none;
- explicit MAC addresses on every interface that had none, unique across the scenario
  (``02:BB:BB:VV:VV:II``: locally administered, BB = the scenario's MAC base, VV = the VM's
  index in VM order, II = the interface id), so VMs on a spanning net never clash;
- management addressing as EDIV did it: one /30 per VM from the cluster's ``mgmt_network``,
  host end .1, VM end .2; blocks are dealt host by host in cluster order, so each
  sub-scenario's VMs hold consecutive blocks and its ``<vm_mgmt type="private" offset=..>``
  means exactly what VNUML made of it;
- the segments this host takes part in, with its own and its peers' underlay addresses.
Work is O(VMs + interfaces) and the output is deterministic.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ediv.cluster import Cluster
from ediv.errors import PlanError
from ediv.plan import Plan
from ediv.protocol import DeployInfo, MgmtAddr, Segment
from ediv.scenario.defaults import effective_vm, has_mgmt_if
from ediv.scenario.model import VM, Scenario, VmMgmt


@dataclass
class HostPart:
    host: str
    scenario: Scenario
    info: DeployInfo  # deploy.json for the host agent (see docs/agent-protocol.md)
    vms: list[str] = field(default_factory=list)

    @property
    def deploy(self) -> dict:
        """deploy.json as JSON data."""
        return self.info.to_json()


def sub_name(name: str, host: str) -> str:
    return f"{name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}"


def mgmt_blocks(cluster: Cluster, count: int, offset: int = 0) -> list[tuple[str, str]]:
    """(host end, VM end) of ``count`` consecutive /30 blocks from the management network."""
    try:
        net = ipaddress.IPv4Network(
            f"{cluster.mgmt_network}/{cluster.mgmt_network_mask}", strict=False
        )
    except ValueError as exc:
        raise PlanError(f"{cluster.source}: bad management network: {exc}") from None
    needed = 4 * (offset + count)
    if needed > net.num_addresses:
        raise PlanError(
            f"management network {net} holds {net.num_addresses // 4} VMs (one /30 each); "
            f"this scenario needs {offset + count}"
        )
    base = int(net.network_address)
    out = []
    for i in range(offset, offset + count):
        block = base + 4 * i
        out.append(
            (f"{ipaddress.IPv4Address(block + 1)}/30", f"{ipaddress.IPv4Address(block + 2)}/30")
        )
    return out


def mac_for(mac_base: int, vm_index: int, if_id: int) -> str:
    if not 0 <= vm_index < 1 << 16 or not 0 <= if_id < 1 << 8:
        raise PlanError(f"cannot give a MAC to VM #{vm_index} interface {if_id}: out of range")
    raw = [0x02, (mac_base >> 8) & 0xFF, mac_base & 0xFF, vm_index >> 8, vm_index & 0xFF, if_id]
    return ":".join(f"{b:02x}" for b in raw)


def split(
    scenario: Scenario,
    plan: Plan,
    cluster: Cluster,
    *,
    key: str | None = None,
    mac_base: int | None = None,
    mgmt_offset: int = 0,
    absolute_paths: bool = False,
) -> list[HostPart]:
    """Cut ``scenario`` along ``plan``. ``key`` names kernel objects on the hosts (the
    controller gives each running scenario its own); ``mac_base`` and ``mgmt_offset`` keep
    MACs and management blocks apart between scenarios that run at the same time."""
    ordered = scenario.ordered_vms()
    index = {vm.name: i for i, vm in enumerate(ordered)}
    by_name = {vm.name: vm for vm in ordered}
    if mac_base is None:
        mac_base = scenario.global_.automac or 0
    blocks = mgmt_blocks(cluster, len(ordered), mgmt_offset)
    next_block = 0
    hosts = {h.name: h for h in cluster.hosts}
    segments_by_net = {s.net: s for s in plan.segments}
    base = Path(scenario.basedir).resolve()
    defaults = scenario.global_.vm_defaults

    mg = scenario.global_.vm_mgmt
    host_map = host_mapping(scenario) if mg is not None and mg.host_mapping else {}
    parts: list[HostPart] = []
    for host_name, vm_names in plan.hosts.items():
        runs_host_section = plan.host_section == host_name and scenario.host is not None
        if not vm_names and not runs_host_section:
            continue
        host = hosts[host_name]
        vms = [_own_copy(effective_vm(by_name[n], defaults)) for n in vm_names]
        for vm in vms:
            for iface in vm.interfaces:
                if not iface.mac:
                    iface.mac = mac_for(mac_base, index[vm.name], iface.id)
            if absolute_paths:
                _absolutize(vm, base)
        used = {iface.net for vm in vms for iface in vm.interfaces}
        section = copy.deepcopy(scenario.host) if runs_host_section else None
        if section is not None:
            used |= {hi.net for hi in section.hostifs}
        g = copy.deepcopy(scenario.global_)
        g.simulation_name = sub_name(scenario.name, host_name)
        g.vm_defaults = None  # applied to each VM above
        # EDIV forces private management: the VMs of every host are reachable from it.
        g.vm_mgmt = VmMgmt(
            type="private",
            network=cluster.mgmt_network,
            mask=cluster.mgmt_network_mask,
            offset=mgmt_offset + next_block,
        )
        mgmt_type = scenario.global_.vm_mgmt.type if scenario.global_.vm_mgmt else "none"
        mgmt = {vm.name: blocks[next_block + i] for i, vm in enumerate(vms)
                if has_mgmt_if(vm, mgmt_type)}
        next_block += len(vm_names)
        sub = Scenario(
            global_=g,
            nets=[replace(n) for n in scenario.nets if n.name in used],
            vms=vms,
            host=section,
            root=scenario.root,
            source=f"{scenario.source}[{host_name}]",
            basedir=str(base) if absolute_paths else scenario.basedir,
        )
        peers_of = {
            s.net: [hosts[h].address or h for h in s.hosts if h != host_name]
            for s in plan.segments
            if host_name in s.hosts
        }
        info = DeployInfo(
            scenario=g.simulation_name,
            parent=scenario.name,
            host=host_name,
            key=key,
            vm_type=host.vm_type,
            segments=[
                Segment(net=net, kind=segments_by_net[net].kind, id=segments_by_net[net].id,
                        local=host.address or host_name, peers=peers, dev=host.ifname)
                for net, peers in peers_of.items()
            ],
            mgmt={n: MgmtAddr(host=h, vm=v) for n, (h, v) in mgmt.items()},
            hosts=dict(host_map),
        )
        parts.append(HostPart(host=host_name, scenario=sub, info=info, vms=list(vm_names)))
    return parts


def host_mapping(scenario: Scenario) -> dict[str, str]:
    """VNUML's <host_mapping/>: every VM's name, and "host" for the <host> section, to its
    first address on a scenario net (IPv4 before IPv6; the management /30s only reach the
    VM's own host, so they are not used)."""
    def first(addresses) -> str | None:
        for family in (4, 6):
            for a in addresses:
                if a.family == family:
                    return a.address.split("/")[0]
        return None

    out = {}
    for vm in scenario.vms:
        addr = first([a for i in vm.interfaces for a in i.addresses])
        if addr:
            out[vm.name] = addr
    if scenario.host is not None:
        addr = first([a for h in scenario.host.hostifs for a in h.addresses])
        if addr:
            out["host"] = addr
    return out


def _own_copy(vm: VM) -> VM:
    """A copy that owns what the splitter changes (interfaces, filetrees, execs); the rest is
    shared with the original, read-only. deepcopy took 90% of a 10,000-VM split."""
    return replace(
        vm,
        interfaces=[replace(i) for i in vm.interfaces],
        filetrees=[replace(f) for f in vm.filetrees],
        execs=[replace(e) for e in vm.execs],
    )


def _absolutize(vm, base: Path) -> None:
    """Make host-side paths (filetree sources, exec files) absolute so the sub-scenario can be
    written anywhere."""
    for ft in vm.filetrees:
        if not Path(ft.source).is_absolute():
            ft.source = str(base / ft.source)
    for ex in vm.execs:
        if ex.type == "file" and not Path(ex.command).is_absolute():
            ex.command = str(base / ex.command)
