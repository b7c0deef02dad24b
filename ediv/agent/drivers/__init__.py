"""VM drivers: built-in ``container`` and ``uml``, plus any registered under the entry point
group ``ediv.drivers`` (name = vm@type, value = a class implementing drivers.base.Driver)."""

from __future__ import annotations

from ediv.errors import EdivError

ENTRY_POINT_GROUP = "ediv.drivers"
BUILTIN = {
    "container": "ediv.agent.drivers.container:ContainerDriver",
    "uml": "ediv.agent.drivers.uml:UmlDriver",
}


def available() -> dict[str, str]:
    """Driver name -> "module:Class"; entry points override built-ins of the same name."""
    from importlib.metadata import entry_points  # here: 30 ms, and most verbs need no driver

    out = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out[ep.name] = ep.value
    return out


def load_driver(name: str):
    target = available().get(name)
    if target is None:
        raise EdivError(f"no VM driver {name!r} (have: {', '.join(sorted(available()))})")
    module, _, cls = target.partition(":")
    mod = __import__(module, fromlist=[cls])
    return getattr(mod, cls)()
