"""root/ediv instances, live from the state store: hosts, scenarios, VMs, nets, settings,
resource allocations, jobs, the management service and its capabilities.

State mapping (CIM_EnabledLogicalElement.EnabledState / RequestedState, DSP1052/DSP1057):

| store state | EnabledState | RequestedState | OperationalStatus | HealthState |
|---|---|---|---|---|
| scenario defined, released | 3 Disabled | 3 Disabled | 2 OK | 5 OK |
| scenario deploying | 10 Starting | 2 Enabled | 2 OK | 5 OK |
| scenario deployed | 2 Enabled | 2 Enabled | 2 OK | 5 OK |
| scenario releasing | 4 Shutting Down | 3 Disabled | 2 OK | 5 OK |
| scenario failed (half done) | 6 Enabled but Offline | 5 No Change | 6 Error | 20 Major failure |
| scenario interrupted (owner gone) | 1 Other ("Interrupted") | 5 No Change | 6 Error | 20 Major |
| VM of a defined scenario | 3 Disabled | 3 Disabled | 15 Dormant | 5 OK |
| VM planned, deploying | 10 Starting | 2 Enabled | 8 Starting | 5 OK |
| VM running | 2 Enabled | 2 Enabled | 2 OK | 5 OK |
| VM stopped | 3 Disabled | 3 Disabled | 10 Stopped | 5 OK |
| VM failed | 6 Enabled but Offline | 5 No Change | 6 Error | 20 Major failure |

Hosts, from the last probe: up 2 OK / 5 OK, unreachable 13 Lost Communication / 20 Major
failure, not probed yet 0 Unknown / 0 Unknown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pywbem import CIMDateTime, CIMInstance, CIMInstanceName, Uint16, Uint32, Uint64

from ediv import state as st
from ediv.cluster import Host
from ediv.partition.common import parse_mem_mb
from ediv.provider import cim_paths as P
from ediv.provider import request
from ediv.provider.engine import Engine
from ediv.provider.hosts import host_instance
from ediv.provider.providers import (
    InstanceProvider,
    PathKey,
    ProviderRegistry,
    Row,
    as_instance,
    as_row,
    key_of,
    path_key,
)
from ediv.provider.resources import CAPS_PREFIX, ResourceModel
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
    "paused": (9, 9),
}
VM_HEALTH: dict[str, tuple[int, int]] = {
    # VM state: (OperationalStatus, HealthState)
    "defined": (15, 5), "planned": (8, 5), "deploying": (8, 5), "running": (2, 5),
    "ready": (2, 5), "stopped": (10, 5), "released": (15, 5), "failed": (6, 20),
    "paused": (2, 5),
}
HOST_HEALTH: dict[str | None, tuple[int, int]] = {
    # last probe: (OperationalStatus, HealthState)
    "up": (2, 5), "unreachable": (13, 20), None: (0, 0),
}
JOB_STATES: dict[str, tuple[int, list[int]]] = {
    # store state: (JobState, OperationalStatus)
    "running": (4, [2]), "completed": (7, [2, 17]), "failed": (10, [6, 17]),
}
SYNCHRONOUS_METHODS = (2, 3, 5, 6, 7, 10)  # CIM_VirtualSystemManagementCapabilities
JOB_KEEP = timedelta(minutes=5)  # TimeBeforeRemoval (jobs stay in the store; informative)


def make_row(classname: str, path: CIMInstanceName | dict[str, Any], props: dict[str, Any]) -> Row:
    """The instance at ``path`` (a path, or the keys of a root/ediv path) as a Row."""
    if isinstance(path, CIMInstanceName):
        return Row(classname, dict(path.keybindings.items()), props, path.namespace)
    return Row(classname, path, props, EDIV_NAMESPACE)


def instance(classname: str, path: CIMInstanceName, props: dict[str, Any]) -> CIMInstance:
    """An instance with ``path``; properties whose value is None are left out (NULL)."""
    return make_row(classname, path, props).instance()


def system_keys(classname: str, name: str) -> dict[str, str]:
    """The keys of a root/ediv system path (cim_paths builds the same as a CIMInstanceName)."""
    return {"CreationClassName": classname, "Name": name}


def setting_keys(instance_id: str) -> dict[str, str]:
    return {"InstanceID": instance_id}


def _time(ts: float | None) -> CIMDateTime | None:
    return CIMDateTime(datetime.fromtimestamp(ts, UTC)) if ts else None


# ---------------------------------------------------------------- hosts

def known_hosts(engine: Engine) -> dict[str, tuple[Host, dict | None]]:
    """Hosts of the server's cluster file and hosts known only from probes (a scenario
    deployed with another cluster file), each with its last probe row (None: not probed)."""
    probed = {r["name"]: r for r in engine.store().hosts()}
    hosts: dict[str, Host] = {h.name: h for h in engine.cluster_hosts()}
    for name, r in probed.items():
        if name not in hosts:
            hosts[name] = Host(name, mem=r["mem"] or 0, cpu=r["cpu"] or 0,
                               max_vhost=r["max_vhost"] or 0, ifname=r["ifname"] or "eth0",
                               vm_type=r["vm_type"] or "uml", address=r["address"])
    for name, host in hosts.items():
        row = probed.get(name)
        if row is not None and row["load"] is not None:
            host.load = float(row["load"])
    return {name: (host, probed.get(name)) for name, host in hosts.items()}


def host_instances(engine: Engine) -> list[CIMInstance]:
    """Hosts of the server's cluster file, with what the last probe measured; hosts known only
    from probes (a scenario deployed with another cluster file) too."""
    counts = engine.store().vm_counts_by_host()
    out = []
    for name, (host, row) in known_hosts(engine).items():
        inst = host_instance(host, counts.get(name, 0))
        inst.path.namespace = EDIV_NAMESPACE
        status = row["status"] if row else None
        op, health = HOST_HEALTH.get(status, (0, 0))
        inst["OperationalStatus"] = [Uint16(op)]
        inst["HealthState"] = Uint16(health)
        inst["StatusDescriptions"] = [status or "not probed yet"]
        if row and row["last_probe"]:
            inst["TimeOfLastStateChange"] = _time(row["last_probe"])
        out.append(inst)
    return out


# ---------------------------------------------------------------- scenarios, VMs, nets

def scenario_row(engine: Engine, row: st.ScenarioRow, vms: list[dict]) -> Row:
    model = engine.model(row)
    enabled, requested, op = SCENARIO_STATES.get(row.state, (0, 5, 0))
    nvms = len(vms) if vms else (len(model.vms) if model else 0)
    return make_row("EDIV_Scenario", system_keys("EDIV_Scenario", row.name), {
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
        "HealthState": Uint16(20 if op == 6 else 5 if op == 2 else 0),
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


def scenario_instance(engine: Engine, row: st.ScenarioRow, vms: list[dict]) -> CIMInstance:
    return scenario_row(engine, row, vms).instance()


_VM = "EDIV_VirtualSystem"


_U16 = {n: Uint16(n) for n in range(32)}  # the small values of every VM row, made once


def vm_row(v: dict) -> Row:
    enabled, requested = VM_STATES.get(v["state"], (0, 5))
    op, health = VM_HEALTH.get(v["state"], (0, 0))
    return Row(_VM, {"CreationClassName": _VM, "Name": f"{v['scenario']}/{v['name']}"}, {
        "ElementName": v["name"],
        "ScenarioName": v["scenario"],
        "HostName": v["host"] or "",
        "VirtualSystemType": v["type"],
        "EnabledState": _U16[enabled],
        "RequestedState": _U16[requested],
        "EnabledDefault": _U16[2],
        "OperationalStatus": [_U16[op]],
        "HealthState": _U16[health],
        "StatusDescriptions": [v["state"]],
        "Dedicated": [_U16[0]],
    }, EDIV_NAMESPACE)


def vm_instance(v: dict) -> CIMInstance:
    return vm_row(v).instance()


def net_instances(engine: Engine, row: st.ScenarioRow, vms: list[dict],
                  segments: list[dict]) -> list[CIMInstance]:
    return [r.instance() for r in net_rows(engine, row, vms, segments)]


def net_rows(engine: Engine, row: st.ScenarioRow, vms: list[dict],
             segments: list[dict]) -> list[Row]:
    model = engine.model(row)
    if model is None:
        return []
    seg = {s["net"]: s for s in segments}
    where = {v["name"]: v["host"] for v in vms if v["host"]}
    placed: dict[str, set[str]] = {}  # net -> hosts of its VMs (one pass over the VMs)
    for vm in model.vms:
        host = where.get(vm.name)
        if host:
            for name in vm.nets:
                placed.setdefault(name, set()).add(host)
    out = []
    for net in model.nets:
        s = seg.get(net.name)
        hosts = s["hosts"] if s else sorted(placed.get(net.name, ()))
        out.append(make_row("EDIV_VirtualNetwork", system_keys(
            "EDIV_VirtualNetwork", P.vm_key(row.name, net.name)), {
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
    return vssd_row(scenario, vm, vm_type).instance()


def vssd_row(scenario: str, vm: VM, vm_type: str | None = None) -> Row:
    return make_row("EDIV_VirtualSystemSettingData",
                setting_keys(f"ediv:vm:{P.vm_key(scenario, vm.name)}"), {
        "ElementName": vm.name,
        "VirtualSystemIdentifier": vm.name,
        "VirtualSystemType": vm_type or vm.type,
        "Filesystem": vm.filesystem.path if vm.filesystem else None,
        "FilesystemType": vm.filesystem.type if vm.filesystem else None,
        "Kernel": vm.kernel.path if vm.kernel else None,
    })


def rasd_instances(scenario: Scenario, vm: VM) -> list[CIMInstance]:
    """Processor, memory, one Ethernet port per <if>, storage: what OVF would carry."""
    return [r.instance() for r in rasd_rows(scenario, vm)]


def _rasd_keys(scenario: str, vm: str, part: str) -> dict[str, str]:
    return setting_keys(f"ediv:rasd:{P.vm_key(scenario, vm)}:{part}")


def rasd_rows(scenario: Scenario, vm: VM) -> list[Row]:
    name = scenario.name
    vm = effective_vm(vm, scenario.global_.vm_defaults)
    mem = vm.mem
    out = [
        make_row("EDIV_ProcessorRASD", _rasd_keys(name, vm.name, "cpu"), {
            "ElementName": "processor", "ResourceType": Uint16(3),
            "VirtualQuantity": Uint64(1), "AllocationUnits": "count"}),
        make_row("EDIV_MemoryRASD", _rasd_keys(name, vm.name, "mem"), {
            "ElementName": "memory", "ResourceType": Uint16(4),
            "VirtualQuantity": Uint64(parse_mem_mb(mem)), "AllocationUnits": "byte*2^20"}),
    ]
    for itf in vm.interfaces:
        cls = "EDIV_EthernetPortAllocationSettingData"
        out.append(make_row(cls, _rasd_keys(name, vm.name, f"if{itf.id}"), {
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
        out.append(make_row(cls, _rasd_keys(name, vm.name, "disk"), {
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
    return job_row(job).instance()


def job_row(job: dict) -> Row:
    state, status = JOB_STATES.get(job["state"], (2, [0]))
    started, finished = job["started"], job["finished"]
    elapsed = (finished or datetime.now(UTC).timestamp()) - started if started else None
    log = job["log"] or ""
    last = log.rstrip("\n").rpartition("\n")[2]
    name = f"{job['kind']} {job['scenario']}" if job["scenario"] else job["kind"]
    result = job["result"]
    return make_row("EDIV_ConcreteJob", setting_keys(f"ediv:job:{job['id']}"), {
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
        "Owner": job.get("requested_by"),  # the user whose request started it
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
            # DestroySystem of a deployed scenario releases it in a job (4096)
            "AsynchronousMethodsSupported": [Uint16(3)],
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
    """Instances computed on every call from the state store.

    ``source`` yields CIMInstances or Rows (rows are what the dispatcher writes fastest);
    ``getter`` answers GetInstance by key; ``touching`` (association classes) gives the
    association rows that may refer to an object path, straight from the store: the
    dispatcher's References/Associators then cost the size of the answer.
    """

    def __init__(self, classname: str, source: Callable[[], Iterable[CIMInstance | Row]],
                 getter: Callable[[CIMInstanceName], CIMInstance | Row | None] | None = None,
                 touching: Callable[[CIMInstanceName], Iterable[Row]] | None = None):
        self.classname = classname
        self._source = source
        self._getter = getter
        self._touching = touching

    def enumerate(self) -> Iterable[CIMInstance]:
        return [as_instance(i) for i in self._source()]

    def rows(self) -> Iterable[Row]:
        return (as_row(i) for i in self._source())

    def get_row(self, path: CIMInstanceName) -> Row | None:
        if self._getter is None:
            want = key_of(path, EDIV_NAMESPACE)
            return next((r for r in self.rows()
                         if path_key(r.classname, r.keys, EDIV_NAMESPACE) == want), None)
        found = self._getter(path)
        if found is None:
            return None
        row = as_row(found)
        ours = path_key(row.classname, row.keys, EDIV_NAMESPACE)
        return row if ours == key_of(path, EDIV_NAMESPACE) else None

    def get(self, path: CIMInstanceName) -> CIMInstance | None:
        row = self.get_row(path)
        return None if row is None else row.instance()

    def reference_rows(self, target: CIMInstanceName, role: str | None = None
                       ) -> Iterable[Row]:
        if self._touching is None:
            return super().reference_rows(target, role)
        want = key_of(target, EDIV_NAMESPACE)
        return [r for r in self._touching(target) if refers_to(r, want, role)]

    def references(self, target: CIMInstanceName, role: str | None = None
                   ) -> Iterator[CIMInstance]:
        if self._touching is None:
            yield from super().references(target, role)
            return
        for row in self.reference_rows(target, role):
            yield row.instance()


def refers_to(row: Row, target: PathKey, role: str | None) -> bool:
    """A reference property of ``row`` (named ``role``, if given) is ``target``."""
    for name, value in row.props.items():
        if not isinstance(value, CIMInstanceName):
            continue
        if role and name.lower() != role.lower():
            continue
        if key_of(value, EDIV_NAMESPACE) == target:
            return True
    return False


class EngineModel:
    """Builds every root/ediv instance class from the engine (see ``register``)."""

    PAGE = 1000  # VM rows read from the store at a time while enumerating

    def __init__(self, engine: Engine, system_name: str, vm_state_changes: list[int]):
        self.engine = engine
        self.system_name = system_name
        self.vm_state_changes = vm_state_changes
        self.resources = ResourceModel(self)

    # scenario-level helpers shared with the associations
    def scenario_rows(self) -> list[st.ScenarioRow]:
        return self.engine.store().scenarios()

    def scenario_row(self, name: str) -> st.ScenarioRow | None:
        """One scenario's row (read once per request: it carries the whole spec)."""
        return request.memo(("scenario", name), lambda: self.engine.store().scenario(name))

    def iter_vms(self) -> Iterator[dict]:
        """Every VM (stored, or from the spec of a scenario not placed yet), read a page at
        a time; the store connection is looked up per page, so a pull operation may resume
        this on another thread."""
        for name in [r.name for r in self.scenario_rows()]:
            yield from self.scenario_vms(name)

    def scenario_vms(self, name: str) -> Iterator[dict]:
        after = 0
        while True:
            page = self.engine.store().vm_page(name, after, self.PAGE)
            if not page:
                break
            after = page[-1]["rowid"]
            yield from page
            if len(page) < self.PAGE:
                return
        if after:
            return
        row = self.scenario_row(name)
        if row is not None:
            yield from vm_rows(self.engine, row, [])

    def all_vms(self) -> list[dict]:
        return list(self.iter_vms())

    def vm(self, scenario: str, name: str) -> dict | None:
        """One VM, stored or (scenario not placed yet) from the spec."""
        store = self.engine.store()
        found = store.vm(scenario, name)
        if found is not None:
            return found
        return self._spec_vms(scenario).get(name)

    def _spec_vms(self, scenario: str) -> dict[str, dict]:
        """The VMs of a scenario not placed yet, by name ({} when it has stored VMs)."""
        def compute() -> dict[str, dict]:
            row = self.scenario_row(scenario)
            if row is None or self.engine.store().has_vms(row.name):
                return {}
            return {v["name"]: v for v in vm_rows(self.engine, row, [])}
        return request.memo(("spec-vms", scenario), compute)

    def vm_of(self, path: CIMInstanceName) -> dict | None:
        key = P.split_key(path.keybindings.get("Name", ""))
        return self.vm(*key) if key is not None else None

    def scenario_model(self, name: str) -> Scenario | None:
        row = self.scenario_row(name)
        return self.engine.model(row) if row is not None else None

    def vm_model(self, scenario: str, name: str) -> tuple[Scenario, VM] | None:
        model = self.scenario_model(scenario)
        if model is None:
            return None
        by_name = request.memo(("model-vms", scenario), lambda: {v.name: v for v in model.vms})
        vm = by_name.get(name)
        return (model, vm) if vm is not None else None

    def scenarios(self) -> Iterator[Row]:
        for r in self.scenario_rows():
            yield scenario_row(self.engine, r, self.engine.store().vms(r.name))

    def get_scenario(self, path: CIMInstanceName) -> Row | None:
        store = self.engine.store()
        row = store.scenario(str(path.keybindings.get("Name", "")))
        return scenario_row(self.engine, row, store.vms(row.name)) if row else None

    def vms(self) -> Iterator[Row]:
        return (vm_row(v) for v in self.iter_vms())

    def get_vm(self, path: CIMInstanceName) -> Row | None:
        found = self.vm_of(path)
        return vm_row(found) if found is not None else None

    def scenario_nets(self, name: str) -> list[Row]:
        def compute() -> list[Row]:
            store = self.engine.store()
            row = self.scenario_row(name)
            if row is None:
                return []
            return net_rows(self.engine, row, store.vms(name), store.segments(name))
        return request.memo(("nets", name), compute)

    def nets(self) -> Iterator[Row]:
        for r in self.scenario_rows():
            yield from self.scenario_nets(r.name)

    def get_net(self, path: CIMInstanceName) -> Row | None:
        key = P.split_key(path.keybindings.get("Name", ""))
        if key is None:
            return None
        nets = request.memo(("nets-by-name", key[0]), lambda: {
            r.keys["Name"]: r for r in self.scenario_nets(key[0])})
        return nets.get(P.vm_key(*key))

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
        for row in self.scenario_rows():
            model = self.engine.model(row)
            if model is None:
                continue
            types = {v["name"]: v["type"] for v in self.engine.store().vms(row.name)}
            for vm in model.vms:
                yield model, vm, types.get(vm.name)

    def vssds(self) -> Iterator[Row]:
        return (vssd_row(s.name, vm, t) for s, vm, t in self.vm_models())

    def get_vssd(self, path: CIMInstanceName) -> Row | None:
        ids = P.vssd_ids(path)
        found = self.vm_model(*ids) if ids else None
        if found is None:
            return None
        stored = self.engine.store().vm(*ids)
        return vssd_row(found[0].name, found[1], stored["type"] if stored else None)

    def rasds(self, classname: str) -> Iterator[Row]:
        """The RASDs of every VM, then the allocation capabilities' RASDs of the class."""
        yield from (r for s, vm, _t in self.vm_models() for r in rasd_rows(s, vm)
                    if r.classname == classname)
        yield from self.resources.cap_rasds(classname)

    def get_rasd(self, path: CIMInstanceName) -> Row | None:
        if str(path.keybindings.get("InstanceID", "")).startswith(CAPS_PREFIX):
            return self.resources.get_cap_rasd(path)
        ids = P.rasd_ids(path)
        found = self.vm_model(*ids[:2]) if ids else None
        if found is None:
            return None
        iid = str(path.keybindings.get("InstanceID", ""))
        return next((r for r in rasd_rows(*found)
                     if r.keys["InstanceID"] == iid
                     and r.classname.lower() == path.classname.lower()), None)

    def hosts(self) -> list[CIMInstance]:
        return host_instances(self.engine)

    def get_host(self, path: CIMInstanceName) -> CIMInstance | None:
        name = str(path.keybindings.get("Name", ""))
        hosts = request.memo("hosts", lambda: {h["Name"]: h for h in self.hosts()})
        return hosts.get(name)

    def jobs(self) -> Iterator[Row]:
        return (job_row(j) for j in self.engine.store().jobs())

    def get_job(self, path: CIMInstanceName) -> Row | None:
        number = P.job_id(path)
        job = self.engine.store().job(number) if number is not None else None
        return job_row(job) if job else None

    def register(self, registry: ProviderRegistry) -> None:
        ns = EDIV_NAMESPACE
        reg = registry.register
        reg(ns, StoreProvider("EDIV_HostSystem", self.hosts, self.get_host))
        reg(ns, StoreProvider("EDIV_Scenario", self.scenarios, self.get_scenario))
        reg(ns, StoreProvider("EDIV_VirtualSystem", self.vms, self.get_vm))
        reg(ns, StoreProvider("EDIV_VirtualNetwork", self.nets, self.get_net))
        reg(ns, StoreProvider("EDIV_ScenarioSettingData", self.ssds, self.get_ssd))
        reg(ns, StoreProvider("EDIV_VirtualSystemSettingData", self.vssds, self.get_vssd))
        for cls in RASD_CLASSES:
            reg(ns, StoreProvider(cls, lambda c=cls: self.rasds(c), self.get_rasd))
        reg(ns, StoreProvider("EDIV_ConcreteJob", self.jobs, self.get_job))
        reg(ns, StoreProvider("EDIV_VirtualSystemManagementService",
                              lambda: [service_instance(self.system_name)]))
        caps = capabilities(self.vm_state_changes)
        reg(ns, StoreProvider("EDIV_VirtualSystemManagementCapabilities", lambda: caps[:1]))
        reg(ns, StoreProvider("EDIV_EnabledLogicalElementCapabilities", lambda: caps[1:]))
        self.resources.register(registry)


RASD_CLASSES = ("EDIV_ProcessorRASD", "EDIV_MemoryRASD", "EDIV_EthernetPortAllocationSettingData",
                "EDIV_StorageAllocationSettingData")


def json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
