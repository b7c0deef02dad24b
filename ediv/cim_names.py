"""The CIM names both ends of root/ediv agree on: the namespace, class names, keys, the
return codes and job states of the extrinsic methods, and the object paths built from them.

The WBEM server (provider/) and the ``--server`` client (client/) both import this module,
so neither imports the other's internals. pywbem is imported only where a path is built:
the CLI's direct mode, which never builds one, does not pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pywbem import CIMInstanceName

NAMESPACE = "root/ediv"

SCENARIO = "EDIV_Scenario"
VIRTUAL_SYSTEM = "EDIV_VirtualSystem"
VIRTUAL_NETWORK = "EDIV_VirtualNetwork"
HOST_SYSTEM = "EDIV_HostSystem"
CONCRETE_JOB = "EDIV_ConcreteJob"
SCENARIO_SETTINGS = "EDIV_ScenarioSettingData"
VM_SETTINGS = "EDIV_VirtualSystemSettingData"
MANAGEMENT_SERVICE = "EDIV_VirtualSystemManagementService"
SERVICE_NAME = "ediv"

# RequestStateChange on EDIV_VirtualSystem (DSP1057): RequestedState -> ediv-host vm ACTION
# (2 of a paused VM resumes it; 3 always ends stopped, killed after stop_timeout; 4 only
# asks the VM to halt; 9 Quiesce pauses it)
VM_REQUESTS: dict[int, str] = {2: "start", 3: "stop", 4: "shutdown", 9: "pause",
                               10: "reboot", 11: "reset"}
SCENARIO_DEPLOY = 2  # RequestStateChange on EDIV_Scenario: Enabled = deploy

# return values of the extrinsic methods (DSP1042/DSP1052)
OK, NOT_SUPPORTED, INVALID_STATE = 0, 1, 5
JOB_STARTED, INVALID_TRANSITION, NO_TIMEOUT = 4096, 4097, 4098
RETURN_REASONS = {NOT_SUPPORTED: "not supported", INVALID_STATE: "invalid state",
                  INVALID_TRANSITION: "invalid state transition"}

# CIM_ConcreteJob.JobState
JOB_RUNNING, JOB_COMPLETED = 4, 7


def vm_key(scenario: str, vm: str) -> str:
    """EDIV_VirtualSystem.Name: VM names are unique within a scenario only."""
    return f"{scenario}/{vm}"


def split_key(key: str) -> tuple[str, str] | None:
    scenario, sep, name = str(key).partition("/")
    return (scenario, name) if sep and scenario and name else None


def system_keys(classname: str, name: str) -> dict[str, str]:
    """The keys of a CIM_System subclass of root/ediv (scenario, VM, net, host)."""
    return {"CreationClassName": classname, "Name": name}


def path(classname: str, keys: dict[str, Any]) -> CIMInstanceName:
    from pywbem import CIMInstanceName

    return CIMInstanceName(classname, keys, namespace=NAMESPACE)


def scenario_path(name: str) -> CIMInstanceName:
    return path(SCENARIO, system_keys(SCENARIO, name))


def vm_path(scenario: str, vm: str) -> CIMInstanceName:
    return path(VIRTUAL_SYSTEM, system_keys(VIRTUAL_SYSTEM, vm_key(scenario, vm)))


def host_path(name: str) -> CIMInstanceName:
    return path(HOST_SYSTEM, system_keys(HOST_SYSTEM, name))


def net_path(scenario: str, net: str) -> CIMInstanceName:
    return path(VIRTUAL_NETWORK, system_keys(VIRTUAL_NETWORK, vm_key(scenario, net)))


def service_path(system_name: str) -> CIMInstanceName:
    return path(MANAGEMENT_SERVICE, {
        "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": system_name,
        "CreationClassName": MANAGEMENT_SERVICE, "Name": SERVICE_NAME,
    })
