"""Topology pictures: VMs and nets, hosts drawn as clusters, segments highlighted."""

from __future__ import annotations

from pathlib import Path

import graphviz

from ediv.errors import EdivError
from ediv.plan import Plan
from ediv.scenario.model import Scenario

FORMATS = ("svg", "png", "dot")
SEGMENT_COLOR = "#d62728"


def build_graph(scenario: Scenario, plan: Plan | None = None) -> graphviz.Graph:
    g = graphviz.Graph(
        name=scenario.name or "scenario",
        graph_attr={
            "label": scenario.name,
            "labelloc": "t",
            "fontname": "Helvetica",
            "compound": "true",
            "rankdir": "LR",
        },
        node_attr={"fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8"},
    )
    segments = {s.net: s for s in plan.segments} if plan else {}

    def vm_node(graph: graphviz.Graph, vm_name: str) -> None:
        vm = scenario.vm(vm_name)
        label = vm_name if not vm or not vm.type else f"{vm_name}\n({vm.type})"
        graph.node(
            f"vm_{vm_name}", label=label, shape="box", style="rounded,filled", fillcolor="#e8f0fe"
        )

    if plan:
        for i, (host, vms) in enumerate(plan.hosts.items()):
            if not vms:
                continue
            with g.subgraph(name=f"cluster_{i}") as sub:
                sub.attr(label=host, style="filled", color="#9e9e9e", fillcolor="#f5f5f5")
                for vm_name in vms:
                    vm_node(sub, vm_name)
    else:
        for vm in scenario.ordered_vms():
            vm_node(g, vm.name)

    for net in scenario.nets:
        seg = segments.get(net.name)
        if seg:
            g.node(
                f"net_{net.name}",
                label=f"{net.name}\n{seg.kind} {seg.id}",
                shape="ellipse",
                style="filled,bold",
                color=SEGMENT_COLOR,
                fillcolor="#fde0dc",
                penwidth="2",
            )
        else:
            g.node(
                f"net_{net.name}",
                label=net.name,
                shape="ellipse",
                style="filled",
                fillcolor="#fff8e1",
            )
    for vm in scenario.ordered_vms():
        for iface in vm.interfaces:
            addr = ", ".join(a.address for a in iface.addresses)
            attrs = {"color": SEGMENT_COLOR} if iface.net in segments else {}
            g.edge(
                f"vm_{vm.name}",
                f"net_{iface.net}",
                label=f"eth{iface.id}" + (f"\n{addr}" if addr else ""),
                **attrs,
            )
    if scenario.host:
        g.node("host", label="host", shape="house", style="filled", fillcolor="#e0e0e0")
        for hi in scenario.host.hostifs:
            g.edge("host", f"net_{hi.net}", style="dashed")
    return g


def render(scenario: Scenario, plan: Plan | None, output: str | Path) -> Path:
    out = Path(output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise EdivError(f"{out}: unknown picture format; use one of .svg, .png, .dot")
    g = build_graph(scenario, plan)
    if fmt == "dot":
        out.write_text(g.source, encoding="utf-8")
        return out
    try:
        data = g.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise EdivError(
            "Graphviz 'dot' is not installed (apt-get install graphviz); write a .dot file instead"
        ) from None
    out.write_bytes(data)
    return out
