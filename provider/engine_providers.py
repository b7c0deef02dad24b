"""root/ediv instances, live from the state store: hosts, scenarios, VMs, nets, settings,
resource allocations, jobs, the management service and its capabilities.

State mapping (CIM_EnabledLogicalElement.EnabledState / RequestedState, DSP1052/DSP1057):

| store state | EnabledState | RequestedState | OperationalStatus |
|---|---|---|---|
| scenario defined, released | 3 Disabled | 3 Disabled | 2 OK |
| scenario deploying | 10 Starting | 2 Enabled | 2 OK |
| scenario deployed | 2 Enabled | 2 Enabled | 2 OK |
| scenario releasing | 4 Shutting Down | 3 Disabled | 2 OK |
| scenario failed (half deployed/released) | 6 Enabled but Offline | 5 No Change | 6 Error |
| scenario interrupted (deploying process gone) | 1 Other ("Interrupted") | 5 No Change | 6 Error |
| VM of a defined scenario | 3 Disabled | 3 Disabled | 2 OK |
| VM planned | 10 Starting | 2 Enabled | 2 OK |
| VM running | 2 Enabled | 2 Enabled | 2 OK |
| VM stopped | 3 Disabled | 3 Disabled | 2 OK |
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pywbem import CIMDateTime, CIMInstance, CIMInstanceName, CIMProperty, Uint16, Uint32, Uint64

from ediv import state as st
from ediv.cluster import Host
from ediv.partition.common import parse_mem_mb
from ediv.provider import cim_paths as P
from ediv.provider.engine import Engine
from ediv.provider.hosts import host_instance
from ediv.provider.providers import InstanceProvider, ProviderRegistry, same_path
from ediv.provider.schema import EDIV_NAMESPACE
from ediv.scenario.defaults import effective_vm
from ediv.scenario.model import VM, Scenario

SCENARIO_STATES: dict[str, tuple[int, int, int]] = {
    # store state: (EnabledState, RequestedState, OperationalStatus)
    st.DEFINED: (3, 3, 2), st.RELEASED: (3, 3, 2), st.DEPLOYING: (10, 2, 2),
    st.DEPLOYED: (2, 2, 2), st.RELEASING: (4, 3, 2), st.FAILED: (6, 5, 6),
    st.INTERRUPTED: (1, 5, 6),
}
VM_STATES: dict[str, tuple[int, int]] = {
    "defined": (3, 3), "planned": (10, 2), "deploying": (10, 2), "running": (2, 2),
    "ready": (2, 2), "stopped": (3, 3), "released": (3, 3), "failed": (6, 5),
}
JOB_STATES: dict[str, tuple[int, list[int]]] = {
    # store state: (JobState, OperationalStatus)
    "running": (4, [2]), "completed": (7, [2, 17]), "failed": (10, [6, 17]),
}
SYNCHRONOUS_METHODS = (2, 3, 5, 6, 7, 10)  # CIM_VirtualSystemManagementCapabilities
JOB_KEEP = timedelta(minutes=5)  # TimeBeforeRemoval (jobs stay in the store; informative)


def instance(classname: str, path: CIMInstanceName, props: dict[str, Any]) -> CIMInstance:
    """An instance with ``path``; properties whose value is None are left out (NULL)."""
    inst = CIMInstance(classname, path=path)
    for name, value in {**path.keybindings, **props}.items():
        if isinstance(value, list) and not value:  # typed from the class by the dispatcher
            inst.properties[name] = CIMProperty(name, [], type="string", is_array=True)
        elif value is not None:
            inst[name] = value
    return inst


def _time(ts: float | None) -> CIMDateTime | None:
    return CIMDateTime(datetime.fromtimestamp(ts, UTC)) if ts else None


# ---------------------------------------------------------------- hosts

def host_instances(engine: Engine) -> list[CIMInstance]:
    """Hosts of the server's cluster file, with what the last probe measured; hosts known only
    from probes (a scenario deployed with another cluster file) too."""
    store = engine.store()
    probed = {r["name"]: r for r in store.hosts()}
    counts: dict[str, int] = {}
    for v in store.vms():
        if v["host"]:
            counts[v["host"]] = counts.get(v["host"], 0) + 1
    hosts: dict[str, Host] = {h.name: h for h in engine.cluster_hosts()}
    for name, r in probed.items():
        if name not in hosts:
            hosts[name] = Host(name, mem=r["mem"] or 0, cpu=r["cpu"] or 0,
                               max_vhost=r["max_vhost"] or 0, ifname=r["ifname"] or "eth0",
                               vm_type=r["vm_type"] or "uml", address=r["address"])
    out = []
    for name, host in hosts.items():
        row = probed.get(name)
        if row is not None and row["load"] is not None:
            host.load = float(row["load"])
        inst = host_instance(host, counts.get(name, 0))
        inst.path.namespace = EDIV_NAMESPACE
        status = row["status"] if row else None
        inst["OperationalStatus"] = [Uint16({"up": 2, "unreachable": 13}.get(status, 0))]
        inst["StatusDescriptions"] = [status or "not probed yet"]
        if row and row["last_probe"]:
            inst["TimeOfLastStateChange"] = _time(row["last_probe"])
        out.append(inst)
    return out


# ---------------------------------------------------------------- scenarios, VMs, nets

def scenario_instance(engine: Engine, row: st.ScenarioRow, vms: list[dict]) -> CIMInstance:
    model = engine.model(row)
    enabled, requested, op = SCENARIO_STATES.get(row.state, (0, 5, 0))
    nvms = len(vms) if vms else (len(model.vms) if model else 0)
    return instance("EDIV_Scenario", P.scenario_path(row.name), {
        "ElementName": row.name,
        "Caption": f"scenario {row.name} ({row.state})",
        "Description": row.error,
        "PartitionAlgorithm": row.algorithm,
        "NumberOfVirtualSystems": Uint32(nvms),
        "NumberOfNetworks": Uint32(len(model.nets)) if model else None,
        "Hosts": sorted({v["host"] for v in vms if v["host"]}),
        "EnabledState": Uint16(enabled),
        "OtherEnabledState": "Interrupted" if row.state == st.INTERRUPTED else None,
        "RequestedState": Uint16(requested),
        "EnabledDefault": Uint16(3),
        "AvailableRequestedStates": [Uint16(2), Uint16(3)],
        "OperationalStatus": [Uint16(op)],
        "StatusDescriptions": [row.state] + [e for e in (row.interrupted_note, row.error) if e],
        "TimeOfLastStateChange": _time(row.updated),
        "Dedicated": [Uint16(0)],
    })


def vm_rows(engine: Engine, row: st.ScenarioRow, stored: list[dict]) -> list[dict]:
    """The VMs of a scenario: as deployed (store) or, while only defined, from its spec."""
    if stored:
        return stored
    model = engine.model(row)
    if model is None:
        return []
    return [{"scenario": row.name, "name": v.name, "host": None, "type": v.type,
             "state": "defined"} for v in model.vms]


def vm_instance(v: dict) -> CIMInstance:
    enabled, requested = VM_STATES.get(v["state"], (0, 5))
    return instance("EDIV_VirtualSystem", P.vm_path(v["scenario"], v["name"]), {
        "ElementName": v["name"],
        "ScenarioName": v["scenario"],
        "HostName": v["host"] or "",
        "VirtualSystemType": v["type"],
        "EnabledState": Uint16(enabled),
        "RequestedState": Uint16(requested),
        "EnabledDefault": Uint16(2),
        "OperationalStatus": [Uint16(2)],
        "StatusDescriptions": [v["state"]],
        "Dedicated": [Uint16(0)],
    })


def net_instances(engine: Engine, row: st.ScenarioRow, vms: list[dict],
                  segments: list[dict]) -> list[CIMInstance]:
    model = engine.model(row)
    if model is None:
        return []
    seg = {s["net"]: s for s in segments}
    where = {v["name"]: v["host"] for v in vms if v["host"]}
    out = []
    for net in model.nets:
        s = seg.get(net.name)
        hosts = s["hosts"] if s else sorted(
            {where[vm.name] for vm in model.vms if net.name in vm.nets and vm.name in where})
        out.append(instance("EDIV_VirtualNetwork", P.net_path(row.name, net.name), {
            "ElementName": net.name,
            "ScenarioName": row.name,
            "Mode": net.mode,
            "NetworkType": net.type,
            "SegmentKind": s["kind"] if s else "none",
            "SegmentID": Uint32(s["id"]) if s else None,
            "Hosts": list(hosts),
            "EnabledState": Uint16(2 if row.state == st.DEPLOYED else 3),
            "OperationalStatus": [Uint16(2)],
        }))
    return out


# ---------------------------------------------------------------- settings

def ssd_instance(row: st.ScenarioRow, restrictions: str | None = None) -> CIMInstance:
    return instance("EDIV_ScenarioSettingData", P.ssd_path(row.name), {
        "ElementName": row.name,
        "VirtualSystemIdentifier": row.name,
        "VirtualSystemType": "ediv-scenario",
        "ScenarioDefinition": row.spec,
        "Restrictions": restrictions,
        "PartitionAlgorithm": row.algorithm,
        "ConfigurationDataRoot": row.basedir,
    })


def vssd_instance(scenario: str, vm: VM, vm_type: str | None = None) -> CIMInstance:
    return instance("EDIV_VirtualSystemSettingData", P.vssd_path(scenario, vm.name), {
        "ElementName": vm.name,
        "VirtualSystemIdentifier": vm.name,
        "VirtualSystemType": vm_type or vm.type,
        "Filesystem": vm.filesystem.path if vm.filesystem else None,
        "FilesystemType": vm.filesystem.type if vm.filesystem else None,
        "Kernel": vm.kernel.path if vm.kernel else None,
    })


def rasd_instances(scenario: Scenario, vm: VM) -> list[CIMInstance]:
    """Processor, memory, one Ethernet port per <if>, storage: what OVF would carry."""
    name = scenario.name
    vm = effective_vm(vm, scenario.global_.vm_defaults)
    mem = vm.mem
    out = [
        instance("EDIV_ProcessorRASD", P.rasd_path("EDIV_ProcessorRASD", name, vm.name, "cpu"), {
            "ElementName": "processor", "ResourceType": Uint16(3),
            "VirtualQuantity": Uint64(1), "AllocationUnits": "count"}),
        instance("EDIV_MemoryRASD", P.rasd_path("EDIV_MemoryRASD", name, vm.name, "mem"), {
            "ElementName": "memory", "ResourceType": Uint16(4),
            "VirtualQuantity": Uint64(parse_mem_mb(mem)), "AllocationUnits": "byte*2^20"}),
    ]
    for itf in vm.interfaces:
        cls = "EDIV_EthernetPortAllocationSettingData"
        out.append(instance(cls, P.rasd_path(cls, name, vm.name, f"if{itf.id}"), {
            "ElementName": itf.name or f"eth{itf.id}",
            "ResourceType": Uint16(33),  # Ethernet Connection (DSP1050)
            "InterfaceIndex": Uint32(itf.id),
            "NetworkName": itf.net,
            "Connection": [itf.net],
            "Address": itf.mac,
            "IPAddresses": [address_text(a) for a in itf.addresses],
        }))
    fs = vm.filesystem
    if fs is not None:
        cls = "EDIV_StorageAllocationSettingData"
        out.append(instance(cls, P.rasd_path(cls, name, vm.name, "disk"), {
            "ElementName": "root filesystem", "ResourceType": Uint16(31),  # Logical Disk
            "HostResource": [fs.path], "ResourceSubType": fs.type}))
    return out


def address_text(addr) -> str:
    """An <ipv4>/<ipv6> as prefix notation (mask="255.255.255.0" -> /24)."""
    import ipaddress

    text = addr.address
    if "/" in text or not addr.mask:
        return text
    mask = addr.mask.lstrip("/")
    try:
        prefix = int(mask) if mask.isdigit() else \
            ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return text
    return f"{text}/{prefix}"


# ---------------------------------------------------------------- jobs

def job_instance(job: dict) -> CIMInstance:
    state, status = JOB_STATES.get(job["state"], (2, [0]))
    started, finished = job["started"], job["finished"]
    elapsed = (finished or datetime.now(UTC).timestamp()) - started if started else None
    log = job["log"] or ""
    last = log.rstrip("\n").rpartition("\n")[2]
    name = f"{job['kind']} {job['scenario']}" if job["scenario"] else job["kind"]
    result = job["result"]
    return instance("EDIV_ConcreteJob", P.job_path(job["id"]), {
        "Name": name,
        "ElementName": name,
        "Operation": job["kind"],
        "JobState": Uint16(state),
        "OperationalStatus": [Uint16(s) for s in status],
        "JobStatus": job["state"] + (f": {last}" if last else ""),
        "PercentComplete": Uint16(job["percent"] or 0),
        "ErrorCode": Uint16(4) if job["state"] == "failed" else None,
        "ErrorDescription": job["error"],
        "ResultData": result if result not in (None, "null") else None,
        "Description": log[-8000:] or None,
        "TimeSubmitted": _time(started),
        "StartTime": _time(started),
        "TimeOfLastStateChange": _time(finished or started),
        "ElapsedTime": CIMDateTime(timedelta(seconds=max(0.0, elapsed)))
        if elapsed is not None else None,
        "TimeBeforeRemoval": CIMDateTime(JOB_KEEP),
        "DeleteOnCompletion": False,
        "Owner": job["owner"],
    })


# ---------------------------------------------------------------- service and capabilities

def service_instance(system_name: str) -> CIMInstance:
    return instance("EDIV_VirtualSystemManagementService", P.service_path(system_name), {
        "ElementName": "ediv virtual system management service",
        "EnabledState": Uint16(2), "RequestedState": Uint16(12),
        "EnabledDefault": Uint16(2), "OperationalStatus": [Uint16(2)],
        "Started": True, "HealthState": Uint16(5),
    })


def capabilities(vm_state_changes: list[int]) -> list[CIMInstance]:
    return [
        instance("EDIV_VirtualSystemManagementCapabilities", P.vsm_caps_path(), {
            "ElementName": "ediv management capabilities",
            "VirtualSystemTypesSupported": ["ediv-scenario", "uml", "container"],
            # DSP1042 ValueMap: 2 DefineSystem, 3 DestroySystem, 5 ModifyResourceSettings,
            # 6 ModifySystemSettings, 7 RemoveResourceSettings, 10 AddResourceSettings
            "SynchronousMethodsSupported": [Uint16(m) for m in SYNCHRONOUS_METHODS],
            "AsynchronousMethodsSupported": [],
            "IndicationsSupported": [Uint16(2), Uint16(3), Uint16(4)],
        }),
        instance("EDIV_EnabledLogicalElementCapabilities",
                 P.elem_caps_path(P.SCENARIO_CAPS_ID), {
                     "ElementName": "scenario state changes",
                     "RequestedStatesSupported": [Uint16(2), Uint16(3)],
                     "ElementNameEditSupported": False}),
        instance("EDIV_EnabledLogicalElementCapabilities", P.elem_caps_path(P.VM_CAPS_ID), {
            "ElementName": "virtual system state changes",
            "RequestedStatesSupported": [Uint16(s) for s in vm_state_changes],
            "ElementNameEditSupported": False}),
    ]


# ---------------------------------------------------------------- providers

class StoreProvider(InstanceProvider):
    """Instances computed on every call from the state store."""

    def __init__(self, classname: str, source: Callable[[], Iterable[CIMInstance]],
                 getter: Callable[[CIMInstanceName], CIMInstance | None] | None = None):
        self.classname = classname
        self._source = source
        self._getter = getter

    def enumerate(self) -> Iterable[CIMInstance]:
        return list(self._source())

    def get(self, path: CIMInstanceName) -> CIMInstance | None:
        if self._getter is None:
            return super().get(path)
        inst = self._getter(path)
        return inst if inst is not None and same_path(inst.path, path) else None


class EngineModel:
    """Builds every root/ediv instance class from the engine (see ``register``)."""

    def __init__(self, engine: Engine, system_name: str, vm_state_changes: list[int]):
        self.engine = engine
        self.system_name = system_name
        self.vm_state_changes = vm_state_changes

    # scenario-level helpers shared with the associations
    def scenario_rows(self) -> list[st.ScenarioRow]:
        return self.engine.store().scenarios()

    def all_vms(self) -> list[dict]:
        store = self.engine.store()
        stored: dict[str, list[dict]] = {}
        for v in store.vms():
            stored.setdefault(v["scenario"], []).append(v)
        out = []
        for row in store.scenarios():
            out.extend(vm_rows(self.engine, row, stored.get(row.name, [])))
        return out

    def scenarios(self) -> list[CIMInstance]:
        store = self.engine.store()
        stored: dict[str, list[dict]] = {}
        for v in store.vms():
            stored.setdefault(v["scenario"], []).append(v)
        return [scenario_instance(self.engine, r, stored.get(r.name, []))
                for r in store.scenarios()]

    def get_scenario(self, path: CIMInstanceName) -> CIMInstance | None:
        store = self.engine.store()
        row = store.scenario(str(path.keybindings.get("Name", "")))
        return scenario_instance(self.engine, row, store.vms(row.name)) if row else None

    def vms(self) -> list[CIMInstance]:
        return [vm_instance(v) for v in self.all_vms()]

    def get_vm(self, path: CIMInstanceName) -> CIMInstance | None:
        key = P.split_key(path.keybindings.get("Name", ""))
        if key is None:
            return None
        store = self.engine.store()
        found = store.vm(*key)
        if found is not None:
            return vm_instance(found)
        row = store.scenario(key[0])
        if row is None or store.has_vms(row.name):
            return None
        for v in vm_rows(self.engine, row, []):
            if v["name"] == key[1]:
                return vm_instance(v)
        return None

    def nets(self) -> list[CIMInstance]:
        store = self.engine.store()
        out = []
        for row in store.scenarios():
            out.extend(net_instances(self.engine, row, store.vms(row.name),
                                     store.segments(row.name)))
        return out

    def ssds(self) -> list[CIMInstance]:
        return [ssd_instance(r, r.restrictions) for r in self.scenario_rows()]

    def get_ssd(self, path: CIMInstanceName) -> CIMInstance | None:
        iid = str(path.keybindings.get("InstanceID", ""))
        prefix = "ediv:scenario:"
        if not iid.startswith(prefix):
            return None
        row = self.engine.store().scenario(iid[len(prefix):])
        return ssd_instance(row, row.restrictions) if row else None

    def vm_models(self) -> Iterable[tuple[Scenario, VM, str | None]]:
        store = self.engine.store()
        types: dict[tuple[str, str], str] = {
            (v["scenario"], v["name"]): v["type"] for v in store.vms()}
        for row in store.scenarios():
            model = self.engine.model(row)
            if model is None:
                continue
            for vm in model.vms:
                yield model, vm, types.get((row.name, vm.name))

    def vssds(self) -> list[CIMInstance]:
        return [vssd_instance(s.name, vm, t) for s, vm, t in self.vm_models()]

    def rasds(self, classname: str) -> list[CIMInstance]:
        return [r for s, vm, _t in self.vm_models() for r in rasd_instances(s, vm)
                if r.classname == classname]

    def jobs(self) -> list[CIMInstance]:
        return [job_instance(j) for j in self.engine.store().jobs()]

    def get_job(self, path: CIMInstanceName) -> CIMInstance | None:
        number = P.job_id(path)
        job = self.engine.store().job(number) if number is not None else None
        return job_instance(job) if job else None

    def register(self, registry: ProviderRegistry) -> None:
        ns = EDIV_NAMESPACE
        reg = registry.register
        reg(ns, StoreProvider("EDIV_HostSystem", lambda: host_instances(self.engine)))
        reg(ns, StoreProvider("EDIV_Scenario", self.scenarios, self.get_scenario))
        reg(ns, StoreProvider("EDIV_VirtualSystem", self.vms, self.get_vm))
        reg(ns, StoreProvider("EDIV_VirtualNetwork", self.nets))
        reg(ns, StoreProvider("EDIV_ScenarioSettingData", self.ssds, self.get_ssd))
        reg(ns, StoreProvider("EDIV_VirtualSystemSettingData", self.vssds))
        for cls in ("EDIV_ProcessorRASD", "EDIV_MemoryRASD",
                    "EDIV_EthernetPortAllocationSettingData",
                    "EDIV_StorageAllocationSettingData"):
            reg(ns, StoreProvider(cls, lambda c=cls: self.rasds(c)))
        reg(ns, StoreProvider("EDIV_ConcreteJob", self.jobs, self.get_job))
        reg(ns, StoreProvider("EDIV_VirtualSystemManagementService",
                              lambda: [service_instance(self.system_name)]))
        caps = capabilities(self.vm_state_changes)
        reg(ns, StoreProvider("EDIV_VirtualSystemManagementCapabilities", lambda: caps[:1]))
        reg(ns, StoreProvider("EDIV_EnabledLogicalElementCapabilities", lambda: caps[1:]))


def json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
