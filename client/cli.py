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


@click.group(cls=EdivGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ediv")
def cli() -> None:
    """Deploy VNUML network-emulation scenarios across a cluster of Linux hosts."""


MODULES = ("client.offline", "client.cluster_cmd", "client.testbed_cmd", "client.ovf_cmd",
           "client.image_cmd", "provider.cli")
# `ediv ovf ...` needs only its own module: the others import paramiko, xmlschema...
# (about a second of start-up on a loaded 2-core machine, which bench/bench_ovf.py sees).
ONLY_FOR = {"ovf": "client.ovf_cmd"}


def _register(only: str | None = None) -> None:
    import importlib

    for name in (only,) if only else MODULES:
        importlib.import_module(f"ediv.{name}").register(cli)


def main() -> None:
    _register(ONLY_FOR.get(sys.argv[1]) if len(sys.argv) > 1 else None)
    cli(prog_name="ediv")


if __name__ == "__main__":
    main()
