"""Loading scenarios: the entry points the rest of ediv calls.

Every path goes through the same steps: hardened XML parsing (``ediv.xmlsafe``), a check
that the document is a language ediv reads (root ``<vnuml>``/``<vnx>``, not VNX 2.0), XSD
validation, building the model and, for the ``load_*`` functions, the semantic checks.
Problems are collected from all steps and raised together as one ``InputError`` whose
diagnostics are sorted by line; warnings never stop loading.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from lxml import etree

from ediv import xmlsafe
from ediv.errors import Diagnostic, InputError
from ediv.scenario import checks, parser, schema
from ediv.scenario.model import Scenario

ApplianceResolver = Callable[[Scenario], list[Diagnostic]]
"""Fills the VMs that name ``appliance=`` (in place) and returns diagnostics. The scenario
layer does not know OVF: the resolver is injected, by default the one registered under the
``ediv.appliances`` entry point (``ediv.ovf.appliance:resolve_appliances``)."""
Appliances = bool | ApplianceResolver


def unresolved(_scenario: Scenario) -> list[Diagnostic]:
    """The resolver for a spec the state store holds: it was checked (and its appliances
    resolved) when it was stored by a local user, so re-reading it neither opens packages
    nor refuses ``appliance=``."""
    return []


def registered_resolver() -> ApplianceResolver:
    found = entry_points(group="ediv.appliances", name="ovf")
    if not found:
        raise InputError("appliance= needs ediv's OVF support, which is not installed "
                         "(entry point ediv.appliances:ovf)")
    return next(iter(found)).load()


def parse_string(data: bytes | str, source: str = "<string>", basedir: str = ".") -> Scenario:
    """Syntax, XSD and model, without the semantic checks; InputError lists every error."""
    scenario, _ = _load(_bytes(data), source, basedir, run_checks=False, deployable=False)
    return scenario


def load_string(
    data: bytes | str, source: str = "<string>", basedir: str = ".", *, deployable: bool = False,
    appliances: Appliances = False,
) -> tuple[Scenario, list[Diagnostic]]:
    """Like ``load_scenario`` for a document held in memory (a WBEM ScenarioDefinition).

    ``vm@appliance`` names a package on this machine: text from a remote client must not make
    the server open local paths, so it is refused unless ``appliances`` is true (the
    registered resolver) or a resolver."""
    return _load(_bytes(data), source, basedir, run_checks=True, deployable=deployable,
                 appliances=appliances)


def load_scenario(
    path: str | Path, *, deployable: bool = False
) -> tuple[Scenario, list[Diagnostic]]:
    """Parse, validate and check the scenario file at ``path``.

    Returns the scenario and its warnings; raises InputError carrying every error (schema,
    model and semantic together). ``deployable=True`` also rejects what ediv cannot deploy
    (VM types other than uml/container). The scenario's ``basedir`` is the file's directory.
    """
    tree = xmlsafe.parse_file(path)
    base = str(Path(path).resolve().parent)
    return validate_tree(tree, str(path), base, deployable=deployable)


def validate_tree(
    tree: etree._ElementTree, source: str, basedir: str = ".", *, deployable: bool = False
) -> tuple[Scenario, list[Diagnostic]]:
    """The steps after XML parsing, for callers that already hold a tree from xmlsafe."""
    return _checked(tree, source, basedir, run_checks=True, deployable=deployable,
                    appliances=True)


def check(scenario: Scenario, *, deployable: bool = False) -> list[Diagnostic]:
    """Semantic checks of a model built in code (see ``ediv.scenario.checks``)."""
    return checks.check(scenario, deployable=deployable)


def _load(data: bytes, source: str, basedir: str, *, run_checks: bool, deployable: bool,
          appliances: Appliances = False
          ) -> tuple[Scenario, list[Diagnostic]]:
    tree = xmlsafe.parse_bytes(data, source)
    return _checked(tree, source, basedir, run_checks=run_checks, deployable=deployable,
                    appliances=appliances)


def _checked(tree: etree._ElementTree, source: str, basedir: str, *, run_checks: bool,
             deployable: bool, appliances: Appliances = True
             ) -> tuple[Scenario, list[Diagnostic]]:
    problem = parser.language_problem(tree.getroot(), source)
    if problem is not None:
        raise InputError(problem)
    found = schema.validate(tree, source)
    scenario, built = parser.build(tree, source, basedir)
    found += built
    if run_checks and any(vm.appliance for vm in scenario.vms):
        if appliances:
            # vm@appliance (extension): fill those VMs from their verified OVF packages
            resolve = registered_resolver() if appliances is True else appliances
            found += resolve(scenario)
        else:
            found += [Diagnostic(source, vm.line, f"vm {vm.name!r}: appliance= is not accepted "
                                 "in a scenario sent to the server; import the package instead")
                      for vm in scenario.vms if vm.appliance]
    if run_checks:
        found += checks.check(scenario, deployable=deployable)
    errors = sorted((d for d in found if d.severity == "error"), key=lambda d: d.line)
    if errors:
        raise InputError(errors)
    return scenario, sorted((d for d in found if d.severity != "error"), key=lambda d: d.line)


def _bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data
