"""Offline commands: validate, plan, split, map, algorithms. No root, no server, no hosts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ediv.client.planning import parse_loads, planning_options
from ediv.client.validate_cmd import validate, warn
from ediv.cluster import Cluster, default_cluster, load_cluster
from ediv.partition import registry
from ediv.plan import Plan, make_plan
from ediv.private import private_dir, write_private
from ediv.restrictions import load_restrictions
from ediv.scenario import load_scenario, to_xml
from ediv.scenario.model import Scenario

_warn = warn


def load_inputs(scenario_path: str, cluster_path: str | None) -> tuple[Scenario, Cluster]:
    scenario, warnings = load_scenario(scenario_path, deployable=True)
    _warn(warnings)
    if cluster_path:
        cluster = load_cluster(cluster_path)
    else:
        cluster = default_cluster()
        click.echo(
            f"note: no cluster file given (-c); planning on the embedded cluster "
            f"{', '.join(h.name for h in cluster.hosts)}",
            err=True,
        )
    _warn(cluster.warnings)
    return scenario, cluster


def plan_from_options(
    scenario_path, cluster_path, algorithm, restrictions_path, loads
) -> tuple[Scenario, Cluster, Plan]:
    scenario, cluster = load_inputs(scenario_path, cluster_path)
    restrictions = load_restrictions(restrictions_path) if restrictions_path else None
    plan = make_plan(scenario, cluster, algorithm, restrictions, parse_loads(loads))
    return scenario, cluster, plan


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@planning_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(scenario, cluster_path, algorithm, restrictions_path, loads, as_json) -> None:
    """Place the VMs of SCENARIO on the cluster's hosts (EDIV's segmentation, dry run)."""
    sc, cluster, p = plan_from_options(scenario, cluster_path, algorithm, restrictions_path, loads)
    if as_json:
        data = p.to_json()
        click.echo(json.dumps(data, indent=2))
        return
    print_plan(sc, cluster, p)


def print_plan(scenario: Scenario, cluster: Cluster, p: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    hosts = Table(
        title=f"{scenario.name}: {len(p.allocation)} VMs with {p.algorithm}", title_justify="left"
    )
    for col in ("host", "load", "cpu", "VMs", "virtual machines"):
        hosts.add_column(col, justify="right" if col in ("load", "cpu", "VMs") else "left")
    for h in cluster.hosts:
        vms = p.hosts.get(h.name, [])
        shown = ", ".join(vms[:12]) + (f", ... (+{len(vms) - 12})" if len(vms) > 12 else "")
        hosts.add_row(
            h.name, f"{p.loads.get(h.name, h.load):.2f}", str(h.cpu), str(len(vms)), shown
        )
    console.print(hosts)
    if p.segments:
        segs = Table(title="segments (nets that span hosts)", title_justify="left")
        for col in ("net", "kind", "id", "hosts"):
            segs.add_column(col)
        for s in p.segments:
            segs.add_row(s.net, s.kind, str(s.id), ", ".join(s.hosts))
        console.print(segs)
    else:
        console.print("no segments: every net stays on one host")
    if p.host_section:
        console.print(f"<host> section runs on {p.host_section}")
    for note in p.notes:
        console.print(f"note: {note}")


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@planning_options
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for the sub-scenarios and plan.json.",
)
def split(scenario, cluster_path, algorithm, restrictions_path, loads, outdir) -> None:
    """Write one VNUML sub-scenario per host, its deploy.json, and plan.json."""
    from ediv.split import split as do_split

    sc, cluster, p = plan_from_options(scenario, cluster_path, algorithm, restrictions_path, loads)
    parts = do_split(sc, p, cluster, absolute_paths=True)
    out = Path(outdir)
    if not out.exists():  # specs are private: a new output dir is 0700, its files 0600
        private_dir(out)
    files = {}
    for part in parts:
        xml_name = f"{part.scenario.name}.xml"
        write_private(out / xml_name, to_xml(part.scenario))
        write_private(out / f"{part.scenario.name}.deploy.json",
                      json.dumps(part.deploy, indent=2) + "\n")
        files[part.host] = xml_name
        click.echo(f"{part.host}: {out / xml_name} ({len(part.vms)} VMs)")
    data = p.to_json()
    data["files"] = files
    write_private(out / "plan.json", json.dumps(data, indent=2) + "\n")
    click.echo(f"plan: {out / 'plan.json'} ({len(p.segments)} segments)")


@click.command(name="map")
@click.argument("scenario", type=click.Path(dir_okay=False))
@planning_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Picture to write: .svg, .png or .dot.",
)
@click.option("--no-plan", is_flag=True, help="Draw the scenario alone, without hosts.")
def map_cmd(scenario, cluster_path, algorithm, restrictions_path, loads, output, no_plan) -> None:
    """Draw the topology: VMs and nets, hosts as clusters, segments in red."""
    from ediv.topology import render

    if no_plan:
        sc, warnings = load_scenario(scenario)
        _warn(warnings)
        p = None
    else:
        sc, _cluster, p = plan_from_options(
            scenario, cluster_path, algorithm, restrictions_path, loads
        )
    path = render(sc, p, output)
    click.echo(f"wrote {path}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
def algorithms(as_json: bool) -> None:
    """List the partition algorithms (built in and from plugins)."""
    rows = []
    for name, cls in registry.available().items():
        doc = getattr(cls, "description", "") or (cls.__doc__ or "").strip().splitlines()[0]
        rows.append({"name": name, "description": doc, "module": cls.__module__})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows) if rows else 0
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['description']}")


def register(cli: click.Group) -> None:
    for cmd in (validate, plan, split, map_cmd, algorithms):
        cli.add_command(cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the 'ediv' command")
