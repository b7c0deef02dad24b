"""The ``ediv`` command line: one click group; each area adds its commands from its own module."""

from __future__ import annotations

import sys

import click

from ediv import __version__
from ediv.errors import EXIT_WRONG_STATE, EdivError, InputError, exit_code

__all__ = ["EXIT_WRONG_STATE", "cli"]


class EdivGroup(click.Group):
    """Turns user-facing errors into messages and exit codes (ediv.errors.CODES), never
    tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            for d in exc.diagnostics:
                click.echo(str(d), err=True)
            sys.exit(exit_code(exc))
        except EdivError as exc:
            click.echo(f"ediv: error: {exc}", err=True)
            sys.exit(exit_code(exc))


# Every command, the module (under ``ediv.``) whose ``register`` adds it, and the first
# paragraph of its help: ``ediv --help`` lists the commands from this table without importing
# any of them, and ``ediv CMD`` imports only CMD's module (pywbem, rich, paramiko, xmlschema
# cost about a second of start-up on a loaded 2-core machine). tests/test_cli_startup.py
# checks the table against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("client.validate_cmd",
                 "Check a VNUML scenario: exit 0, or 1 with 'file:line: message' lines."),
    "plan": ("client.offline",
             "Place the VMs of SCENARIO on the cluster's hosts (EDIV's segmentation, dry run)."),
    "split": ("client.offline",
              "Write one VNUML sub-scenario per host, its deploy.json, and plan.json."),
    "map": ("client.offline",
            "Draw the topology: VMs and nets, hosts as clusters, segments in red."),
    "algorithms": ("client.offline",
                   "List the partition algorithms (built in and from plugins)."),
    "deploy": ("client.cluster_cmd",
               "Deploy SCENARIO across the cluster (EDIV's -t). Rolls back on any host failure."),
    "exec": ("client.cluster_cmd",
             "Run command sequence SEQ on every VM of scenario NAME (EDIV's -x)."),
    "release": ("client.cluster_cmd",
                "Release scenario NAME (or the scenario of a file) on every host (EDIV's -d; "
                "with --purge, -P)."),
    "status": ("client.cluster_cmd", "State of scenario NAME (or of every scenario)."),
    "locate": ("client.cluster_cmd", "Which host each VM runs on."),
    "segments": ("client.cluster_cmd",
                 "Segments in use (nets that span hosts), with their VLAN/VXLAN ids."),
    "hosts": ("client.cluster_cmd", "Live load and memory of every host (EDIV's monitor)."),
    "vm": ("client.cluster_cmd",
           "Start, stop, shutdown, reboot, reset, pause or resume one VM of deployed "
           "scenario NAME."),
    "console": ("client.cluster_cmd",
                "A shell inside VM of scenario NAME, or one command: ediv console NAME VM -- "
                "CMD..."),
    "cleanup": ("client.cluster_cmd",
                "Remove every scenario the state store and the host agents know of (EDIV's "
                "cleanup)."),
    "testbed": ("client.testbed_cmd",
                "A local testbed: N hosts in network namespaces, each with its own sshd "
                "(needs root)."),
    "ovf": ("client.ovf_cmd", "Read, verify and convert OVF descriptors and OVA packages."),
    "image": ("client.image_cmd",
              "Root filesystem images: build Debian images, list, inspect, import, remove."),
    "server": ("provider.cli", "Run the WBEM server (CIM-XML over HTTPS)."),
}
MODULES = tuple(dict.fromkeys(module for module, _help in COMMANDS.values()))


class LazyEdivGroup(EdivGroup):
    """Imports a command's module only when the command runs (or its help is asked for)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            importlib.import_module(f"ediv.{COMMANDS[cmd_name][0]}").register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        stubs = {n: self.commands.get(n) or click.Command(n, help=COMMANDS[n][1]) for n in names}
        shown = [(n, c) for n, c in stubs.items() if not c.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(n) for n, _c in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in shown])


@click.group(cls=LazyEdivGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ediv")
def cli() -> None:
    """Deploy VNUML network-emulation scenarios across a cluster of Linux hosts."""


def _register(only: str | None = None) -> None:
    """Every command now (ediv-ctl, tests that use the group directly)."""
    import importlib

    for name in (only,) if only else MODULES:
        importlib.import_module(f"ediv.{name}").register(cli)


def main() -> None:
    # paramiko imports invoke when it is installed (for ssh_config "Match exec"), a third of
    # paramiko's import time; ediv reads no ssh_config, so the CLI does without it
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    cli(prog_name="ediv")


if __name__ == "__main__":
    main()
