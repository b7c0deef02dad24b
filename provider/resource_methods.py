"""DSP1042 (System Virtualization) / DSP1041 (Resource Allocation) methods of
EDIV_VirtualSystemManagementService on the VMs of a scenario that is only defined:

- ``AddResourceSettings(AffectedConfiguration, ResourceSettings[])``: Ethernet ports, and the
  VM's memory or root filesystem when it has none of its own; OUT ResultingResourceSettings.
- ``ModifyResourceSettings(ResourceSettings[])``: embedded RASDs with the InstanceID of an
  existing one; the properties whose value differs from the current instance are changed
  (memory size, an interface's net, MAC, addresses or index, the filesystem image and use).
  Anything else must keep its value, so a client may send back what GetInstance returned.
- ``RemoveResourceSettings(ResourceSettings[] REF)``: interfaces, the VM's own memory (back
  to the default) or filesystem (back to <vm_defaults>); the processor cannot be removed.
- ``ModifySystemSettings(SystemSettings)``: an EDIV_VirtualSystemSettingData with the
  InstanceID of an existing one: VirtualSystemType, Filesystem/FilesystemType, Kernel, and
  the VM's name (VirtualSystemIdentifier or ElementName) when the new one is free.

This module only translates: RASD/VSSD instances into the edits of ``ediv.scenario.edit``
(which hold the rules; ``ediv.service.edit`` makes each call all or nothing under the
scenario's claim), and
the ediv errors they raise into CIM statuses (``ediv.errors.cim_status``). A scenario that
is not only defined answers 5 (Invalid State); AddResourceSettings has no such return value
in CIM 2.49, so it answers CIM_ERR_FAILED saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pywbem
from pywbem import (
    CIM_ERR_FAILED,
    CIM_ERR_NOT_FOUND,
    CIMError,
    CIMInstance,
    CIMInstanceName,
    Uint32,
)

from ediv.errors import EdivError, InputError, WrongState, cim_status
from ediv.provider import cim_paths as P
from ediv.provider.embedded import text_property
from ediv.provider.engine_providers import rasd_instances, vssd_instance
from ediv.provider.methods import (
    INVALID_STATE,
    OK,
    EngineMethods,
    _allow,
    _bad,
)
from ediv.provider.vm_settings import (
    ETHERNET,
    MEMORY,
    PROCESSOR,
    STORAGE,
    filesystem_from_rasd,
    interface_from_rasd,
    memory_from_rasd,
    resource_type,
)
from ediv.scenario import edit
from ediv.scenario.model import VM, Filesystem, Interface, Scenario
from ediv.service.edit import edit_defined

Handler = Callable[[pywbem.NocaseDict], tuple[Any, list]]
T = TypeVar("T")

RASD = "CIM_ResourceAllocationSettingData"
ETHERNET_CLASS = "EDIV_EthernetPortAllocationSettingData"
PART_CLASSES = {"cpu": "EDIV_ProcessorRASD", "mem": "EDIV_MemoryRASD",
                "disk": "EDIV_StorageAllocationSettingData", "if": ETHERNET_CLASS}
RESOURCE_TYPES: dict[str, tuple[int, ...]] = {
    "cpu": (PROCESSOR,), "mem": (MEMORY,), "disk": STORAGE, "if": ETHERNET}
# what ModifyResourceSettings changes, per kind of RASD; other properties keep their value
CHANGEABLE: dict[str, tuple[str, ...]] = {
    "cpu": (),
    "mem": ("VirtualQuantity", "AllocationUnits"),
    "disk": ("HostResource", "ResourceSubType"),
    "if": ("Connection", "NetworkName", "Address", "IPAddresses", "InterfaceIndex"),
}
HINTS = {"cpu": "VNUML has no processor count", "mem": "memory: VirtualQuantity, "
         "AllocationUnits", "disk": "storage: HostResource, ResourceSubType", "if":
         "Ethernet port: Connection, NetworkName, Address, IPAddresses, InterfaceIndex"}
SYSTEM_CHANGEABLE = ("VirtualSystemType", "Filesystem", "FilesystemType", "Kernel",
                     "VirtualSystemIdentifier", "ElementName")


@dataclass(frozen=True)
class Target:
    """One RASD a call names: scenario, VM and part (cpu, mem, disk, ifN)."""

    scenario: str
    vm: str
    part: str
    classname: str  # the class the client named (the RASD's class or a superclass)
    where: str  # the parameter, for messages

    @property
    def kind(self) -> str:
        return "if" if self.part.startswith("if") else self.part

    @property
    def instance_id(self) -> str:
        return f"ediv:rasd:{P.vm_key(self.scenario, self.vm)}:{self.part}"


@dataclass
class Resolved:
    """A target found in the parsed scenario: its VM, current RASD and <if> (ports)."""

    target: Target
    vm: VM
    current: CIMInstance
    interface: Interface | None


class ResourceMethods:
    """The four methods; registered by ``EngineMethods.register`` on the service."""

    def __init__(self, m: EngineMethods):
        self.m = m
        self.nss = m.nss

    def handlers(self) -> dict[str, Handler]:
        return {
            "AddResourceSettings": self.add_resource_settings,
            "ModifyResourceSettings": self.modify_resource_settings,
            "RemoveResourceSettings": self.remove_resource_settings,
            "ModifySystemSettings": self.modify_system_settings,
        }

    # ------------------------------------------------------------ the methods
    def add_resource_settings(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("AddResourceSettings", params, "AffectedConfiguration", "ResourceSettings")
        name, vm_name = self._affected_vm(params.get("AffectedConfiguration"))
        rasds = self._embedded_list(params, "ResourceSettings", RASD)
        try:
            refs = self._edit(name, lambda s: self._add(s, name, vm_name, rasds))
        except WrongState as exc:
            raise CIMError(CIM_ERR_FAILED, f"{exc}: resources can only be added while it is "
                           "defined (release it first)") from None
        return Uint32(OK), [("ResultingResourceSettings", refs)]

    def modify_resource_settings(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("ModifyResourceSettings", params, "ResourceSettings")
        rasds = self._embedded_list(params, "ResourceSettings", RASD)
        targets = [self._embedded_target(r, f"ResourceSettings[{i}]")
                   for i, r in enumerate(rasds)]
        name = _one_scenario(targets)
        try:
            refs = self._edit(name, lambda s: self._modify(s, name, targets, rasds))
        except WrongState:
            return Uint32(INVALID_STATE), []
        return Uint32(OK), [("ResultingResourceSettings", refs)]

    def remove_resource_settings(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("RemoveResourceSettings", params, "ResourceSettings")
        raw = params.get("ResourceSettings")
        refs = raw if isinstance(raw, list) else [raw] if raw is not None else []
        if not refs:
            raise _bad("ResourceSettings is required (references to the RASDs to remove)")
        targets = [self._ref_target(r, f"ResourceSettings[{i}]") for i, r in enumerate(refs)]
        name = _one_scenario(targets)
        try:
            self._edit(name, lambda s: self._remove(s, targets))
        except WrongState:
            return Uint32(INVALID_STATE), []
        return Uint32(OK), []

    def modify_system_settings(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("ModifySystemSettings", params, "SystemSettings")
        if params.get("SystemSettings") is None:
            raise _bad("SystemSettings is required (an embedded EDIV_VirtualSystemSettingData)")
        inst = self.m.parser.parse("SystemSettings", params["SystemSettings"],
                                   "CIM_VirtualSystemSettingData")
        if self.nss.is_subclass(inst.classname, "EDIV_ScenarioSettingData"):
            raise _bad("SystemSettings: ModifySystemSettings changes a VM's "
                       "EDIV_VirtualSystemSettingData; a scenario's definition is replaced "
                       "with DestroySystem and DefineSystem")
        iid = text_property(inst, "InstanceID")
        if not iid:
            raise _bad("SystemSettings needs the InstanceID of the VM's settings "
                       "(ediv:vm:SCENARIO/VM)")
        ids = P.vssd_ids(CIMInstanceName(inst.classname, {"InstanceID": iid}))
        if ids is None:
            raise CIMError(CIM_ERR_NOT_FOUND, f"no virtual system settings {iid!r}")
        name, vm_name = ids
        try:
            self._edit(name, lambda s: self._modify_system(s, name, vm_name, inst))
        except WrongState:
            return Uint32(INVALID_STATE), []
        return Uint32(OK), []

    # ------------------------------------------------------------ all or nothing
    def _edit(self, name: str, change: Callable[[Scenario], T]) -> T:
        """``change`` the stored scenario ``name`` (``edit.edit_defined``: all or nothing).

        WrongState passes through (each method answers it its own way); the other ediv
        errors become CIMErrors."""
        try:
            return edit_defined(self.m.engine.store(), name, change, self.m.engine.claim)
        except WrongState:
            raise
        except EdivError as exc:
            raise cim_error(exc) from None

    # ------------------------------------------------------------ changes
    def _add(self, scenario: Scenario, name: str, vm_name: str, rasds: list[CIMInstance]
             ) -> list[CIMInstanceName]:
        vm = edit.find_vm(scenario, vm_name, name)
        refs = []
        for i, rasd in enumerate(rasds):
            part = _add_one(vm, rasd, f"ResourceSettings[{i}] ({rasd.classname})")
            refs.append(_path(name, vm.name, part))
        return refs

    def _modify(self, scenario: Scenario, name: str, targets: list[Target],
                rasds: list[CIMInstance]) -> list[CIMInstanceName]:
        found = [self._resolve(scenario, t, embedded=True) for t in targets]
        refs = []
        for item, rasd in zip(found, rasds, strict=True):
            t = item.target
            changes = _changes(rasd, item.current, CHANGEABLE[t.kind], t.where, HINTS[t.kind],
                               RESOURCE_TYPES[t.kind])
            part = _apply(item, changes)
            refs.append(_path(name, item.vm.name, part))
        return refs

    def _remove(self, scenario: Scenario, targets: list[Target]) -> None:
        for item in [self._resolve(scenario, t, embedded=False) for t in targets]:
            _remove_one(item, scenario)

    def _modify_system(self, scenario: Scenario, name: str, vm_name: str, inst: CIMInstance
                       ) -> None:
        vm = edit.find_vm(scenario, vm_name, name)
        changes = _changes(inst, vssd_instance(name, vm), SYSTEM_CHANGEABLE, "SystemSettings",
                           "settings: " + ", ".join(SYSTEM_CHANGEABLE), None)
        with _at("SystemSettings"):
            if "VirtualSystemType" in changes:
                edit.set_type(vm, str(changes["VirtualSystemType"] or ""))
            if "Filesystem" in changes or "FilesystemType" in changes:
                edit.set_filesystem(vm, _system_filesystem(vm, changes))
            if "Kernel" in changes:
                edit.set_kernel(vm, str(changes["Kernel"] or ""))
        new_name = _new_name(vm, changes)
        if new_name is not None:
            restrictions = self.m.engine.store().scenario(name).restrictions
            edit.rename_vm(scenario, vm, new_name, edit.restricted_vms(restrictions), name)

    # ------------------------------------------------------------ finding things
    def _affected_vm(self, ref: Any) -> tuple[str, str]:
        if not isinstance(ref, CIMInstanceName) or \
                not self.nss.is_subclass(ref.classname, "CIM_VirtualSystemSettingData"):
            raise _bad("AffectedConfiguration must be a reference to the VM's "
                       "EDIV_VirtualSystemSettingData")
        if self.nss.is_subclass(ref.classname, "EDIV_ScenarioSettingData"):
            raise _bad("AffectedConfiguration names a scenario; resources belong to a VM "
                       "(its EDIV_VirtualSystemSettingData; DefineSystem adds VMs)")
        ids = P.vssd_ids(ref)
        if ids is None:
            raise CIMError(CIM_ERR_NOT_FOUND, f"no virtual system settings {ref}")
        return ids

    def _embedded_list(self, params: pywbem.NocaseDict, name: str, expect: str
                       ) -> list[CIMInstance]:
        raw = params.get(name)
        values = raw if isinstance(raw, list) else [raw] if raw is not None else []
        if not values:
            raise _bad(f"{name} is required (embedded {expect} instances)")
        return [self.m.parser.parse(f"{name}[{i}]", v, expect) for i, v in enumerate(values)]

    def _ref_target(self, ref: Any, where: str) -> Target:
        if not isinstance(ref, CIMInstanceName) or not self.nss.is_subclass(ref.classname, RASD):
            raise _bad(f"{where} must be a reference to a {RASD} (a RASD of a VM)")
        return _target(ref, ref.classname, where)

    def _embedded_target(self, rasd: CIMInstance, where: str) -> Target:
        iid = text_property(rasd, "InstanceID")
        if not iid:
            raise _bad(f"{where} needs the InstanceID of an existing resource setting")
        return _target(CIMInstanceName(rasd.classname, {"InstanceID": iid}), rasd.classname,
                       where)

    def _resolve(self, scenario: Scenario, t: Target, *, embedded: bool) -> Resolved:
        vm = edit.find_vm(scenario, t.vm, t.scenario)
        current = next((r for r in rasd_instances(scenario, vm)
                        if r["InstanceID"] == _current_id(scenario, t)), None)
        if current is None:
            raise CIMError(CIM_ERR_NOT_FOUND, f"{t.where}: VM {t.vm!r} of scenario "
                           f"{t.scenario!r} has no resource setting {t.instance_id!r}")
        if not self.nss.is_subclass(current.classname, t.classname):
            if embedded:
                raise _bad(f"{t.where}: {t.instance_id!r} is an {current.classname}, "
                           f"not an {t.classname}")
            raise CIMError(CIM_ERR_NOT_FOUND, f"{t.where}: no {t.classname} {t.instance_id!r}")
        itf = None
        if t.kind == "if":
            itf = next(i for i in vm.interfaces if f"if{i.id}" == t.part)
        return Resolved(t, vm, current, itf)


# ---------------------------------------------------------------- errors

def _text(exc: EdivError) -> str:
    """An ediv error's message (the diagnostics of an InputError one per line; those that
    name no file are shown without the ``error:`` source)."""
    if not isinstance(exc, InputError):
        return str(exc)
    return "\n".join(d.message if d.source == "error" and not d.line else str(d)
                     for d in exc.diagnostics)


def cim_error(exc: EdivError) -> CIMError:
    """The CIMError the WBEM client sees for an ediv error (its status from ediv.errors)."""
    return CIMError(cim_status(exc), _text(exc))


@contextmanager
def _at(where: str, hint: str = "") -> Iterator[None]:
    """An edit's bad input as CIM_ERR_INVALID_PARAMETER, saying which parameter it is."""
    try:
        yield
    except InputError as exc:
        raise _bad(f"{where}: {_text(exc)}{hint}") from None


# ---------------------------------------------------------------- helpers

def _target(path: CIMInstanceName, classname: str, where: str) -> Target:
    ids = P.rasd_ids(path)
    if ids is None or _kind(ids[2]) is None:
        raise CIMError(CIM_ERR_NOT_FOUND, f"{where}: no resource setting "
                       f"{path.keybindings.get('InstanceID')!r}")
    return Target(*ids, classname=classname, where=where)


def _kind(part: str) -> str | None:
    if part.startswith("if"):
        return "if" if part[2:].isdigit() else None
    return part if part in PART_CLASSES else None


def _one_scenario(targets: list[Target]) -> str:
    names = sorted({t.scenario for t in targets})
    if len(names) > 1:
        raise _bad(f"ResourceSettings belong to several scenarios ({', '.join(names)}): "
                   "change one scenario per call")
    seen: set[str] = set()
    for t in targets:
        if t.instance_id in seen:
            raise _bad(f"{t.where}: {t.instance_id!r} is named twice")
        seen.add(t.instance_id)
    return names[0]


def _current_id(scenario: Scenario, t: Target) -> str:
    """The InstanceID ``rasd_instances`` gives the target (it names the parsed scenario)."""
    return f"ediv:rasd:{P.vm_key(scenario.name, t.vm)}:{t.part}"


def _path(name: str, vm: str, part: str) -> CIMInstanceName:
    return P.rasd_path(PART_CLASSES[_kind(part) or part], name, vm, part)


def _scratch(classname: str, props: dict[str, Any]) -> CIMInstance:
    """A RASD holding only the non-NULL ``props``, for the vm_settings parsers."""
    inst = CIMInstance(classname)
    for key, value in props.items():
        if value is not None and value != []:
            inst[key] = value
    return inst


def _norm(value: Any) -> Any:
    """A property value in a form that compares across clients (typed ints, [] as NULL)."""
    if isinstance(value, list):
        items = [_norm(v) for v in value if v is not None]
        return items or None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return str(value)


def _changes(inst: CIMInstance, current: CIMInstance, changeable: tuple[str, ...], where: str,
             hint: str, rtypes: tuple[int, ...] | None) -> dict[str, Any]:
    """The properties of ``inst`` whose value differs from ``current``, by canonical name;
    a differing property that cannot change is an error. InstanceID named the target."""
    allowed = {n.lower(): n for n in changeable}
    out: dict[str, Any] = {}
    for prop in inst.properties.values():
        key = prop.name.lower()
        if key == "instanceid":
            continue
        if key == "resourcetype" and rtypes is not None:
            if prop.value is not None and int(prop.value) not in rtypes:
                raise _bad(f"{where}: ResourceType {prop.value} does not match the resource "
                           f"(expected {' or '.join(str(r) for r in rtypes)})")
            continue
        if _norm(prop.value) == _norm(current.get(prop.name)):
            continue
        if key not in allowed:
            raise _bad(f"{where}: {prop.name} cannot be changed ({hint})")
        out[allowed[key]] = prop.value
    return out


def _add_one(vm: VM, rasd: CIMInstance, where: str) -> str:
    """Add one RASD to ``vm``; returns the part it became (ifN, mem, disk)."""
    rtype = resource_type(rasd, where)
    again = "; change it with ModifyResourceSettings"
    if rtype in ETHERNET:
        itf = interface_from_rasd(rasd, where, vm)
        with _at(where):
            edit.add_interface(vm, itf)
        return f"if{itf.id}"
    if rtype == MEMORY:
        mem = memory_from_rasd(rasd, where)
        with _at(where, again):
            edit.add_memory(vm, mem)
        return "mem"
    if rtype in STORAGE:
        fs = filesystem_from_rasd(rasd, where)
        if fs is None:
            raise _bad(f"{where}: storage needs HostResource (the filesystem image)")
        with _at(where, again):
            edit.add_filesystem(vm, fs)
        return "disk"
    if rtype == PROCESSOR:
        raise _bad(f"{where}: a VM has one processor (VNUML has no processor count)")
    raise _bad(f"{where}: ResourceType {rtype} cannot be added (4 memory, 10/33 Ethernet "
               "port, 17/19/31 storage)")


def _apply(item: Resolved, changes: dict[str, Any]) -> str:
    """Apply ``changes`` to the resolved RASD's VM; returns its part (ifN may change)."""
    t, vm, current = item.target, item.vm, item.current
    if changes and t.kind == "mem":
        edit.set_memory(vm, memory_from_rasd(_scratch(PART_CLASSES["mem"], {
            "VirtualQuantity": changes.get("VirtualQuantity", current.get("VirtualQuantity")),
            "AllocationUnits": changes.get("AllocationUnits", current.get("AllocationUnits")),
        }), t.where))
    elif changes and t.kind == "disk":
        fs = filesystem_from_rasd(_scratch(PART_CLASSES["disk"], {
            "HostResource": changes.get("HostResource", current.get("HostResource")),
            "ResourceSubType": changes.get("ResourceSubType", current.get("ResourceSubType")),
        }), t.where)
        if fs is None:
            raise _bad(f"{t.where}: storage needs HostResource (RemoveResourceSettings drops "
                       "the VM's own filesystem)")
        edit.set_filesystem(vm, fs)
    elif changes and item.interface is not None:
        _modify_interface(item.interface, changes, t.where)
    return f"if{item.interface.id}" if item.interface is not None else t.part


def _modify_interface(itf: Interface, changes: dict[str, Any], where: str) -> None:
    net = itf.net
    if "Connection" in changes or "NetworkName" in changes:
        conn = [str(c).strip() for c in changes.get("Connection") or [] if c]
        named = str(changes.get("NetworkName") or "").strip()
        net = (conn[0] if conn else None) or named or None
        if net is None:
            raise _bad(f"{where}: an Ethernet port needs Connection (the net name)")
    index = changes.get("InterfaceIndex", itf.id)
    if index is None:
        raise _bad(f"{where}: InterfaceIndex needs a value (the <if id>)")
    parsed = interface_from_rasd(_scratch(ETHERNET_CLASS, {
        "Connection": [net], "InterfaceIndex": Uint32(int(index)),
        "Address": changes.get("Address"), "IPAddresses": changes.get("IPAddresses")}),
        where, VM(name=""))
    keep: dict[str, Any] = {}
    if "Address" in changes:
        keep["mac"] = parsed.mac
    if "IPAddresses" in changes:
        keep["addresses"] = parsed.addresses
    with _at(where):
        edit.change_interface(itf, net=parsed.net, if_id=parsed.id, **keep)


def _remove_one(item: Resolved, scenario: Scenario) -> None:
    t, vm = item.target, item.vm
    if item.interface is not None:
        edit.remove_interface(vm, item.interface)
    elif t.kind == "mem":
        edit.remove_memory(vm)
    elif t.kind == "disk":
        with _at(t.where):
            edit.remove_filesystem(vm, scenario.name)
    else:
        raise _bad(f"{t.where}: the processor of VM {vm.name!r} cannot be removed (a VM "
                   "always has one)")



def _system_filesystem(vm: VM, changes: dict[str, Any]) -> Filesystem | None:
    if "Filesystem" in changes:
        path = str(changes["Filesystem"] or "").strip() or None
    else:
        path = vm.filesystem.path if vm.filesystem else None
    kind = changes.get("FilesystemType", vm.filesystem.type if vm.filesystem else None)
    if path is None:
        if "Filesystem" not in changes:
            raise _bad("SystemSettings: FilesystemType needs a Filesystem (VM "
                       f"{vm.name!r} has none of its own)")
        return None
    return edit.filesystem(path, str(kind) if kind else None)



def _new_name(vm: VM, changes: dict[str, Any]) -> str | None:
    names = []
    for key in ("VirtualSystemIdentifier", "ElementName"):
        if key in changes:
            text = str(changes[key] or "").strip()
            if not text:
                raise _bad(f"SystemSettings: {key} cannot be empty (it is the VM's name)")
            names.append(text)
    if len(set(names)) > 1:
        raise _bad("SystemSettings: VirtualSystemIdentifier and ElementName give two "
                   f"different names ({names[0]!r}, {names[1]!r})")
    return names[0] if names and names[0] != vm.name else None
