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
- EDIV_AffectedJobElement / EDIV_OwningJobElement: job -> its VM or scenario / the service ->
  job.
"""

from __future__ import annotations

from pywbem import CIMInstance, Uint16

from ediv.provider import cim_paths as P
from ediv.provider.engine_providers import (
    EngineModel,
    StoreProvider,
    host_instances,
    instance,
    rasd_instances,
)
from ediv.provider.providers import ProviderRegistry
from ediv.provider.schema import EDIV_NAMESPACE


def _assoc(classname: str, props: dict) -> CIMInstance:
    from pywbem import CIMInstanceName

    keys = {k: v for k, v in props.items() if isinstance(v, CIMInstanceName)}
    path = CIMInstanceName(classname, keys, namespace=EDIV_NAMESPACE)
    return instance(classname, path, props)


class Associations:
    def __init__(self, model: EngineModel):
        self.m = model

    def hosted_dependency(self) -> list[CIMInstance]:
        return [_assoc("EDIV_HostedDependency", {
            "Antecedent": P.host_path(v["host"]), "Dependent": P.vm_path(v["scenario"], v["name"])})
            for v in self.m.all_vms() if v["host"]]

    def system_component(self) -> list[CIMInstance]:
        out = [_assoc("EDIV_SystemComponent", {
            "GroupComponent": P.scenario_path(v["scenario"]),
            "PartComponent": P.vm_path(v["scenario"], v["name"])}) for v in self.m.all_vms()]
        for row in self.m.scenario_rows():
            model = self.m.engine.model(row)
            for net in model.nets if model else []:
                out.append(_assoc("EDIV_SystemComponent", {
                    "GroupComponent": P.scenario_path(row.name),
                    "PartComponent": P.net_path(row.name, net.name)}))
        return out

    def _setting_pairs(self):
        for row in self.m.scenario_rows():
            yield P.scenario_path(row.name), P.ssd_path(row.name)
        for v in self.m.all_vms():
            yield P.vm_path(v["scenario"], v["name"]), P.vssd_path(v["scenario"], v["name"])

    def settings_define_state(self) -> list[CIMInstance]:
        return [_assoc("EDIV_SettingsDefineState", {"ManagedElement": e, "SettingData": s})
                for e, s in self._setting_pairs()]

    def element_setting_data(self) -> list[CIMInstance]:
        return [_assoc("EDIV_ElementSettingData", {
            "ManagedElement": e, "SettingData": s, "IsDefault": Uint16(1),
            "IsCurrent": Uint16(1), "IsNext": Uint16(1)}) for e, s in self._setting_pairs()]

    def vssd_component(self) -> list[CIMInstance]:
        out = []
        for scenario, vm, _t in self.m.vm_models():
            group = P.vssd_path(scenario.name, vm.name)
            for rasd in rasd_instances(scenario, vm):
                path = rasd.path.copy()
                path.namespace = EDIV_NAMESPACE
                out.append(_assoc("EDIV_VirtualSystemSettingDataComponent", {
                    "GroupComponent": group, "PartComponent": path}))
        return out

    def hosted_service(self) -> list[CIMInstance]:
        service = P.service_path(self.m.system_name)
        return [_assoc("EDIV_HostedService", {
            "Antecedent": P.host_path(h["Name"]), "Dependent": service})
            for h in host_instances(self.m.engine)]

    def service_affects(self) -> list[CIMInstance]:
        service = P.service_path(self.m.system_name)
        targets = [P.scenario_path(r.name) for r in self.m.scenario_rows()]
        targets += [P.vm_path(v["scenario"], v["name"]) for v in self.m.all_vms()]
        return [_assoc("EDIV_ServiceAffectsElement", {
            "AffectingElement": service, "AffectedElement": t, "ElementEffects": [Uint16(5)]})
            for t in targets]

    def element_capabilities(self) -> list[CIMInstance]:
        out = [_assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.service_path(self.m.system_name),
            "Capabilities": P.vsm_caps_path(), "Characteristics": [Uint16(2)]})]
        scenario_caps = P.elem_caps_path(P.SCENARIO_CAPS_ID)
        vm_caps = P.elem_caps_path(P.VM_CAPS_ID)
        out += [_assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.scenario_path(r.name), "Capabilities": scenario_caps})
            for r in self.m.scenario_rows()]
        out += [_assoc("EDIV_ElementCapabilities", {
            "ManagedElement": P.vm_path(v["scenario"], v["name"]), "Capabilities": vm_caps})
            for v in self.m.all_vms()]
        return out

    def affected_job(self) -> list[CIMInstance]:
        store = self.m.engine.store()
        names = {r.name for r in store.scenarios()}
        return [_assoc("EDIV_AffectedJobElement", {
            "AffectingElement": P.job_path(j["id"]),
            "AffectedElement": P.job_element(j), "ElementEffects": [Uint16(5)]})
            for j in store.jobs() if j["scenario"] in names]

    def owning_job(self) -> list[CIMInstance]:
        service = P.service_path(self.m.system_name)
        return [_assoc("EDIV_OwningJobElement", {
            "OwningElement": service, "OwnedElement": P.job_path(j["id"])})
            for j in self.m.engine.store().jobs()]

    def register(self, registry: ProviderRegistry) -> None:
        for cls, fn in (
            ("EDIV_HostedDependency", self.hosted_dependency),
            ("EDIV_SystemComponent", self.system_component),
            ("EDIV_SettingsDefineState", self.settings_define_state),
            ("EDIV_ElementSettingData", self.element_setting_data),
            ("EDIV_VirtualSystemSettingDataComponent", self.vssd_component),
            ("EDIV_HostedService", self.hosted_service),
            ("EDIV_ServiceAffectsElement", self.service_affects),
            ("EDIV_ElementCapabilities", self.element_capabilities),
            ("EDIV_AffectedJobElement", self.affected_job),
            ("EDIV_OwningJobElement", self.owning_job),
        ):
            registry.register(EDIV_NAMESPACE, StoreProvider(cls, fn))
