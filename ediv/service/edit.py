"""Editing a stored, defined scenario: the store side of ``ediv.scenario.edit``.

:func:`edit_defined` runs a change (a function of ``ediv.scenario.edit`` calls) on the parsed
stored spec under the scenario's claim, validates the whole result like a new definition and
stores it in one UPDATE; nothing is stored when the change or the validation fails.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from ediv import state as st
from ediv.errors import AlreadyExists, InputError, NotFound, WrongState, no_scenario
from ediv.ovf.importer import ENV_SEQ
from ediv.scenario import load_string, to_xml
from ediv.scenario.edit import check_name, headed
from ediv.scenario.model import VM, Filetree, Scenario
from ediv.service import files

T = TypeVar("T")
Claim = Callable[[str, str], AbstractContextManager[Any]]


def defined_row(store: st.StateStore, name: str) -> st.ScenarioRow:
    """The row of scenario ``name``, which must be only defined for its VMs to change."""
    row = store.scenario(name)
    if row is None:
        raise no_scenario(name)
    if row.state != st.DEFINED:
        raise WrongState(f"scenario {name!r} is {row.state}", name=name, state=row.state)
    return row


def parse_defined(row: st.ScenarioRow) -> Scenario:
    """The stored spec of a defined scenario, parsed (an error if it no longer parses)."""
    try:
        scenario, _ = load_string(row.spec or "", f"{row.name}.xml", row.basedir or ".",
                                  deployable=True)
    except InputError as exc:
        raise headed(f"stored scenario {row.name!r}", exc) from None
    return scenario


def save_defined(store: st.StateStore, name: str, scenario: Scenario, basedir: str | None,
                 what: str = "the scenario with this VM") -> None:
    """Validate the edited scenario like a new definition and store it in one UPDATE."""
    text = to_xml(scenario).decode("utf-8")
    try:
        load_string(text, f"{name}.xml", basedir or ".", deployable=True)
    except InputError as exc:
        raise headed(what, exc) from None
    if not store.set_spec(name, text):
        raise WrongState(f"scenario {name!r} is no longer defined (another client deployed or "
                         "removed it meanwhile); nothing was changed", name=name)


def edit_defined(store: st.StateStore, name: str, change: Callable[[Scenario], T],
                 claim: Claim) -> T:
    """``change`` the stored scenario ``name`` and store it if the result is valid; nothing
    is stored when ``change`` or the validation raises. ``claim(name, what)``: the
    scenario's claim as a context manager (``Service.claim``, the provider's
    ``Engine.claim``).

    The state is checked before the claim (a deploy holds it for its whole job: the caller
    hears "deployed", not "busy") and again under it."""
    defined_row(store, name)
    with claim(name, "modify"):
        row = defined_row(store, name)
        scenario = parse_defined(row)
        result = change(scenario)
        save_defined(store, name, scenario, row.basedir)
    return result


def _defined_for_vms(store: st.StateStore, name: str, when: str) -> st.ScenarioRow:
    row = store.scenario(name)
    if row is None:
        raise no_scenario(name)
    if row.state != st.DEFINED:
        raise WrongState(f"scenario {name!r} is {row.state}: VMs can only be {when}",
                         name=name, state=row.state)
    return row


def add_vm(store: st.StateStore, name: str, vm: VM, claim: Claim, *, default_basedir: str,
           environment: bytes | None = None) -> str:
    """Add ``vm`` to the defined scenario ``name`` (DefineSystem of a VM). ``environment``:
    an OVF environment document, kept beside the scenario and put in the guest as
    ``/ovf-env.xml`` at every boot. Nothing is kept when the result is not valid."""
    check_name(vm.name, "VM")
    with claim(name, "define"):
        row = _defined_for_vms(store, name, "added while it is defined (release it first)")
        scenario = parse_defined(row)
        if scenario.vm(vm.name) is not None:
            raise AlreadyExists("VM", vm.name, message=f"scenario {name!r} already has a VM "
                                f"named {vm.name!r}")
        scenario.vms.append(vm)
        basedir = row.basedir or default_basedir
        if environment is not None:
            where = files.write_environment(basedir, vm.name, environment)
            vm.filetrees.append(Filetree(source=where.name, root="/", seq=ENV_SEQ))
        try:
            save_defined(store, name, scenario, basedir)
        except BaseException:
            if environment is not None:
                files.remove_environment(basedir, vm.name)
            raise
    return vm.name


def remove_vm(store: st.StateStore, name: str, vm: str, claim: Claim) -> None:
    """Remove VM ``vm`` from the defined scenario ``name`` (DestroySystem of a VM), with the
    environment document DefineSystem kept for it."""
    with claim(name, "define"):
        row = _defined_for_vms(store, name, "removed while it is defined")
        scenario = parse_defined(row)
        if scenario.vm(vm) is None:
            raise NotFound("VM", vm, scenario=name)
        scenario.vms = [v for v in scenario.vms if v.name != vm]
        save_defined(store, name, scenario, row.basedir)
        env_source = files.environment_dir(".", vm).name
        if not any(ft.source == env_source for v in scenario.vms for ft in v.filetrees):
            files.remove_environment(row.basedir, vm)
