"""Object paths of the root/ediv instances: one function per class, used by the instance
providers, the associations, the methods and the client alike (so the keys agree)."""

from __future__ import annotations

from pywbem import CIMInstanceName

from ediv.provider.schema import EDIV_NAMESPACE

NS = EDIV_NAMESPACE
SERVICE_NAME = "ediv"
VSMCAPS_ID = "ediv:capabilities:management"
SCENARIO_CAPS_ID = "ediv:capabilities:scenario"
VM_CAPS_ID = "ediv:capabilities:virtualsystem"
# RequestStateChange on EDIV_VirtualSystem (DSP1057): RequestedState -> ediv-host vm ACTION
# (2 of a paused VM resumes it; 3 always ends stopped, killed after stop_timeout; 4 only
# asks the VM to halt; 9 Quiesce pauses it)
VM_REQUESTS: dict[int, str] = {2: "start", 3: "stop", 4: "shutdown", 9: "pause",
                               10: "reboot", 11: "reset"}


def _system(classname: str, name: str) -> CIMInstanceName:
    return CIMInstanceName(classname, {"CreationClassName": classname, "Name": name},
                           namespace=NS)


def _setting(classname: str, instance_id: str) -> CIMInstanceName:
    return CIMInstanceName(classname, {"InstanceID": instance_id}, namespace=NS)


def host_path(name: str) -> CIMInstanceName:
    return _system("EDIV_HostSystem", name)


def scenario_path(name: str) -> CIMInstanceName:
    return _system("EDIV_Scenario", name)


def vm_key(scenario: str, vm: str) -> str:
    """EDIV_VirtualSystem.Name: VM names are unique within a scenario only."""
    return f"{scenario}/{vm}"


def split_key(key: str) -> tuple[str, str] | None:
    scenario, sep, name = str(key).partition("/")
    return (scenario, name) if sep and scenario and name else None


def vm_path(scenario: str, vm: str) -> CIMInstanceName:
    return _system("EDIV_VirtualSystem", vm_key(scenario, vm))


def net_path(scenario: str, net: str) -> CIMInstanceName:
    return _system("EDIV_VirtualNetwork", vm_key(scenario, net))


def ssd_path(scenario: str) -> CIMInstanceName:
    return _setting("EDIV_ScenarioSettingData", f"ediv:scenario:{scenario}")


def vssd_path(scenario: str, vm: str) -> CIMInstanceName:
    return _setting("EDIV_VirtualSystemSettingData", f"ediv:vm:{vm_key(scenario, vm)}")


def rasd_path(classname: str, scenario: str, vm: str, part: str) -> CIMInstanceName:
    return _setting(classname, f"ediv:rasd:{vm_key(scenario, vm)}:{part}")


def vssd_ids(path: CIMInstanceName) -> tuple[str, str] | None:
    """(scenario, vm) of an EDIV_VirtualSystemSettingData path (InstanceID ediv:vm:S/V)."""
    text = str(path.keybindings.get("InstanceID", ""))
    prefix = "ediv:vm:"
    return split_key(text[len(prefix):]) if text.startswith(prefix) else None


def rasd_ids(path: CIMInstanceName) -> tuple[str, str, str] | None:
    """(scenario, vm, part) of a RASD path (InstanceID ediv:rasd:S/V:PART; PART is cpu, mem,
    disk or ifN, and has no ':', so a VM name with ':' still splits)."""
    text = str(path.keybindings.get("InstanceID", ""))
    prefix = "ediv:rasd:"
    if not text.startswith(prefix):
        return None
    key, sep, part = text[len(prefix):].rpartition(":")
    ids = split_key(key) if sep and part else None
    return (*ids, part) if ids else None


def job_id(path: CIMInstanceName) -> int | None:
    text = str(path.keybindings.get("InstanceID", ""))
    prefix = "ediv:job:"
    if not text.startswith(prefix) or not text[len(prefix):].isdigit():
        return None
    return int(text[len(prefix):])


def job_element(job: dict) -> CIMInstanceName | None:
    """What a job affects: its VM (per-VM jobs) or its scenario."""
    ids = split_key(job.get("element") or "")
    if ids is not None:
        return vm_path(*ids)
    return scenario_path(job["scenario"]) if job.get("scenario") else None


def job_path(job: int) -> CIMInstanceName:
    return _setting("EDIV_ConcreteJob", f"ediv:job:{job}")


def service_path(system_name: str) -> CIMInstanceName:
    return CIMInstanceName("EDIV_VirtualSystemManagementService", {
        "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": system_name,
        "CreationClassName": "EDIV_VirtualSystemManagementService", "Name": SERVICE_NAME,
    }, namespace=NS)


def vsm_caps_path() -> CIMInstanceName:
    return _setting("EDIV_VirtualSystemManagementCapabilities", VSMCAPS_ID)


def elem_caps_path(instance_id: str) -> CIMInstanceName:
    return _setting("EDIV_EnabledLogicalElementCapabilities", instance_id)
