"""Building the driver context of a scenario (shared by deploy, exec and status)."""

from __future__ import annotations

from pathlib import Path

from ediv.agent.bundle import read_bundle
from ediv.agent.config import AgentConfig
from ediv.agent.drivers import available, load_driver
from ediv.agent.drivers.base import AgentContext
from ediv.agent.events import Emitter
from ediv.agent.journal import ScenarioDir
from ediv.agent.layout import HostLayout, VmLayout, build_layout
from ediv.agent.network import link_mtu
from ediv.errors import EdivError


def layout_from_bundle(bundle_dir: Path) -> HostLayout:
    scenario, info = read_bundle(bundle_dir)
    return build_layout(scenario, info, underlay_mtu=link_mtu,
                        known_drivers=tuple(sorted(available())))


def drivers_for(layout: HostLayout) -> dict[str, object]:
    return {name: load_driver(name) for name in dict.fromkeys(v.driver for v in layout.vms)}


def by_driver(layout: HostLayout) -> dict[str, list[VmLayout]]:
    out: dict[str, list[VmLayout]] = {}
    for v in layout.vms:
        out.setdefault(v.driver, []).append(v)
    return out


def open_deployed(state_root: Path, key: str, config: AgentConfig,
                  emitter: Emitter) -> tuple[AgentContext, dict[str, object]]:
    """Context of a deployed scenario, with the runtime data its deploy recorded."""
    sdir = ScenarioDir(state_root, key)
    state = sdir.read_json(sdir.state_path)
    if state is None:
        raise EdivError(f"scenario {key} is not deployed on this host"
                        + (" (its deploy did not finish; release it)" if sdir.exists() else ""))
    layout = layout_from_bundle(sdir.bundle_dir)
    ctx = AgentContext(sdir, config, emitter, layout, sdir.bundle_dir / "files",
                       runtime={k: v.get("runtime", {}) for k, v in state["vms"].items()})
    return ctx, drivers_for(layout)
