"""The ``ediv`` command line: one click group; each area adds its commands from its own module."""

from __future__ import annotations

import sys

import click

from ediv import __version__
from ediv.errors import EdivError, InputError, WrongState

EXIT_WRONG_STATE = 4  # the request does not apply to the present state (e.g. reboot a stopped VM)


class EdivGroup(click.Group):
    """Turns user-facing errors into messages and exit codes, never tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            for d in exc.diagnostics:
                click.echo(str(d), err=True)
            sys.exit(1)
        except WrongState as exc:
            click.echo(f"ediv: error: {exc}", err=True)
            sys.exit(EXIT_WRONG_STATE)
        except EdivError as exc:
            click.echo(f"ediv: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=EdivGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ediv")
def cli() -> None:
    """Deploy VNUML network-emulation scenarios across a cluster of Linux hosts."""


def _register() -> None:
    import importlib

    for name in ("client.offline", "client.cluster_cmd", "client.testbed_cmd", "client.ovf_cmd",
                 "client.image_cmd", "provider.cli"):
        importlib.import_module(f"ediv.{name}").register(cli)


def main() -> None:
    _register()
    cli(prog_name="ediv")


if __name__ == "__main__":
    main()
