"""Stored specs, parsed once per process: a server's exec, status and CIM reads of one
scenario all need its model, and parsing (with the XSD check) costs tens of milliseconds for a
few dozen VMs. Keyed by the spec's text itself, so an edited spec is parsed again; a spec that
no longer parses is not cached (its error is raised each time). The models are shared:
callers read them and never change them."""

from __future__ import annotations

from functools import lru_cache

from ediv.scenario.loader import load_string, unresolved
from ediv.scenario.model import Scenario

_CACHED = 16  # scenarios whose models a process keeps


@lru_cache(maxsize=_CACHED)
def stored_model(spec: str, name: str, basedir: str, deployable: bool) -> Scenario:
    """The model of a stored spec (``vm@appliance`` left unresolved); InputError or EdivError
    when it does not parse."""
    scenario, _ = load_string(spec, f"{name}.xml", basedir, deployable=deployable,
                              appliances=unresolved)
    return scenario
