"""Cluster commands: deploy, exec, release, status, locate, segments, hosts, vm, console,
cleanup. Each is written once: parse its options, take the back end (``--server``: the WBEM
server; else direct mode, the engine in this process over the state store), call it once,
print once (``ediv.client.output``). See ``ediv.client.backend``."""

from __future__ import annotations

import click

from ediv import state as st
from ediv.client.backend import Backend, DeployRequest, backend_options
from ediv.client.names import name_or_file
from ediv.client.output import (
    print_cleanup,
    print_deployed,
    print_exec_results,
    print_hosts,
    print_locate,
    print_released,
    print_segments,
    print_status,
    print_vm_state,
)
from ediv.client.planning import parse_loads, planning_options
from ediv.protocol import VM_ACTIONS

state_option = click.option(
    "--state", "state_path", default=st.DEFAULT_PATH, show_default=True, envvar="EDIV_STATE",
    type=click.Path(dir_okay=False), help="State store (SQLite).")
trust_option = click.option(
    "--trust-new-hosts", is_flag=True,
    help="Trust hosts whose SSH key is unknown and save it to known_hosts (first use only).")


@click.command()
@backend_options
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
def deploy(backend: Backend, scenario, algorithm, restrictions_path, loads, as_json,
           allow_files=()) -> None:
    """Deploy SCENARIO across the cluster (EDIV's -t). Rolls back on any host failure.

    The scenario's files are read only from its own directory and the allowed directories."""
    done = backend.deploy(DeployRequest(scenario, algorithm, restrictions_path,
                                        parse_loads(loads), tuple(allow_files), quiet=as_json))
    print_deployed(done.name, done.vms, done.hosts, done.segments, done.status, as_json)


@click.command(name="exec")
@backend_options
@click.argument("name", callback=name_or_file)
@click.argument("seq")
@click.option("--vm", "vms", multiple=True, metavar="VM",
              help="Only on this VM (repeatable; VNUML's -M). Host commands then do not run.")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def exec_cmd(backend: Backend, name, seq, vms, as_json) -> None:
    """Run command sequence SEQ on every VM of scenario NAME (EDIV's -x).

    NAME is the scenario's name or its file. One result per VM (its first non-zero exit
    code, the outputs of all its commands); a VM whose result is unknown (stopped, its host
    lost) says why. Exit status 1 when any VM failed or is unknown, or SEQ is not a sequence
    of the scenario."""
    print_exec_results(backend.exec(name, seq, list(vms) or None), as_json)


@click.command()
@backend_options
@click.argument("name", callback=name_or_file)
@click.option("--purge", is_flag=True, help="Also remove VM disks and state (EDIV's -P).")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
def release(backend: Backend, name, purge) -> None:
    """Release scenario NAME (or the scenario of a file) on every host (EDIV's -d; with
    --purge, -P)."""
    print_released(name, backend.release(name, purge))


@click.command()
@backend_options
@click.argument("name", required=False, callback=name_or_file)
@state_option
@click.option("--json", "as_json", is_flag=True)
def status(backend: Backend, name, as_json) -> None:
    """State of scenario NAME (or of every scenario)."""
    print_status(backend.status(name), bool(name), as_json)


@click.command()
@backend_options
@click.argument("vm", required=False)
@click.option("-s", "--scenario", "name", help="Only this scenario.")
@state_option
@click.option("--json", "as_json", is_flag=True)
def locate(backend: Backend, vm, name, as_json) -> None:
    """Which host each VM runs on."""
    print_locate(backend.locate(vm, name), vm, as_json)


@click.command()
@backend_options
@click.argument("name", required=False)
@state_option
@click.option("--json", "as_json", is_flag=True)
def segments(backend: Backend, name, as_json) -> None:
    """Segments in use (nets that span hosts), with their VLAN/VXLAN ids."""
    print_segments(backend.segments(name), as_json)


@click.command()
@backend_options
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def hosts(backend: Backend, as_json) -> None:
    """Live load and memory of every host (EDIV's monitor)."""
    print_hosts(backend.hosts(), as_json, backend.live_hosts)


@click.command(name="vm")
@backend_options
@click.argument("action", type=click.Choice(VM_ACTIONS))
@click.argument("name", callback=name_or_file)
@click.argument("vm")
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("--json", "as_json", is_flag=True)
def vm_cmd(backend: Backend, action, name, vm, as_json) -> None:
    """Start, stop, shutdown, reboot, reset, pause or resume one VM of deployed scenario NAME.

    stop halts the VM (killed if it has not halted after the agent's stop_timeout, 30 s by
    default); shutdown only asks it to halt (fails, VM left running, after stop_timeout);
    reset kills it and boots it again; reboot is stop then start. A stopped VM keeps its
    interfaces, disk and files; start boots it again and runs its on_boot sequence. pause
    freezes every process of the VM (it answers nothing); resume (or start) lets it run on.
    Exit status 4 when the action does not apply (reboot or pause of a stopped VM).
    """
    print_vm_state(name, backend.vm_state(name, vm, action, quiet=as_json), as_json)


@click.command(context_settings={"ignore_unknown_options": True})
@backend_options
@click.argument("name", callback=name_or_file)
@click.argument("vm")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@state_option
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
def console(backend: Backend, name, vm, command) -> None:
    """A shell inside VM of scenario NAME, or one command: ediv console NAME VM -- CMD...

    CMD's words reach the VM as they are (no shell in between; use -- sh -c '...' for a
    shell line); the exit status is the command's. Direct mode only."""
    backend.console(name, vm, tuple(command))


@click.command()
@backend_options
@click.option("-c", "--cluster", "cluster_path", type=click.Path(dir_okay=False))
@state_option
@trust_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def cleanup(backend: Backend, yes) -> None:
    """Remove every scenario the state store and the host agents know of (EDIV's cleanup).

    Direct mode only."""
    names, host_count = backend.cleanup_scope()
    if not yes:
        click.confirm(f"release and purge {len(names)} scenarios ({', '.join(names) or 'none'}) "
                      f"and anything else the agents of {host_count} hosts hold?", abort=True)
    print_cleanup(backend.cleanup())


def register(cli: click.Group) -> None:
    for cmd in (deploy, exec_cmd, release, status, locate, segments, hosts, vm_cmd, console,
                cleanup):
        cli.add_command(cmd)
