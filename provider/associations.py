"""root/ediv association instances, computed from the same store rows as the elements.

- EDIV_HostedDependency: VM (Dependent) -> the host it runs on (Antecedent).
- EDIV_SystemComponent: scenario -> its VMs and nets.
- EDIV_SettingsDefineState / EDIV_ElementSettingData: scenario <-> EDIV_ScenarioSettingData,
  VM <-> EDIV_VirtualSystemSettingData.
- EDIV_VirtualSystemSettingDataComponent: VSSD -> its RASDs.
- EDIV_HostedService: every cluster host -> the management service (the service manages the
  cluster as a whole, so each host is a hosting system of it).
- EDIV_ServiceAffectsElement: the service -> every scenario and VM (ElementEffects 5 Manages).
- EDIV_ElementCapabilities: service, scenarios and VMs -> their capabilities.
- EDIV_AffectedJobElement / EDIV_OwningJobElement: job -> its VM (per-VM jobs) or scenario /
  the service -> job.
- EDIV_HostedResourcePool: host -> its pools (``resources.py``).
- EDIV_ElementAllocatedFromPool / EDIV_ResourceAllocationFromPool: the pool of the VM's host
  -> each device / RASD of a placed VM.
- EDIV_SettingsDefineCapabilities: allocation capabilities -> Default, Minimum, Maximum,
  Increment RASDs; EDIV_ElementCapabilities also host -> management capabilities and
  pool -> allocation capabilities.
- EDIV_SystemDevice: VM -> its devices; EDIV_SettingsDefineState also device -> its RASD;
  EDIV_NetworkPortOnNetwork: net -> the network ports on it.

Each class also answers "the association instances touching this object path" from the
store by key (the VMs of one scenario, the host of one VM, the jobs of one scenario...), so
References and Associators cost the size of their answer, not the number of association
instances. The enumeration and the look-ups are built from the same functions, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pywbem import CIMInstanceName, Uint16

from ediv.provider import cim_paths as P
from ediv.provider import resources as R
from ediv.provider.engine_providers import (
    RASD_CLASSES,
    EngineModel,
    StoreProvider,
    rasd_rows,
)
from ediv.provider.providers import ProviderRegistry, Row
from ediv.provider.schema import EDIV_NAMESPACE

Touching = Callable[[CIMInstanceName], Iterable[Row]]


def _assoc(classname: str, props: dict) -> Row:
    keys = {k: v for k, v in props.items() if isinstance(v, CIMInstanceName)}
    return Row(classname, keys, props, EDIV_NAMESPACE)


def _key(path: CIMInstanceName, name: str) -> str:
    return str(path.keybindings.get(name, ""))


def _suffix(path: CIMInstanceName, prefix: str) -> str | None:
    text = _key(path, "InstanceID")
    return text[len(prefix):] if text.startswith(prefix) else None


class Associations:
    def __init__(self, model: EngineModel):
        self.m = model

    # -- element look-ups by path (None: no such element)
    def _scenario(self, path: CIMInstanceName) -> str | None:
        name = _key(path, "Name")
        return name if self.m.scenario_row(name) is not None else None

    def _vm(self, path: CIMInstanceName) -> dict | None:
        return self.m.vm_of(path)

    def _jobs(self, scenario: str | None = None) -> list[dict]:
        return self.m.engine.store().jobs(scenario)

    # -- EDIV_HostedDependency
    def _hosted(self, v: dict) -> Row:
        return _assoc("EDIV_HostedDependency", {
            "Antecedent": P.host_path(v["host"]), "Dependent": P.vm_path(v["scenario"], v["name"])})

    def hosted_dependency(self) -> Iterator[Row]:
        return (self._hosted(v) for v in self.m.iter_vms() if v["host"])

    def hosted_dependency_touching(self) -> dict[str, Touching]:
        def of_vm(path):
            v = self._vm(path)
            return [self._hosted(v)] if v and v["host"] else []
        return {"ediv_virtualsystem": of_vm, "ediv_hostsystem": lambda path: [
            self._hosted(v) for v in self.m.engine.store().vms_on_host(_key(path, "Name"))]}

    # -- EDIV_SystemComponent
    @staticmethod
    def _component(scenario: str, part: CIMInstanceName) -> Row:
        return _assoc("EDIV_SystemComponent", {
            "GroupComponent": P.scenario_path(scenario), "PartComponent": part})

    def _scenario_components(self, name: str) -> Iterator[Row]:
        for v in self.m.scenario_vms(name):
            yield self._component(name, P.vm_path(name, v["name"]))
        for net in self.m.scenario_nets(name):
            yield self._component(name, net.path())

    def system_component(self) -> Iterator[Row]:
        for row in self.m.scenario_rows():
            yield from (self._component(row.name, P.vm_path(row.name, v["name"]))
                        for v in self.m.scenario_vms(row.name))
        for row in self.m.scenario_rows():
            yield from (self._component(row.name, net.path())
                        for net in self.m.scenario_nets(row.name))

    def system_component_touching(self) -> dict[str, Touching]:
        def of_scenario(path):
            name = self._scenario(path)
            return self._scenario_components(name) if name else []

        def of_vm(path):
            v = self._vm(path)
            return [self._component(v["scenario"], P.vm_path(v["scenario"], v["name"]))] \
                if v else []

        def of_net(path):
            net = self.m.get_net(path)
            key = P.split_key(_key(path, "Name"))
            return [self._component(key[0], net.path())] if net and key else []
        return {"ediv_scenario": of_scenario, "ediv_virtualsystem": of_vm,
                "ediv_virtualnetwork": of_net}

    # -- EDIV_SettingsDefineState and EDIV_ElementSettingData
    def _setting_pairs(self) -> Iterator[tuple[CIMInstanceName, CIMInstanceName]]:
        for row in self.m.scenario_rows():
            yield P.scenario_path(row.name), P.ssd_path(row.name)
        for v in self.m.iter_vms():
            yield P.vm_path(v["scenario"], v["name"]), P.vssd_path(v["scenario"], v["name"])

    def _setting_pair_touching(self, path: CIMInstanceName
                               ) -> list[tuple[CIMInstanceName, CIMInstanceName]]:
        cls = path.classname.lower()
        name: str | None = None
        vm: dict | None = None
        if cls == "ediv_scenario":
            name = self._scenario(path)
        elif cls == "ediv_scenariosettingdata":
            found = _suffix(path, "ediv:scenario:")
            name = found if found is not None and self.m.scenario_row(found) else None
        elif cls == "ediv_virtualsystem":
            vm = self._vm(path)
        elif cls == "ediv_virtualsystemsettingdata":
            ids = P.vssd_ids(path)
            vm = self.m.vm(*ids) if ids else None
        if name is not None:
            return [(P.scenario_path(name), P.ssd_path(name))]
        if vm is not None:
            return [(P.vm_path(vm["scenario"], vm["name"]),
                     P.vssd_path(vm["scenario"], vm["name"]))]
        return []

    @staticmethod
    def _sds(e: CIMInstanceName, s: CIMInstanceName) -> Row:
        return _assoc("EDIV_SettingsDefineState", {"ManagedElement": e, "SettingData": s})

    @staticmethod
    def _esd(e: CIMInstanceName, s: CIMInstanceName) -> Row:
        return _assoc("EDIV_ElementSettingData", {
            "ManagedElement": e, "SettingData": s, "IsDefault": Uint16(1),
            "IsCurrent": Uint16(1), "IsNext": Uint16(1)})

    def settings_define_state(self) -> Iterator[Row]:
        return (self._sds(e, s) for e, s in self._setting_pairs())

    def element_setting_data(self) -> Iterator[Row]:
        return (self._esd(e, s) for e, s in self._setting_pairs())

    def _setting_touching(self, make: Callable[[CIMInstanceName, CIMInstanceName], Row]
                          ) -> dict[str, Touching]:
        def touching(path):
            return [make(e, s) for e, s in self._setting_pair_touching(path)]
        return {c: touching for c in ("ediv_scenario", "ediv_scenariosettingdata",
                                      "ediv_virtualsystem", "ediv_virtualsystemsettingdata")}

    # -- devices: EDIV_SettingsDefineState device -> RASD, EDIV_SystemDevice VM -> devices
    def _devices(self, scenario: str, vm: str) -> list[Row]:
        return self.m.resources.vm_devices(scenario, vm)

    def _device_state(self, device: Row) -> Row:
        ids = P.split_key(device.keys["SystemName"])
        assert ids is not None
        return self._sds(device.path(), R.rasd_part_path(*ids, device.keys["DeviceID"]))

    def device_settings(self) -> Iterator[Row]:
        for v in self.m.iter_vms():
            yield from (self._device_state(d) for d in self._devices(v["scenario"], v["name"]))

    def _device_of(self, path: CIMInstanceName) -> Row | None:
        return self.m.resources.get_device(path)

    def device_settings_touching(self) -> dict[str, Touching]:
        def of_device(path):
            d = self._device_of(path)
            return [self._device_state(d)] if d is not None else []

        def of_rasd(path):
            ids = P.rasd_ids(path)
            if ids is None:
                return []
            return [self._device_state(d) for d in self._devices(*ids[:2])
                    if d.keys["DeviceID"] == ids[2]
                    and R.rasd_part_path(*ids).classname.lower() == path.classname.lower()]
        out: dict[str, Touching] = {c.lower(): of_device for c in R.DEVICE_CLASSES}
        out.update({c.lower(): of_rasd for c in RASD_CLASSES})
        return out

    @staticmethod
    def _system_device(device: Row) -> Row:
        ids = P.split_key(device.keys["SystemName"])
        assert ids is not None
        return _assoc("EDIV_SystemDevice", {"GroupComponent": P.vm_path(*ids),
                                            "PartComponent": device.path()})

    def system_device(self) -> Iterator[Row]:
        for v in self.m.iter_vms():
            yield from (self._system_device(d) for d in self._devices(v["scenario"], v["name"]))

    def system_device_touching(self) -> dict[str, Touching]:
        def of_vm(path):
            v = self._vm(path)
            return [self._system_device(d) for d in self._devices(v["scenario"], v["name"])] \
                if v else []

        def of_device(path):
            d = self._device_of(path)
            return [self._system_device(d)] if d is not None else []
        out: dict[str, Touching] = {c.lower(): of_device for c in R.DEVICE_CLASSES}
        out["ediv_virtualsystem"] = of_vm
        return out

    # -- EDIV_NetworkPortOnNetwork: net -> ports
    @staticmethod
    def _on_net(device: Row) -> Row:
        ids = P.split_key(device.keys["SystemName"])
        assert ids is not None
        return _assoc("EDIV_NetworkPortOnNetwork", {
            "Antecedent": P.net_path(ids[0], device.props["NetworkName"]),
            "Dependent": device.path()})

    def _ports(self, scenario: str, vm: str) -> list[Row]:
        return [d for d in self._devices(scenario, vm) if d.classname == "EDIV_NetworkPort"]

    def port_on_network(self) -> Iterator[Row]:
        for v in self.m.iter_vms():
            yield from (self._on_net(d) for d in self._ports(v["scenario"], v["name"]))

    def port_on_network_touching(self) -> dict[str, Touching]:
        def of_port(path):
            d = self._device_of(path)
            return [self._on_net(d)] if d is not None else []

        def of_net(path):
            key = P.split_key(_key(path, "Name"))
            model = self.m.scenario_model(key[0]) if key and self.m.get_net(path) else None
            if model is None:
                return []
            return [self._on_net(d) for vm in model.vms if vm.name and key[1] in vm.nets
                    for d in self._ports(key[0], vm.name)
                    if d.props["NetworkName"] == key[1]]
        return {"ediv_networkport": of_port, "ediv_virtualnetwork": of_net}

    # -- pools: EDIV_HostedResourcePool, EDIV_ElementAllocatedFromPool,
    #    EDIV_ResourceAllocationFromPool
    def _hosted_pool(self, host: str, kind: str) -> Row:
        return _assoc("EDIV_HostedResourcePool", {
            "GroupComponent": P.host_path(host), "PartComponent": R.pool_path(host, kind)})

    def hosted_pool(self) -> Iterator[Row]:
        for host in self.m.resources.hosts():
            yield from (self._hosted_pool(host, k) for k in R.POOL_KINDS)

    def hosted_pool_touching(self) -> dict[str, Touching]:
        def of_host(path):
            name = _key(path, "Name")
            return [self._hosted_pool(name, k) for k in R.POOL_KINDS] \
                if name in self.m.resources.hosts() else []

        def of_pool(path):
            ids = R.pool_ids(path)
            return [self._hosted_pool(*ids)] if ids and ids[0] in self.m.resources.hosts() \
                else []
        out: dict[str, Touching] = {c.lower(): of_pool for c in R.POOL_CLASSES}
        out["ediv_hostsystem"] = of_host
        return out

    def _placed_parts(self, scenario: str, vm: str) -> tuple[str, list[Row]] | None:
        """The host of a placed VM (known to the server) and the VM's devices."""
        v = self.m.vm(scenario, vm)
        if not v or not v["host"] or v["host"] not in self.m.resources.hosts():
            return None
        return v["host"], self._devices(scenario, vm)

    @staticmethod
    def _from_pool(classname: str, host: str, device: Row, as_rasd: bool) -> Row:
        part = device.keys["DeviceID"]
        kind = R.part_kind(part)
        assert kind is not None
        if as_rasd:
            ids = P.split_key(device.keys["SystemName"])
            assert ids is not None
            dependent = R.rasd_part_path(*ids, part)
        else:
            dependent = device.path()
        return _assoc(classname, {"Antecedent": R.pool_path(host, kind), "Dependent": dependent})

    def _allocated(self, classname: str, as_rasd: bool) -> Callable[[], Iterator[Row]]:
        def rows() -> Iterator[Row]:
            for v in self.m.iter_vms():
                placed = self._placed_parts(v["scenario"], v["name"])
                if placed:
                    yield from (self._from_pool(classname, placed[0], d, as_rasd)
                                for d in placed[1])
        return rows

    def _allocated_touching(self, classname: str, as_rasd: bool) -> dict[str, Touching]:
        def of_pool(path):
            ids = R.pool_ids(path)
            if not ids or ids[0] not in self.m.resources.hosts():
                return []
            out = []
            for v in self.m.engine.store().vms_on_host(ids[0]):
                for d in self._devices(v["scenario"], v["name"]):
                    if R.part_kind(d.keys["DeviceID"]) == ids[1]:
                        out.append(self._from_pool(classname, ids[0], d, as_rasd))
            return out

        def of_member(path):
            ids = P.rasd_ids(path) if as_rasd else R.device_ids(path)
            placed = self._placed_parts(*ids[:2]) if ids else None
            if not placed:
                return []
            return [self._from_pool(classname, placed[0], d, as_rasd) for d in placed[1]
                    if d.keys["DeviceID"] == ids[2]]
        out: dict[str, Touching] = {c.lower(): of_pool for c in R.POOL_CLASSES}
        members = RASD_CLASSES if as_rasd else R.DEVICE_CLASSES
        out.update({c.lower(): of_member for c in members})
        return out

    # -- EDIV_SettingsDefineCapabilities
    @staticmethod
    def _defines_caps(host: str, kind: str, role: str) -> Row:
        value_role, value_range = R.CAP_ROLES[role]
        return _assoc("EDIV_SettingsDefineCapabilities", {
            "GroupComponent": R.caps_path(host, kind),
            "PartComponent": R.cap_rasd_path(host, kind, role),
            "PropertyPolicy": Uint16(0), "ValueRole": Uint16(value_role),
            "ValueRange": Uint16(value_range)})

    def defines_caps(self) -> Iterator[Row]:
        for host in self.m.resources.hosts():
            for kind in R.POOL_KINDS:
                yield from (self._defines_caps(host, kind, role) for role in R.CAP_ROLES)

    def defines_caps_touching(self) -> dict[str, Touching]:
        def touching(path):
            ids = R.caps_ids(path)
            if not ids or ids[0] not in self.m.resources.hosts():
                return []
            roles = [ids[2]] if ids[2] else list(R.CAP_ROLES)
            return [self._defines_caps(ids[0], ids[1], role) for role in roles]
        out: dict[str, Touching] = {R.CAPS_CLASS.lower(): touching}
        out.update({c.lower(): touching for c in RASD_CLASSES})
        return out

    # -- EDIV_VirtualSystemSettingDataComponent
    @staticmethod
    def _vssd_parts(scenario, vm) -> Iterator[Row]:
        group = P.vssd_path(scenario.name, vm.name)
        for rasd in rasd_rows(scenario, vm):
            yield _assoc("EDIV_VirtualSystemSettingDataComponent", {
                "GroupComponent": group, "PartComponent": rasd.path()})

    def vssd_component(self) -> Iterator[Row]:
        for scenario, vm, _t in self.m.vm_models():
            yield from self._vssd_parts(scenario, vm)

    def vssd_component_touching(self) -> dict[str, Touching]:
        def of_vssd(path):
            ids = P.vssd_ids(path)
            found = self.m.vm_model(*ids) if ids else None
            return self._vssd_parts(*found) if found else []

        def of_rasd(path):
            ids = P.rasd_ids(path)
            found = self.m.vm_model(*ids[:2]) if ids else None
            return self._vssd_parts(*found) if found else []
        out: dict[str, Touching] = {"ediv_virtualsystemsettingdata": of_vssd}
        out.update({c.lower(): of_rasd for c in RASD_CLASSES})
        return out

    # -- EDIV_HostedService
    def _hosted_service(self, host: str) -> Row:
        return _assoc("EDIV_HostedService", {
            "Antecedent": P.host_path(host), "Dependent": P.service_path(self.m.system_name)})

    def hosted_service(self) -> Iterator[Row]:
        return (self._hosted_service(h["Name"]) for h in self.m.hosts())

    def hosted_service_touching(self) -> dict[str, Touching]:
        def of_host(path):
            host = self.m.get_host(path)
            return [self._hosted_service(host["Name"])] if host is not None else []
        return {"ediv_hostsystem": of_host,
                "ediv_virtualsystemmanagementservice": lambda _p: self.hosted_service()}

    # -- EDIV_ServiceAffectsElement
    def _affects(self, target: CIMInstanceName) -> Row:
        return _assoc("EDIV_ServiceAffectsElement", {
            "AffectingElement": P.service_path(self.m.system_name), "AffectedElement": target,
            "ElementEffects": [Uint16(5)]})

    def service_affects(self) -> Iterator[Row]:
        for r in self.m.scenario_rows():
            yield self._affects(P.scenario_path(r.name))
        for v in self.m.iter_vms():
            yield self._affects(P.vm_path(v["scenario"], v["name"]))

    def service_affects_touching(self) -> dict[str, Touching]:
        def of_scenario(path):
            name = self._scenario(path)
            return [self._affects(P.scenario_path(name))] if name else []

        def of_vm(path):
            v = self._vm(path)
            return [self._affects(P.vm_path(v["scenario"], v["name"]))] if v else []
        return {"ediv_scenario": of_scenario, "ediv_virtualsystem": of_vm,
                "ediv_virtualsystemmanagementservice": lambda _p: self.service_affects()}

    # -- EDIV_ElementCapabilities
    def _service_caps(self) -> Row:
        return _assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.service_path(self.m.system_name),
            "Capabilities": P.vsm_caps_path(), "Characteristics": [Uint16(2)]})

    @staticmethod
    def _scenario_caps(name: str) -> Row:
        return _assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.scenario_path(name),
            "Capabilities": P.elem_caps_path(P.SCENARIO_CAPS_ID)})

    @staticmethod
    def _vm_caps(v: dict) -> Row:
        return _assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.vm_path(v["scenario"], v["name"]),
            "Capabilities": P.elem_caps_path(P.VM_CAPS_ID)})

    @staticmethod
    def _host_caps(host: str) -> Row:
        return _assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.host_path(host), "Capabilities": P.vsm_caps_path(),
            "Characteristics": [Uint16(2)]})

    @staticmethod
    def _pool_caps(host: str, kind: str) -> Row:
        return _assoc("EDIV_ElementCapabilities", {
            "ManagedElement": R.pool_path(host, kind), "Capabilities": R.caps_path(host, kind),
            "Characteristics": [Uint16(2)]})

    def element_capabilities(self) -> Iterator[Row]:
        yield self._service_caps()
        yield from (self._scenario_caps(r.name) for r in self.m.scenario_rows())
        yield from (self._vm_caps(v) for v in self.m.iter_vms())
        hosts = self.m.resources.hosts()
        yield from (self._host_caps(h) for h in hosts)
        yield from (self._pool_caps(h, k) for h in hosts for k in R.POOL_KINDS)

    def element_capabilities_touching(self) -> dict[str, Touching]:
        def of_scenario(path):
            name = self._scenario(path)
            return [self._scenario_caps(name)] if name else []

        def of_vm(path):
            v = self._vm(path)
            return [self._vm_caps(v)] if v else []

        def of_elem_caps(path):
            which = _key(path, "InstanceID")
            if which == P.SCENARIO_CAPS_ID:
                return (self._scenario_caps(r.name) for r in self.m.scenario_rows())
            if which == P.VM_CAPS_ID:
                return (self._vm_caps(v) for v in self.m.iter_vms())
            return []
        def of_host(path):
            name = _key(path, "Name")
            return [self._host_caps(name)] if name in self.m.resources.hosts() else []

        def of_vsm_caps(_path):
            return [self._service_caps(), *(self._host_caps(h)
                                            for h in self.m.resources.hosts())]

        def of_pool(path):
            ids = R.pool_ids(path)
            return [self._pool_caps(*ids)] if ids and ids[0] in self.m.resources.hosts() \
                else []

        def of_alloc_caps(path):
            ids = R.caps_ids(path)
            ok = ids and ids[2] is None and ids[0] in self.m.resources.hosts()
            return [self._pool_caps(ids[0], ids[1])] if ok else []
        out: dict[str, Touching] = {c.lower(): of_pool for c in R.POOL_CLASSES}
        out.update({"ediv_scenario": of_scenario, "ediv_virtualsystem": of_vm,
                    "ediv_hostsystem": of_host,
                    "ediv_virtualsystemmanagementservice": lambda _p: [self._service_caps()],
                    "ediv_virtualsystemmanagementcapabilities": of_vsm_caps,
                    "ediv_enabledlogicalelementcapabilities": of_elem_caps,
                    R.CAPS_CLASS.lower(): of_alloc_caps})
        return out

    # -- EDIV_AffectedJobElement and EDIV_OwningJobElement
    @staticmethod
    def _affected_job(job: dict) -> Row:
        return _assoc("EDIV_AffectedJobElement", {
            "AffectingElement": P.job_path(job["id"]),
            "AffectedElement": P.job_element(job), "ElementEffects": [Uint16(5)]})

    def affected_job(self) -> Iterator[Row]:
        names = {r.name for r in self.m.scenario_rows()}
        return (self._affected_job(j) for j in self._jobs() if j["scenario"] in names)

    def _job(self, path: CIMInstanceName) -> dict | None:
        number = P.job_id(path)
        return self.m.engine.store().job(number) if number is not None else None

    def affected_job_touching(self) -> dict[str, Touching]:
        def of_job(path):
            job = self._job(path)
            ok = job and job["scenario"] and self.m.scenario_row(job["scenario"])
            return [self._affected_job(job)] if ok else []

        def of_scenario(path):
            name = self._scenario(path)
            return [self._affected_job(j) for j in self._jobs(name)
                    if not j.get("element")] if name else []

        def of_vm(path):
            v = self._vm(path)
            if not v:
                return []
            key = P.vm_key(v["scenario"], v["name"])
            return [self._affected_job(j) for j in self._jobs(v["scenario"])
                    if j.get("element") == key]
        return {"ediv_concretejob": of_job, "ediv_scenario": of_scenario,
                "ediv_virtualsystem": of_vm}

    def _owning(self, job: dict) -> Row:
        return _assoc("EDIV_OwningJobElement", {
            "OwningElement": P.service_path(self.m.system_name),
            "OwnedElement": P.job_path(job["id"])})

    def owning_job(self) -> Iterator[Row]:
        return (self._owning(j) for j in self._jobs())

    def owning_job_touching(self) -> dict[str, Touching]:
        def of_job(path):
            job = self._job(path)
            return [self._owning(job)] if job else []
        return {"ediv_concretejob": of_job,
                "ediv_virtualsystemmanagementservice": lambda _p: self.owning_job()}

    @staticmethod
    def _chain(*sources: Callable[[], Iterable[Row]]) -> Callable[[], Iterator[Row]]:
        def rows() -> Iterator[Row]:
            for source in sources:
                yield from source()
        return rows

    def register(self, registry: ProviderRegistry) -> None:
        for cls, fn, touching in (
            ("EDIV_HostedDependency", self.hosted_dependency, self.hosted_dependency_touching()),
            ("EDIV_SystemComponent", self.system_component, self.system_component_touching()),
            ("EDIV_SettingsDefineState", self._chain(self.settings_define_state,
                                                     self.device_settings),
             {**self._setting_touching(self._sds), **self.device_settings_touching()}),
            ("EDIV_ElementSettingData", self.element_setting_data,
             self._setting_touching(self._esd)),
            ("EDIV_VirtualSystemSettingDataComponent", self.vssd_component,
             self.vssd_component_touching()),
            ("EDIV_HostedService", self.hosted_service, self.hosted_service_touching()),
            ("EDIV_ServiceAffectsElement", self.service_affects,
             self.service_affects_touching()),
            ("EDIV_ElementCapabilities", self.element_capabilities,
             self.element_capabilities_touching()),
            ("EDIV_AffectedJobElement", self.affected_job, self.affected_job_touching()),
            ("EDIV_OwningJobElement", self.owning_job, self.owning_job_touching()),
            ("EDIV_SystemDevice", self.system_device, self.system_device_touching()),
            ("EDIV_NetworkPortOnNetwork", self.port_on_network,
             self.port_on_network_touching()),
            ("EDIV_HostedResourcePool", self.hosted_pool, self.hosted_pool_touching()),
            ("EDIV_ElementAllocatedFromPool",
             self._allocated("EDIV_ElementAllocatedFromPool", False),
             self._allocated_touching("EDIV_ElementAllocatedFromPool", False)),
            ("EDIV_ResourceAllocationFromPool",
             self._allocated("EDIV_ResourceAllocationFromPool", True),
             self._allocated_touching("EDIV_ResourceAllocationFromPool", True)),
            ("EDIV_SettingsDefineCapabilities", self.defines_caps,
             self.defines_caps_touching()),
        ):
            registry.register(EDIV_NAMESPACE, StoreProvider(cls, fn, touching=_by_class(touching)))


def _by_class(table: dict[str, Touching]) -> Touching:
    """The look-up for a target path by its class name (no rows for any other class)."""
    def touching(path: CIMInstanceName) -> Iterable[Row]:
        fn = table.get(path.classname.lower())
        return fn(path) if fn is not None else []
    return touching
