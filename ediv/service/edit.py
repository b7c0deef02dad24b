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
from ediv.errors import InputError, WrongState, no_scenario
from ediv.scenario import load_string, to_xml
from ediv.scenario.edit import headed
from ediv.scenario.model import Scenario

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
