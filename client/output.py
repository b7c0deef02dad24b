"""Output shared by direct mode and --server mode, so both print exactly the same."""

from __future__ import annotations

import json
import sys

import click

from ediv.errors import EdivError


def print_exec_results(results: list[dict], as_json: bool) -> None:
    """`ediv exec` output: JSON list (one entry per VM), or one block per VM; exit 1 when
    any VM failed or its result is unknown (``exit_code`` null, with an ``error``)."""
    failed = [r for r in results if r["exit_code"] != 0]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["exit_code"] is None:
                mark = f"unknown ({r.get('error') or 'no result'})"
            else:
                mark = "ok" if r["exit_code"] == 0 else f"exit {r['exit_code']}"
                if r.get("error"):
                    mark += f" ({r['error']})"
            click.echo(f"--- {r['vm'] or '(host)'} on {r['host']}: {mark}")
            if r["output"]:
                click.echo(r["output"].rstrip())
        click.echo(f"{len(results) - len(failed)}/{len(results)} succeeded")
    if failed:
        sys.exit(1)


def print_deployed(name: str, vms: int, hosts: int, segments: int, status: dict,
                   as_json: bool) -> None:
    """`ediv deploy`: the scenario's status (JSON), or one line with the counts."""
    if as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        click.echo(f"{name}: deployed {vms} VMs on {hosts} hosts, {segments} segments")


def print_released(name: str, problem: str | None) -> None:
    """`ediv release`: "NAME: released", or what is left on stderr and exit 1."""
    if problem:
        click.echo(f"{name}: {problem}", err=True)
        sys.exit(1)
    click.echo(f"{name}: released")


def print_hosts(rows: list[dict], as_json: bool, detailed: bool) -> None:
    """`ediv hosts`: rows of {host, address, state, load, cpus, mem_*, vms, uml, error};
    ``detailed``: probed now (CPUs and memory known); exit 1 when any host has an error."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table()
    columns = ("host", "address", "state", "load", "cpus", "mem free/total MB", "VMs")
    for col in columns if detailed else ("host", "address", "state", "load", "VMs"):
        t.add_column(col)
    for r in rows:
        load = f"{r['load']:.2f}" if isinstance(r["load"], int | float) else ""
        state = r["error"] or r["state"]
        if detailed:
            mem = (f"{r['mem_available_mb']}/{r['mem_total_mb']}"
                   if r["mem_total_mb"] is not None else "")
            t.add_row(r["host"], r["address"] or "", state, load, str(r["cpus"] or ""), mem,
                      str(r["vms"]))
        else:
            t.add_row(r["host"], r["address"] or "", state, load, str(r["vms"]))
    Console().print(t)
    if any(r["error"] for r in rows):
        sys.exit(1)


def print_cleanup(report: dict) -> None:
    """`ediv cleanup`: its report as JSON; exit 1 when something is left."""
    click.echo(json.dumps(report, indent=2))
    if report["left"]:
        sys.exit(1)


def print_vm_state(scenario: str, result: dict, as_json: bool) -> None:
    """`ediv vm` output: what the VM was and is now, and where it runs."""
    data = {"scenario": scenario, "vm": result["vm"], "host": result.get("host"),
            "action": result["action"], "previous": result["previous"],
            "state": result["state"]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    change = (f"{data['previous']} -> {data['state']}" if data["previous"] != data["state"]
              or data["action"] in ("reboot", "reset") else f"already {data['state']}")
    click.echo(f"{scenario}/{data['vm']} on {data['host']}: {data['action']}: {change}")


def print_status(data: list[dict], single: bool, as_json: bool) -> None:
    """`ediv status`: scenario_status() dicts; ``single``: NAME was given (JSON is one object)."""
    if as_json:
        click.echo(json.dumps(data[0] if single else data, indent=2))
        return
    if not data:
        click.echo("no scenarios")
    for s in data:
        hosts = sorted({v["host"] for v in s["vms"] if v["host"]})
        click.echo(f"{s['name']}: {s['state']}, {len(s['vms'])} VMs on {len(hosts)} hosts, "
                   f"{len(s['segments'])} segments" + (f" ({s['error']})" if s["error"] else ""))


def print_locate(rows: list[dict], vm: str | None, as_json: bool) -> None:
    """`ediv locate`: rows of {scenario, vm, host, state}."""
    if vm and not rows:
        raise EdivError(f"no VM named {vm!r} in any deployed scenario")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for v in rows:
        click.echo(f"{v['scenario']}/{v['vm']}: {v['host']} ({v['state']})")


def print_segments(rows: list[dict], as_json: bool) -> None:
    """`ediv segments`: rows of {kind, id, scenario, net, hosts}."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no segments in use")
    for s in rows:
        click.echo(f"{s['scenario']}/{s['net']}: {s['kind']} {s['id']} on {', '.join(s['hosts'])}")
