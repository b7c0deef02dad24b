"""Editing a defined scenario: add, change and remove its VMs' resources (interfaces, memory,
filesystem), rename a VM, change its type or kernel.

The functions work on the scenario model and raise ediv errors (``InputError`` for a change
that cannot be made, ``NotFound``, ``AlreadyExists``); they know nothing of CIM, so the WBEM
provider only translates RASD/VSSD instances into these calls and the errors into CIM
statuses. They know nothing of the state store either (this is the scenario layer): the
stored scenario is edited by ``ediv.service.edit.edit_defined``, which runs these functions
under the scenario's claim and validates the whole result like a new definition before
storing it, so an edit is all or nothing (nets declared, ppp ends, ids used once).
"""

from __future__ import annotations

import re
from typing import Any

from ediv.errors import AlreadyExists, Diagnostic, InputError, NotFound
from ediv.scenario.model import VM, Filesystem, Interface, Kernel, Scenario

VM_TYPES = ("uml", "container", "")  # "": the host's default driver
FILESYSTEM_TYPES = ("cow", "direct", "hostfs")
# A name becomes a directory or file name on the hosts: keep it plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_KEEP: Any = object()


def check_name(name: str, what: str = "VM") -> str:
    if not _NAME.match(name or "") or ".." in name:
        raise InputError(f"{what} name {name!r} is not usable: letters, digits, '_', '.', '+' "
                         "and '-' only, starting with a letter or digit")
    return name


def headed(what: str, exc: InputError) -> InputError:
    """``exc``'s diagnostics under one line saying what has them."""
    return InputError([Diagnostic("error", 0, f"{what} has errors:"), *exc.diagnostics])


# ---------------------------------------------------------------- finding things

def find_vm(scenario: Scenario, vm_name: str, name: str | None = None) -> VM:
    """The VM ``vm_name`` of ``scenario`` (``name``: the scenario's name in messages)."""
    vm = scenario.vm(vm_name)
    if vm is None:
        raise NotFound("VM", vm_name, scenario=name or scenario.name,
                       message=f"scenario {name or scenario.name!r} has no VM {vm_name!r}")
    return vm


def find_interface(vm: VM, if_id: int) -> Interface:
    itf = next((i for i in vm.interfaces if i.id == if_id), None)
    if itf is None:
        raise NotFound("interface", str(if_id),
                       message=f"VM {vm.name!r} has no interface {if_id}")
    return itf


# ---------------------------------------------------------------- adding

def add_interface(vm: VM, itf: Interface) -> Interface:
    if any(i.id == itf.id for i in vm.interfaces):
        raise InputError(f"VM {vm.name!r} has an interface {itf.id} already")
    vm.interfaces.append(itf)
    return itf


def add_memory(vm: VM, mem: str) -> None:
    """Give ``vm`` memory of its own (it had the <vm_defaults> or default size)."""
    if vm.mem is not None:
        raise InputError(f"VM {vm.name!r} already has its memory ({vm.mem})")
    vm.mem = mem


def add_filesystem(vm: VM, fs: Filesystem) -> None:
    """Give ``vm`` a filesystem of its own (it had the one of <vm_defaults>)."""
    if vm.filesystem is not None:
        raise InputError(f"VM {vm.name!r} already has its filesystem ({vm.filesystem.path})")
    vm.filesystem = fs


# ---------------------------------------------------------------- changing

def set_memory(vm: VM, mem: str) -> None:
    vm.mem = mem


def set_filesystem(vm: VM, fs: Filesystem | None) -> None:
    """The VM's own filesystem; None: back to the one of <vm_defaults>."""
    vm.filesystem = fs


def change_interface(itf: Interface, *, net: str = _KEEP, if_id: int = _KEEP,
                     mac: str | None = _KEEP, addresses: list = _KEEP) -> Interface:
    """Change what is given of ``itf`` (an interface of a VM); the rest keeps its value.

    Ids are not checked here: one edit may swap two interfaces' ids, and the validation of
    the whole scenario (:func:`save_defined`) refuses an id used twice."""
    if net is not _KEEP:
        if not net:
            raise InputError("an interface needs a net")
        itf.net = net
    if if_id is not _KEEP:
        itf.id = if_id
    if mac is not _KEEP:
        itf.mac = mac
    if addresses is not _KEEP:
        itf.addresses = list(addresses)
    return itf


def set_type(vm: VM, vm_type: str) -> None:
    vm_type = (vm_type or "").strip()
    if vm_type not in VM_TYPES:
        raise InputError(f"VM type {vm_type!r} is not supported (uml or container)")
    vm.type = vm_type


def filesystem(path: str | None, fs_type: str | None) -> Filesystem | None:
    """A <filesystem>; None without a path. The type defaults to cow."""
    if fs_type is not None and fs_type not in FILESYSTEM_TYPES:
        raise InputError(f"filesystem type {fs_type!r} is not one of "
                         f"{', '.join(FILESYSTEM_TYPES)}")
    return Filesystem(path, fs_type or "cow") if path else None


def set_kernel(vm: VM, path: str | None) -> None:
    """The VM's kernel image (its other kernel settings stay); empty/None: the default."""
    path = (path or "").strip()
    if not path:
        vm.kernel = None
    elif vm.kernel is None:
        vm.kernel = Kernel(path)
    else:
        vm.kernel.path = path


def rename_vm(scenario: Scenario, vm: VM, new_name: str, restricted: set[str] = frozenset(),
              name: str | None = None) -> None:
    """Rename ``vm``; ``restricted``: the VM names the scenario's restrictions use (such a
    VM keeps its name, or the restrictions would name a VM that is gone)."""
    name = name or scenario.name
    check_name(new_name, "VM")
    if new_name == vm.name:
        return
    if scenario.vm(new_name) is not None:
        raise AlreadyExists("VM", new_name, message=f"scenario {name!r} already has a VM "
                            f"named {new_name!r}")
    if vm.name in restricted:
        raise InputError(f"the restrictions of scenario {name!r} name VM {vm.name!r}: it "
                         "cannot be renamed (define the scenario again with new restrictions)")
    vm.name = new_name


def restricted_vms(text: str | None) -> set[str]:
    """VM names the scenario's restrictions use (they must keep naming existing VMs)."""
    if not text:
        return set()
    from ediv.restrictions import parse_restrictions

    try:
        rules = parse_restrictions(text.encode("utf-8"), "Restrictions")
    except InputError as exc:
        raise headed("the stored Restrictions", exc) from None
    names = {r.vm for r in rules.vm_deploy_at}
    for group in (*rules.affinity, *rules.antiaffinity):
        names.update(group.vms)
    return names


# ---------------------------------------------------------------- removing

def remove_interface(vm: VM, itf: Interface) -> None:
    vm.interfaces = [i for i in vm.interfaces if i is not itf]


def remove_memory(vm: VM) -> None:
    vm.mem = None  # back to <vm_defaults> or the default size


def remove_filesystem(vm: VM, name: str) -> None:
    if vm.filesystem is None:
        raise InputError(f"the filesystem of VM {vm.name!r} comes from the <vm_defaults> of "
                         f"scenario {name!r}; it cannot be removed from one VM")
    vm.filesystem = None
