"""Scenario arguments: VNUML users name the file, ediv names the scenario; both are accepted."""

from __future__ import annotations

from pathlib import Path

import click

from ediv.errors import EdivError


def scenario_name(value: str) -> str:
    """``value`` itself, or the ``<simulation_name>`` of the scenario file it names."""
    path = Path(value)
    if not path.is_file():
        return value
    from ediv import xmlsafe  # lxml: only when a file is named

    root = xmlsafe.parse_file(path).getroot()
    name = (root.findtext("global/simulation_name") or "").strip()
    if not name:
        raise EdivError(f"{value}: no <simulation_name> in <global>")
    return name


def name_or_file(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback for a NAME argument that may also be the scenario file."""
    return None if value is None else scenario_name(value)
