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
- EDIV_AffectedJobElement / EDIV_OwningJobElement: job -> its scenario / the service -> job.

Each class also answers "the association instances touching this object path" from the
store by key (the VMs of one scenario, the host of one VM, the jobs of one scenario...), so
References and Associators cost the size of their answer, not the number of association
instances. The enumeration and the look-ups are built from the same functions, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pywbem import CIMInstanceName, Uint16

from ediv.provider import cim_paths as P
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

    def element_capabilities(self) -> Iterator[Row]:
        yield self._service_caps()
        yield from (self._scenario_caps(r.name) for r in self.m.scenario_rows())
        yield from (self._vm_caps(v) for v in self.m.iter_vms())

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
        return {"ediv_scenario": of_scenario, "ediv_virtualsystem": of_vm,
                "ediv_virtualsystemmanagementservice": lambda _p: [self._service_caps()],
                "ediv_virtualsystemmanagementcapabilities": lambda _p: [self._service_caps()],
                "ediv_enabledlogicalelementcapabilities": of_elem_caps}

    # -- EDIV_AffectedJobElement and EDIV_OwningJobElement
    @staticmethod
    def _affected_job(job: dict) -> Row:
        return _assoc("EDIV_AffectedJobElement", {
            "AffectingElement": P.job_path(job["id"]),
            "AffectedElement": P.scenario_path(job["scenario"]), "ElementEffects": [Uint16(5)]})

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
            return [self._affected_job(j) for j in self._jobs(name)] if name else []
        return {"ediv_concretejob": of_job, "ediv_scenario": of_scenario}

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

    def register(self, registry: ProviderRegistry) -> None:
        for cls, fn, touching in (
            ("EDIV_HostedDependency", self.hosted_dependency, self.hosted_dependency_touching()),
            ("EDIV_SystemComponent", self.system_component, self.system_component_touching()),
            ("EDIV_SettingsDefineState", self.settings_define_state,
             self._setting_touching(self._sds)),
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
        ):
            registry.register(EDIV_NAMESPACE, StoreProvider(cls, fn, touching=_by_class(touching)))


def _by_class(table: dict[str, Touching]) -> Touching:
    """The look-up for a target path by its class name (no rows for any other class)."""
    def touching(path: CIMInstanceName) -> Iterable[Row]:
        fn = table.get(path.classname.lower())
        return fn(path) if fn is not None else []
    return touching
