"""Resource pools, allocation capabilities and virtual devices (DSP1041, DSP1043, DSP1057).

- Pools: one primordial pool per host and resource kind (``POOL_KINDS``): processors
  (Capacity max_vhost: one virtual processor per VM), memory (Capacity cluster.conf mem, MB),
  Ethernet connections (Capacity NULL) and root filesystems (Capacity max_vhost); a
  max_vhost of 0 (no limit) is a NULL Capacity. Reserved
  is what the VMs placed on the host (the ``vms`` rows with that host) take: one processor
  and one filesystem each, their memory, their interfaces.
- Allocation capabilities: one per pool, with a Default, Minimum, Maximum and Increment RASD
  (instances of the RASD classes, InstanceID ``ediv:alloccaps:HOST:KIND:ROLE``).
- Devices: per VM one EDIV_Processor, EDIV_Memory, one EDIV_NetworkPort per <if> and an
  EDIV_LogicalDisk when it has a filesystem; DeviceID = the part of the RASD it comes from
  (cpu, mem, ifN, disk), so device <-> RASD <-> pool are look-ups by key.

Everything is computed from the store rows and parsed specs the other providers use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pywbem import CIMInstanceName, Uint16, Uint32, Uint64

from ediv.cluster import Host
from ediv.partition.common import DEFAULT_VM_MEM_MB, vm_mem_mb
from ediv.provider import cim_paths as P
from ediv.provider import request
from ediv.provider.providers import Row
from ediv.provider.schema import EDIV_NAMESPACE
from ediv.scenario.defaults import effective_vm
from ediv.scenario.model import VM, Scenario
from ediv.split import mac_for


@dataclass(frozen=True)
class PoolKind:
    kind: str
    pool_class: str
    rasd_class: str
    device_class: str
    resource_type: int
    units: str


POOL_KINDS: dict[str, PoolKind] = {k.kind: k for k in (
    PoolKind("cpu", "EDIV_ProcessorPool", "EDIV_ProcessorRASD", "EDIV_Processor", 3, "count"),
    PoolKind("mem", "EDIV_MemoryPool", "EDIV_MemoryRASD", "EDIV_Memory", 4, "byte*2^20"),
    PoolKind("net", "EDIV_NetworkPortPool", "EDIV_EthernetPortAllocationSettingData",
             "EDIV_NetworkPort", 33, "count"),
    PoolKind("disk", "EDIV_StoragePool", "EDIV_StorageAllocationSettingData",
             "EDIV_LogicalDisk", 31, "count"),
)}
POOL_CLASSES = tuple(k.pool_class for k in POOL_KINDS.values())
DEVICE_CLASSES = tuple(k.device_class for k in POOL_KINDS.values())
CAPS_CLASS = "EDIV_AllocationCapabilities"
CAPS_PREFIX = "ediv:alloccaps:"
POOL_PREFIX = "ediv:pool:"
# SettingsDefineCapabilities: role -> (ValueRole, ValueRange) (DSP1043)
CAP_ROLES: dict[str, tuple[int, int]] = {
    "Default": (0, 0), "Minimum": (3, 1), "Maximum": (3, 2), "Increment": (3, 3)}
# VM state -> EnabledState of its devices (what the VM's own EnabledState is)
DEVICE_STATES: dict[str, int] = {
    "defined": 3, "planned": 10, "deploying": 10, "running": 2, "ready": 2, "stopped": 3,
    "released": 3, "failed": 6, "paused": 9}
_U16 = {n: Uint16(n) for n in range(34)}


def part_kind(part: str) -> str | None:
    """The pool kind of a RASD / device part (cpu, mem, ifN, disk)."""
    if part.startswith("if") and part[2:].isdigit():
        return "net"
    return part if part in ("cpu", "mem", "disk") else None


def pool_path(host: str, kind: str) -> CIMInstanceName:
    return CIMInstanceName(POOL_KINDS[kind].pool_class,
                           {"InstanceID": f"{POOL_PREFIX}{host}:{kind}"}, namespace=EDIV_NAMESPACE)


def pool_ids(path: CIMInstanceName) -> tuple[str, str] | None:
    """(host, kind) of a pool path (host names have no ':')."""
    text = str(path.keybindings.get("InstanceID", ""))
    if not text.startswith(POOL_PREFIX):
        return None
    host, sep, kind = text[len(POOL_PREFIX):].rpartition(":")
    ok = sep and host and kind in POOL_KINDS and \
        POOL_KINDS[kind].pool_class.lower() == path.classname.lower()
    return (host, kind) if ok else None


def caps_path(host: str, kind: str) -> CIMInstanceName:
    return CIMInstanceName(CAPS_CLASS, {"InstanceID": f"{CAPS_PREFIX}{host}:{kind}"},
                           namespace=EDIV_NAMESPACE)


def caps_ids(path: CIMInstanceName) -> tuple[str, str, str | None] | None:
    """(host, kind, role) of an allocation capabilities path (role None) or of one of its
    RASDs (role Default | Minimum | Maximum | Increment)."""
    text = str(path.keybindings.get("InstanceID", ""))
    if not text.startswith(CAPS_PREFIX):
        return None
    parts = text[len(CAPS_PREFIX):].split(":")
    if len(parts) == 2 and parts[1] in POOL_KINDS and path.classname.lower() == CAPS_CLASS.lower():
        return parts[0], parts[1], None
    if len(parts) == 3 and parts[1] in POOL_KINDS and parts[2] in CAP_ROLES and \
            path.classname.lower() == POOL_KINDS[parts[1]].rasd_class.lower():
        return parts[0], parts[1], parts[2]
    return None


def cap_rasd_path(host: str, kind: str, role: str) -> CIMInstanceName:
    return CIMInstanceName(POOL_KINDS[kind].rasd_class,
                           {"InstanceID": f"{CAPS_PREFIX}{host}:{kind}:{role}"},
                           namespace=EDIV_NAMESPACE)


def device_path(classname: str, scenario: str, vm: str, part: str) -> CIMInstanceName:
    return CIMInstanceName(classname, {
        "SystemCreationClassName": "EDIV_VirtualSystem", "SystemName": P.vm_key(scenario, vm),
        "CreationClassName": classname, "DeviceID": part}, namespace=EDIV_NAMESPACE)


def device_ids(path: CIMInstanceName) -> tuple[str, str, str] | None:
    """(scenario, vm, part) of a device path."""
    kb = path.keybindings
    ids = P.split_key(str(kb.get("SystemName", "")))
    part = str(kb.get("DeviceID", ""))
    kind = part_kind(part)
    if ids is None or kind is None or \
            POOL_KINDS[kind].device_class.lower() != path.classname.lower() or \
            str(kb.get("CreationClassName", "")).lower() != path.classname.lower():
        return None
    return (*ids, part)


def rasd_part_path(scenario: str, vm: str, part: str) -> CIMInstanceName:
    kind = part_kind(part)
    assert kind is not None
    return P.rasd_path(POOL_KINDS[kind].rasd_class, scenario, vm, part)


def vm_parts(vm: VM) -> list[str]:
    """The RASD / device parts of a VM (``vm`` with its defaults applied)."""
    return ["cpu", "mem", *(f"if{i.id}" for i in vm.interfaces),
            *(["disk"] if vm.filesystem is not None else [])]


# ---------------------------------------------------------------- pools

@dataclass
class HostUsage:
    vms: int = 0
    mem_mb: int = 0
    ports: int = 0
    disks: int = 0

    def reserved(self, kind: str) -> int:
        return {"cpu": self.vms, "mem": self.mem_mb, "net": self.ports,
                "disk": self.disks}[kind]


def pool_row(host: Host, probe: dict | None, kind: str, usage: HostUsage) -> Row:
    k = POOL_KINDS[kind]
    vms = host.max_vhost or None  # 0: no limit (NULL Capacity)
    capacity = {"cpu": vms, "mem": host.mem, "net": None, "disk": vms}[kind]
    props = {
        "PoolID": f"{host.name}/{kind}",
        "ElementName": f"{host.name} {kind} pool",
        "Primordial": True,
        "ResourceType": _U16[k.resource_type],
        "AllocationUnits": k.units,
        "Capacity": Uint64(capacity) if capacity is not None else None,
        "Reserved": Uint64(usage.reserved(kind)),
        "OperationalStatus": [_U16[2]],
        "HealthState": _U16[5],
    }
    if kind == "cpu":
        props["HostProcessors"] = Uint32(probe["cpus"]) if probe and probe.get("cpus") else None
        props["CPUWeight"] = Uint32(host.cpu)
    if kind == "mem":
        free = probe.get("mem_free") if probe else None
        props["HostFreeMemoryMB"] = Uint64(free) if free is not None else None
    return Row(k.pool_class, {"InstanceID": f"{POOL_PREFIX}{host.name}:{kind}"}, props,
               EDIV_NAMESPACE)


def caps_row(host: Host, kind: str) -> Row:
    k = POOL_KINDS[kind]
    addable = [] if kind == "cpu" else [_U16[3]]  # resources change on defined VMs only
    return Row(CAPS_CLASS, {"InstanceID": f"{CAPS_PREFIX}{host.name}:{kind}"}, {
        "ElementName": f"{host.name} {kind} allocation capabilities",
        "ResourceType": _U16[k.resource_type],
        "RequestTypesSupported": _U16[3],  # General: the placement picks the host
        "SharingMode": _U16[3 if kind == "cpu" else 2],  # processors shared, rest dedicated
        "SupportedAddStates": addable,
        "SupportedRemoveStates": addable,
    }, EDIV_NAMESPACE)


def cap_rasd_row(host: Host, kind: str, role: str) -> Row:
    k = POOL_KINDS[kind]
    quantity = 1
    if kind == "mem":
        quantity = {"Default": DEFAULT_VM_MEM_MB, "Minimum": 1, "Maximum": max(host.mem, 1),
                    "Increment": 1}[role]
    props = {"ElementName": f"{kind} {role.lower()}", "ResourceType": _U16[k.resource_type],
             "VirtualQuantity": Uint64(quantity), "AllocationUnits": k.units,
             "PoolID": f"{host.name}/{kind}"}
    if kind == "disk":
        props["ResourceSubType"] = "cow"
    return Row(k.rasd_class, {"InstanceID": f"{CAPS_PREFIX}{host.name}:{kind}:{role}"}, props,
               EDIV_NAMESPACE)


# ---------------------------------------------------------------- devices

def mac_text(mac: str | None) -> str | None:
    """A MAC as CIM writes it: twelve upper-case hex digits, no separators."""
    return mac.replace(":", "").replace("-", "").upper() if mac else None


def device_rows(scenario: Scenario, vm: VM, stored: dict, mac_base: int | None,
                index: int | None) -> list[Row]:
    """The devices of ``vm`` (defaults applied by the caller) whose store row is ``stored``."""
    key = P.vm_key(scenario.name, vm.name)
    state = stored.get("state", "defined")
    enabled = _U16[DEVICE_STATES.get(state, 0)]
    running = state in ("running", "ready")
    op = [_U16[2 if running else 10 if state in ("stopped", "paused") else 0]]

    def row(classname: str, part: str, props: dict) -> Row:
        return Row(classname, {"SystemCreationClassName": "EDIV_VirtualSystem",
                               "SystemName": key, "CreationClassName": classname,
                               "DeviceID": part},
                   {"EnabledState": enabled, "OperationalStatus": op, **props}, EDIV_NAMESPACE)

    mem = vm_mem_mb(vm, scenario)
    out = [row("EDIV_Processor", "cpu", {"ElementName": "processor", "Role": "Central"}),
           row("EDIV_Memory", "mem", {"ElementName": "memory", "BlockSize": Uint64(1 << 20),
                                      "NumberOfBlocks": Uint64(mem),
                                      "ConsumableBlocks": Uint64(mem), "Volatile": True})]
    for itf in vm.interfaces:
        mac = itf.mac
        if not mac and mac_base is not None and index is not None:
            try:
                mac = mac_for(mac_base, index, itf.id)
            except Exception:  # out of range: the deploy refused it too
                mac = None
        out.append(row("EDIV_NetworkPort", f"if{itf.id}", {
            "ElementName": itf.name or f"eth{itf.id}",
            "PortNumber": Uint16(itf.id) if itf.id < 1 << 16 else None,
            "LinkTechnology": _U16[2],  # Ethernet
            "PermanentAddress": mac_text(mac),
            "NetworkAddresses": [mac_text(mac)] if mac else [],
            "NetworkName": itf.net,
            "LinkUp": running,
        }))
    if vm.filesystem is not None:
        out.append(row("EDIV_LogicalDisk", "disk", {
            "ElementName": "root filesystem", "Name": vm.filesystem.path,
            "Purpose": vm.filesystem.type}))
    return out


class ResourceModel:
    """Pools, capabilities and devices over an EngineModel (``m``)."""

    def __init__(self, model) -> None:
        self.m = model

    # -- hosts and their usage
    def hosts(self) -> dict[str, tuple[Host, dict | None]]:
        """Every known host (cluster file + probes) with its last probe row."""
        def compute() -> dict[str, tuple[Host, dict | None]]:
            from ediv.provider.engine_providers import known_hosts
            return known_hosts(self.m.engine)
        return request.memo("resource-hosts", compute)

    def usage(self, host: str) -> HostUsage:
        def compute() -> HostUsage:
            u = HostUsage()
            for v in self.m.engine.store().vms_on_host(host):
                found = self.m.vm_model(v["scenario"], v["name"])
                u.vms += 1
                if found is None:
                    continue
                scenario, vm = found
                vm = effective_vm(vm, scenario.global_.vm_defaults)
                u.mem_mb += vm_mem_mb(vm, scenario)
                u.ports += len(vm.interfaces)
                u.disks += vm.filesystem is not None
            return u
        return request.memo(("usage", host), compute)

    def pools(self, kind: str) -> Iterator[Row]:
        for name, (host, probe) in self.hosts().items():
            yield pool_row(host, probe, kind, self.usage(name))

    def get_pool(self, path: CIMInstanceName) -> Row | None:
        ids = pool_ids(path)
        found = self.hosts().get(ids[0]) if ids else None
        return pool_row(found[0], found[1], ids[1], self.usage(ids[0])) if found else None

    def all_caps(self) -> Iterator[Row]:
        for host, _probe in self.hosts().values():
            for kind in POOL_KINDS:
                yield caps_row(host, kind)

    def get_caps(self, path: CIMInstanceName) -> Row | None:
        ids = caps_ids(path)
        found = self.hosts().get(ids[0]) if ids and ids[2] is None else None
        return caps_row(found[0], ids[1]) if found else None

    def cap_rasds(self, classname: str) -> Iterator[Row]:
        kinds = [k for k in POOL_KINDS.values() if k.rasd_class.lower() == classname.lower()]
        for host, _probe in self.hosts().values():
            for k in kinds:
                for role in CAP_ROLES:
                    yield cap_rasd_row(host, k.kind, role)

    def get_cap_rasd(self, path: CIMInstanceName) -> Row | None:
        ids = caps_ids(path)
        found = self.hosts().get(ids[0]) if ids and ids[2] is not None else None
        return cap_rasd_row(found[0], ids[1], ids[2]) if found else None

    # -- devices
    def _index(self, scenario: Scenario) -> dict[str, int]:
        return request.memo(("vm-index", scenario.name),
                            lambda: {v.name: i for i, v in enumerate(scenario.ordered_vms())})

    def vm_devices(self, scenario_name: str, vm_name: str) -> list[Row]:
        found = self.m.vm_model(scenario_name, vm_name)
        stored = self.m.vm(scenario_name, vm_name)
        if found is None or stored is None:
            return []
        scenario, vm = found
        row = self.m.scenario_row(scenario_name)
        mac_base = None  # the automatic MACs are the deploy's (ediv.split): placed VMs only
        if stored.get("host"):
            mac_base = row.mac_base if row is not None and row.mac_base is not None else \
                scenario.global_.automac or 0
        return device_rows(scenario, effective_vm(vm, scenario.global_.vm_defaults), stored,
                           mac_base, self._index(scenario).get(vm.name))

    def devices(self, classname: str) -> Iterator[Row]:
        for v in self.m.iter_vms():
            for r in self.vm_devices(v["scenario"], v["name"]):
                if r.classname.lower() == classname.lower():
                    yield r

    def get_device(self, path: CIMInstanceName) -> Row | None:
        ids = device_ids(path)
        if ids is None:
            return None
        return next((r for r in self.vm_devices(ids[0], ids[1])
                     if r.keys["DeviceID"] == ids[2]), None)

    def register(self, registry) -> None:
        from ediv.provider.engine_providers import StoreProvider

        ns = EDIV_NAMESPACE
        for k in POOL_KINDS.values():
            registry.register(ns, StoreProvider(k.pool_class, lambda k=k: self.pools(k.kind),
                                                self.get_pool))
            registry.register(ns, StoreProvider(k.device_class,
                                                lambda k=k: self.devices(k.device_class),
                                                self.get_device))
        registry.register(ns, StoreProvider(CAPS_CLASS, self.all_caps, self.get_caps))
