"""Cluster commands (direct mode): deploy, exec, release, status, locate, segments, hosts,
vm, console, cleanup. The engine runs in this process; state lives in the state store."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from ediv import state as st
from ediv import testbed
from ediv.agent import VM_ACTIONS
from ediv.client.names import name_or_file
from ediv.client.offline import parse_loads, planning_options
from ediv.client.output import (
    print_exec_results,
    print_locate,
    print_segments,
    print_status,
    print_vm_state,
)
from ediv.client.progress import ProgressDisplay
from ediv.client.wbem_mode import server_options
from ediv.cluster import Cluster, load_cluster, parse_cluster
from ediv.controller import Controller, scenario_status
from ediv.errors import EdivError

state_option = click.option(
    "--state", "state_path", default=st.DEFAULT_PATH, show_default=True, envvar="EDIV_STATE",
    type=click.Path(dir_okay=False), help="State store (SQLite).")
trust_option = click.option(
    "--trust-new-hosts", is_flag=True,
    help="Trust hosts whose SSH key is unknown and save it to known_hosts (first use only).")


def open_store(path: str) -> st.StateStore:
    store = st.StateStore(path)
    store.fail_orphaned_jobs()
    return store


def resolve_cluster(path: str | None) -> Cluster:
    if path:
        return load_cluster(path)
    default = Path(testbed.DEFAULT_DIR) / "cluster.conf"
    if default.exists():
        return load_cluster(str(default))
    raise EdivError("no cluster file: pass -c CLUSTER, or run 'ediv testbed up' for a local one")


def stored_cluster(store: st.StateStore, name: str, path: str | None) -> Cluster:
    if path:
        return load_cluster(path)
    if store.scenario(name) is None:
        raise EdivError(f"no scenario named {name!r}")
    stored = store.cluster_of(name)
    return parse_cluster(stored[1], stored[0]) if stored else resolve_cluster(None)


@click.command()
@server_options("deploy")
@click.argument("scenario", type=click.Path(dir_okay=False, exists=True))
@planning_options
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
@click.option("--allow-files", "allow_files", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True),
              help="A directory besides the scenario's own whose files <filetree> and <exec "
                   "type=\"file\"> may name by absolute path (repeatable; cluster.conf: "
                   "file_dirs).")
def deploy(scenario, cluster_path, algorithm, restrictions_path, loads, state_path,
           trust_new_hosts, as_json, allow_files=()) -> None:
    """Deploy SCENARIO across the cluster (EDIV's -t). Rolls back on any host failure.

    The scenario's files are read only from its own directory and the allowed directories."""
    cluster = resolve_cluster(cluster_path)
    cluster.file_dirs += list(allow_files)
    store = open_store(state_path)
    display = ProgressDisplay(f"deploying {Path(scenario).name}", quiet=as_json)
    with display, Controller(store, cluster, trust_new_hosts=trust_new_hosts,
                             progress=display) as ctl:
        plan = ctl.deploy(scenario, algorithm=algorithm, restrictions_path=restrictions_path,
                          loads=parse_loads(loads))
    status = scenario_status(store, store.scenario(plan.scenario))
    if as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        click.echo(f"{plan.scenario}: deployed {len(plan.allocation)} VMs on "
                   f"{len(plan.used_hosts())} hosts, {len(plan.segments)} segments")


@click.command(name="exec")
@server_options("exec")
@click.argument("name", callback=name_or_file)
@click.argument("seq")
@click.option("--vm", "vms", multiple=True, metavar="VM",
              help="Only on this VM (repeatable; VNUML's -M). Host commands then do not run.")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def exec_cmd(name, seq, vms, cluster_path, state_path, trust_new_hosts, as_json) -> None:
    """Run command sequence SEQ on every VM of scenario NAME (EDIV's -x).

    NAME is the scenario's name or its file."""
    store = open_store(state_path)
    cluster = stored_cluster(store, name, cluster_path)
    with Controller(store, cluster, trust_new_hosts=trust_new_hosts) as ctl:
        results = ctl.exec(name, seq, vms=list(vms) or None)
    print_exec_results(results, as_json)


@click.command()
@server_options("release")
@click.argument("name", callback=name_or_file)
@click.option("--purge", is_flag=True, help="Also remove VM disks and state (EDIV's -P).")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
def release(name, purge, cluster_path, state_path, trust_new_hosts) -> None:
    """Release scenario NAME (or the scenario of a file) on every host (EDIV's -d; with
    --purge, -P)."""
    store = open_store(state_path)
    cluster = stored_cluster(store, name, cluster_path)
    display = ProgressDisplay(f"releasing {name}")
    with display, Controller(store, cluster, trust_new_hosts=trust_new_hosts,
                             progress=display) as ctl:
        left = ctl.release(name, purge=purge)
    if left:
        click.echo(f"{name}: could not reach {', '.join(left)}; their records stay until "
                   "'ediv release' or 'ediv cleanup' reaches them", err=True)
        sys.exit(1)
    click.echo(f"{name}: released")


@click.command()
@server_options("status")
@click.argument("name", required=False, callback=name_or_file)
@state_option
@click.option("--json", "as_json", is_flag=True)
def status(name, state_path, as_json) -> None:
    """State of scenario NAME (or of every scenario)."""
    store = open_store(state_path)
    rows = [store.scenario(name)] if name else store.scenarios()
    if name and rows[0] is None:
        raise EdivError(f"no scenario named {name!r}")
    print_status([scenario_status(store, r) for r in rows], bool(name), as_json)


@click.command()
@server_options("locate")
@click.argument("vm", required=False)
@click.option("-s", "--scenario", "name", help="Only this scenario.")
@state_option
@click.option("--json", "as_json", is_flag=True)
def locate(vm, name, state_path, as_json) -> None:
    """Which host each VM runs on."""
    store = open_store(state_path)
    print_locate([{"scenario": v["scenario"], "vm": v["name"], "host": v["host"],
                   "state": v["state"]} for v in store.vms(name) if vm is None or v["name"] == vm],
                 vm, as_json)


@click.command()
@server_options("segments")
@click.argument("name", required=False)
@state_option
@click.option("--json", "as_json", is_flag=True)
def segments(name, state_path, as_json) -> None:
    """Segments in use (nets that span hosts), with their VLAN/VXLAN ids."""
    store = open_store(state_path)
    print_segments(store.segments(name), as_json)


@click.command()
@server_options("hosts")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def hosts(cluster_path, state_path, trust_new_hosts, as_json) -> None:
    """Live load and memory of every host (EDIV's monitor)."""
    cluster = resolve_cluster(cluster_path)
    store = open_store(state_path)
    with Controller(store, cluster, trust_new_hosts=trust_new_hosts) as ctl:
        outcomes = ctl.probe()
    counts: dict[str, int] = {}
    for v in store.vms():
        counts[v["host"]] = counts.get(v["host"], 0) + 1
    rows = []
    for h in cluster.hosts:
        o = outcomes[h.name]
        r = o.result if o.ok else {}
        mem = r.get("memory") or {}
        rows.append({"host": h.name, "address": h.address, "state": "up" if o.ok else "down",
                     "load": r.get("load"), "cpus": r.get("cpus"),
                     "mem_total_mb": mem["total"] // 2**20 if "total" in mem else None,
                     "mem_available_mb": mem["available"] // 2**20 if "available" in mem else None,
                     "vms": counts.get(h.name, 0), "uml": (r.get("uml") or {}).get("installed"),
                     "error": None if o.ok else o.error})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for col in ("host", "address", "state", "load", "cpus", "mem free/total MB", "VMs"):
        t.add_column(col)
    for r in rows:
        mem = (f"{r['mem_available_mb']}/{r['mem_total_mb']}"
               if r["mem_total_mb"] is not None else "")
        load = f"{r['load']:.2f}" if isinstance(r["load"], int | float) else ""
        t.add_row(r["host"], r["address"] or "", r["state"] if not r["error"] else r["error"],
                  load, str(r["cpus"] or ""), mem, str(r["vms"]))
    Console().print(t)
    if any(r["error"] for r in rows):
        sys.exit(1)


@click.command(name="vm")
@server_options("vm")
@click.argument("action", type=click.Choice(VM_ACTIONS))
@click.argument("name", callback=name_or_file)
@click.argument("vm")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def vm_cmd(action, name, vm, cluster_path, state_path, trust_new_hosts, as_json) -> None:
    """Start, stop, shutdown, reboot, reset, pause or resume one VM of deployed scenario NAME.

    stop halts the VM (killed if it has not halted after the agent's stop_timeout, 30 s by
    default); shutdown only asks it to halt (fails, VM left running, after stop_timeout);
    reset kills it and boots it again; reboot is stop then start. A stopped VM keeps its
    interfaces, disk and files; start boots it again and runs its on_boot sequence. pause
    freezes every process of the VM (it answers nothing); resume (or start) lets it run on.
    Exit status 4 when the action does not apply (reboot or pause of a stopped VM).
    """
    store = open_store(state_path)
    cluster = stored_cluster(store, name, cluster_path)
    with Controller(store, cluster, trust_new_hosts=trust_new_hosts) as ctl:
        result = ctl.vm_state(name, vm, action)
    print_vm_state(name, result, as_json)


@click.command(context_settings={"ignore_unknown_options": True})
@server_options("console")
@click.argument("name", callback=name_or_file)
@click.argument("vm")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@state_option
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
def console(name, vm, command, state_path, cluster_path) -> None:
    """A shell inside VM of scenario NAME, or one command: ediv console NAME VM -- CMD...

    CMD's words reach the VM as they are (no shell in between; use -- sh -c '...' for a
    shell line); the exit status is the command's."""
    store = open_store(state_path)
    cluster = stored_cluster(store, name, cluster_path)
    row = next((v for v in store.vms(name) if v["name"] == vm), None)
    if row is None:
        raise EdivError(f"no VM {vm!r} in scenario {name!r}")
    host = cluster.host(row["host"])
    part = next(p for p in store.parts(name) if p["host"] == row["host"])
    agent = f"{host.agent} console --key {shlex.quote(part['key'])} {shlex.quote(vm)}"
    if command:
        agent += " -- " + " ".join(shlex.quote(c) for c in command)
    ssh = ["ssh", "-p", str(host.ssh_port), "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes"]
    if cluster.known_hosts:
        ssh += ["-o", f"UserKnownHostsFile={cluster.known_hosts}"]
    if cluster.ssh_key:
        ssh += ["-i", cluster.ssh_key]
    ssh += ["-t"] if not command and sys.stdin.isatty() else ["-T"]
    ssh += [f"{host.ssh_user}@{host.address or host.name}", agent]
    os.execvp("ssh", ssh)


@click.command()
@server_options("cleanup")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def cleanup(cluster_path, state_path, trust_new_hosts, yes) -> None:
    """Remove every scenario the state store and the host agents know of (EDIV's cleanup)."""
    store = open_store(state_path)
    cluster = resolve_cluster(cluster_path)
    names = [r.name for r in store.scenarios()]
    if not yes:
        click.confirm(f"release and purge {len(names)} scenarios ({', '.join(names) or 'none'}) "
                      f"and anything else the agents of {len(cluster.hosts)} hosts hold?",
                      abort=True)
    display = ProgressDisplay("cleanup")
    with display, Controller(store, cluster, trust_new_hosts=trust_new_hosts,
                             progress=display) as ctl:
        report = ctl.cleanup()
    click.echo(json.dumps(report, indent=2))
    if report["left"]:
        sys.exit(1)


def register(cli: click.Group) -> None:
    for cmd in (deploy, exec_cmd, release, status, locate, segments, hosts, vm_cmd, console,
                cleanup):
        cli.add_command(cmd)
