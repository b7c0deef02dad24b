"""Object paths of the root/ediv instances: one function per class, used by the instance
providers, the associations and the methods (so the keys agree). The names and paths the
client needs too live in ``ediv.cim_names``; they are re-exported here."""

from __future__ import annotations

from pywbem import CIMInstanceName

from ediv.cim_names import (  # noqa: F401 (re-exported for the providers)
    NAMESPACE,
    SERVICE_NAME,
    VM_REQUESTS,
    host_path,
    net_path,
    scenario_path,
    service_path,
    split_key,
    vm_key,
    vm_path,
)

NS = NAMESPACE
VSMCAPS_ID = "ediv:capabilities:management"
SCENARIO_CAPS_ID = "ediv:capabilities:scenario"
VM_CAPS_ID = "ediv:capabilities:virtualsystem"


def _setting(classname: str, instance_id: str) -> CIMInstanceName:
    return CIMInstanceName(classname, {"InstanceID": instance_id}, namespace=NS)


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


def vsm_caps_path() -> CIMInstanceName:
    return _setting("EDIV_VirtualSystemManagementCapabilities", VSMCAPS_ID)


def elem_caps_path(instance_id: str) -> CIMInstanceName:
    return _setting("EDIV_EnabledLogicalElementCapabilities", instance_id)
