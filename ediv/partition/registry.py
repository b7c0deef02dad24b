"""Find partition algorithms: the built-in ones and plugins from the ``ediv.partition``
entry-point group (see ``ediv.partition.api``).

Built-ins are also known by module path, so a source checkout whose installed metadata is
stale still finds them; an entry point of the same name wins. A plugin that fails to load
is left out of ``available()`` (its error is kept in ``broken()``) so that one bad plugin
cannot break planning with the others; asking for it by name reports why it failed.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from ediv.errors import EdivError
from ediv.partition.api import PartitionAlgorithm

GROUP = "ediv.partition"

BUILTINS = {
    "RoundRobin": "ediv.partition.roundrobin:RoundRobin",
    "WeightedRoundRobin": "ediv.partition.weighted:WeightedRoundRobin",
    "DynamicWeightedRoundRobin": "ediv.partition.weighted:DynamicWeightedRoundRobin",
    "MinCut": "ediv.partition.mincut:MinCut",
}


def _load(spec: str) -> type:
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{spec} is not a class")
    if not callable(getattr(obj, "partition", None)):
        raise TypeError(
            f"{spec} does not implement name, description and partition(scenario, hosts, placed)"
        )
    return obj


@functools.cache
def _scan() -> tuple[dict[str, type], dict[str, str]]:
    specs = dict(BUILTINS)
    for ep in entry_points(group=GROUP):
        specs[ep.name] = ep.value
    loaded: dict[str, type] = {}
    failed: dict[str, str] = {}
    for name in sorted(specs):
        try:
            loaded[name] = _load(specs[name])
        except Exception as exc:  # a third-party plugin can fail in any way
            failed[name] = f"{specs[name]}: {type(exc).__name__}: {exc}"
    return loaded, failed


def available() -> dict[str, type]:
    """Algorithm name -> class, sorted by name (loaded once per process)."""
    return dict(_scan()[0])


def broken() -> dict[str, str]:
    """Algorithm name -> why its plugin could not be loaded."""
    return dict(_scan()[1])


def get(name: str) -> PartitionAlgorithm:
    """A new instance of the algorithm called ``name`` (exact match first, then ignoring case)."""
    loaded, failed = _scan()
    key = name if name in loaded or name in failed else None
    if key is None:
        folded = [n for n in [*loaded, *failed] if n.lower() == name.lower()]
        key = folded[0] if len(folded) == 1 else None
    if key in failed:
        raise EdivError(f"partition algorithm {key!r} cannot be loaded ({failed[key]})")
    if key is None:
        raise EdivError(
            f"unknown partition algorithm {name!r}; available: {', '.join(loaded) or 'none'}"
        )
    try:
        algo = loaded[key]()
    except Exception as exc:
        raise EdivError(f"partition algorithm {key!r} cannot be created: {exc}") from exc
    if not isinstance(algo, PartitionAlgorithm):
        raise EdivError(
            f"partition algorithm {key!r} ({loaded[key].__module__}) does not implement "
            "name, description and partition(scenario, hosts, placed)"
        )
    return algo


def clear_cache() -> None:
    """Forget what was loaded (tests that add entry points at run time)."""
    _scan.cache_clear()
