"""What a (sub-)scenario would change on a host beyond its own objects, and who allows it.

A scenario owns the bridges, links, namespaces and processes its deploy creates; anything
else on a host — attaching a host interface (``net@external``), host addresses on its nets
(``<hostif>``), host routes and forwarding, host commands — needs a setting of that host's
agent config (docs/threat-model.md). The agent refuses on its own (``ediv.agent.network``);
the controller checks the same before anything is built, from what ``probe`` reports in
``allow``, so an operator gets the error before any host acts.
"""

from __future__ import annotations

from ediv.scenario.model import Scenario

# agent setting -> the probe's "allow" field naming it
SETTINGS = {"allow_external": "external", "allow_hostif": "hostif",
            "allow_host_exec": "host_exec"}


def needs(scenario: Scenario) -> list[tuple[str, int, str]]:
    """(agent settings that each allow it, line, what) for every host change."""
    out: list[tuple[str, int, str]] = []
    for n in scenario.nets:
        if n.external:
            out.append(("allow_external", n.line,
                        f"net {n.name}: external={n.external} attaches a host interface"))
        if n.extra.get("capture_dev"):
            out.append(("allow_external", n.line,
                        f"net {n.name}: capture_dev={n.extra['capture_dev']} captures a host "
                        "interface"))
    h = scenario.host
    if h is None:
        return out
    for hif in h.hostifs:
        if hif.addresses:
            out.append(("allow_hostif|allow_external", hif.line,
                        f"<hostif net={hif.net!r}> puts host addresses on a scenario net"))
    for r in h.routes:
        out.append(("allow_external", r.line,
                    f"<host><route> to {r.destination} changes the host's routing table"))
    if h.forwarding:
        out.append(("allow_external", h.line, "<host><forwarding> changes the host's forwarding"))
    for e in h.execs:
        out.append(("allow_host_exec", e.line, f"<host><exec seq={e.seq!r}> runs on the host"))
    return out


def refusals(scenario: Scenario, allow: dict | None) -> list[str]:
    """The changes ``allow`` (a probe's ``allow`` object) does not permit; [] when the agent
    did not say (an older agent: it still refuses on its own)."""
    if not isinstance(allow, dict):
        return []
    out = []
    for settings, line, what in needs(scenario):
        names = settings.split("|")
        if not any(allow.get(SETTINGS[s]) is True for s in names):
            where = f"{scenario.source}:{line}: " if line else ""
            out.append(f"{where}{what}; the host's agent config does not allow it "
                       f"(needs {' or '.join(names)})")
    return out
