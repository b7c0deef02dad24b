"""``ediv testbed up|down``: local namespace hosts with sshd, for trying ediv and for tests."""

from __future__ import annotations

from pathlib import Path

import click

from ediv import testbed


@click.group(name="testbed")
def testbed_group() -> None:
    """A local testbed: N hosts in network namespaces, each with its own sshd (needs root)."""


dir_option = click.option(
    "--dir", "directory", default=testbed.DEFAULT_DIR, show_default=True,
    type=click.Path(file_okay=False), help="Where keys, known_hosts and cluster.conf go.")


@testbed_group.command()
@click.option("--hosts", "count", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--image-path", "image_paths", multiple=True, type=click.Path(exists=True),
              help="A directory (or file) the hosts accept VM images from (repeatable), "
                   "besides DIR/images/ and the image store.")
@dir_option
def up(count: int, image_paths: tuple[str, ...], directory: str) -> None:
    """Build the testbed and write DIR/cluster.conf for 'ediv deploy -c'."""
    tb = testbed.up(count, directory, progress=click.echo,
                    image_paths=[str(Path(p).resolve()) for p in image_paths])
    click.echo(f"testbed up: {len(tb.hosts)} hosts on {tb.subnet} (switch {tb.bridge})")


@testbed_group.command()
@dir_option
def down(directory: str) -> None:
    """Remove the testbed: namespaces, links, sshd processes, keys and files."""
    if testbed.down(directory, progress=click.echo):
        click.echo("testbed down")
    else:
        click.echo(f"no testbed in {directory}")


def register(cli: click.Group) -> None:
    cli.add_command(testbed_group)
