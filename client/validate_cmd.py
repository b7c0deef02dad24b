"""``ediv validate``: its own module, so that checking a file imports the scenario package
only (no partitioners, plans, clusters or restrictions: see COMMANDS in client/cli.py)."""

from __future__ import annotations

import click


def warn(lines) -> None:
    for line in lines:
        click.echo(str(line) if "warning" in str(line) else f"warning: {line}", err=True)


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
def validate(scenario: str) -> None:
    """Check a VNUML scenario: exit 0, or 1 with 'file:line: message' lines."""
    from ediv.scenario import load_scenario

    sc, warnings = load_scenario(scenario, deployable=True)
    warn(warnings)
    click.echo(f"{scenario}: ok ({sc.name}: {len(sc.vms)} VMs, {len(sc.nets)} nets)")


def register(cli: click.Group) -> None:
    cli.add_command(validate)
