"""The algorithm registry: entry points, lookup by name, broken plugins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from ediv.errors import EdivError
from ediv.partition import registry
from ediv.partition.api import PartitionAlgorithm


@pytest.fixture
def fresh_registry():
    registry.clear_cache()
    yield registry
    registry.clear_cache()


def test_builtins_are_available_and_implement_the_protocol():
    algos = registry.available()
    assert list(algos) == sorted(algos)
    assert {"RoundRobin", "WeightedRoundRobin", "DynamicWeightedRoundRobin", "MinCut"} <= set(algos)
    for name, cls in algos.items():
        algo = registry.get(name)
        assert isinstance(algo, PartitionAlgorithm) and isinstance(algo, cls)
        assert algo.name == name and algo.description


def test_installed_entry_points_declare_the_builtins():
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group=registry.GROUP)}
    for name, spec in registry.BUILTINS.items():
        assert declared.get(name) == spec


def test_lookup_ignores_case_and_unknown_names_list_the_choices():
    assert registry.get("roundrobin").name == "RoundRobin"
    assert registry.get("MINCUT").name == "MinCut"
    with pytest.raises(EdivError, match=r"unknown partition algorithm 'Random'; available: .*Min"):
        registry.get("Random")


def test_each_get_returns_a_new_instance():
    assert registry.get("MinCut") is not registry.get("MinCut")


def test_broken_plugin_is_left_out_and_explained(monkeypatch, fresh_registry):
    eps = [
        EntryPoint("Broken", "ediv_no_such_module:Algo", registry.GROUP),
        EntryPoint("NotAnAlgorithm", "ediv.cluster:Host", registry.GROUP),
        EntryPoint("Extra", "ediv.partition.roundrobin:RoundRobin", registry.GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    algos = registry.available()
    assert "Broken" not in algos and "NotAnAlgorithm" not in algos
    assert "Extra" in algos and "RoundRobin" in algos
    assert "ModuleNotFoundError" in registry.broken()["Broken"]
    with pytest.raises(EdivError, match=r"'Broken' cannot be loaded .*ediv_no_such_module"):
        registry.get("broken")
    with pytest.raises(EdivError, match=r"cannot be loaded .*does not implement"):
        registry.get("NotAnAlgorithm")


def test_an_algorithm_that_fails_to_start_is_an_ediv_error(monkeypatch, fresh_registry):
    eps = [EntryPoint("Needy", "tests_needy_plugin:Needy", registry.GROUP)]

    class Needy:
        name = "Needy"
        description = "needs an argument"

        def __init__(self, arg):
            self.arg = arg

        def partition(self, scenario, hosts, placed):
            raise NotImplementedError

    import sys
    import types

    module = types.ModuleType("tests_needy_plugin")
    module.Needy = Needy
    monkeypatch.setitem(sys.modules, "tests_needy_plugin", module)
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with pytest.raises(EdivError, match="'Needy' cannot be created"):
        registry.get("Needy")
