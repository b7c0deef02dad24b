"""``ediv server`` and ``ediv server adduser``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ediv.errors import EdivError
from ediv.provider.auth import Role, add_user
from ediv.provider.config import default_config_path, load_config

if TYPE_CHECKING:
    from ediv.provider.engine_plugin import EnginePlugin
    from ediv.provider.server import ServerHandle


def register(cli: click.Group) -> None:
    cli.add_command(server)


@click.group(invoke_without_command=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Server config (TOML). Default: /etc/ediv/server.toml as root, else "
                   "~/.config/ediv/server.toml. Missing: defaults, files kept beside it.")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default 0.0.0.0:5989).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path),
              help="State store of the controller.")
@click.pass_context
def server(ctx: click.Context, config_file: Path | None, listen: str | None,
           state: Path | None) -> None:
    """Run the WBEM server (CIM-XML over HTTPS)."""
    ctx.ensure_object(dict)
    ctx.obj["server_config"] = config_file
    if ctx.invoked_subcommand is not None:
        return
    from ediv.provider.engine_plugin import EnginePlugin
    from ediv.provider.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.umask(0o077)  # whatever the server writes (specs, job files, keys) is private
    try:
        cfg = load_config(config_file or default_config_path(), listen=listen, state=state)
    except ValueError as exc:
        raise EdivError(str(exc)) from None
    plugin = EnginePlugin()
    try:
        handle = serve(cfg, plugins=[plugin])
    except OSError as exc:
        raise EdivError(f"cannot listen on {cfg.listen}: {exc.strerror or exc}") from None
    if not cfg.users_file.exists():
        click.echo(f"note: no users yet; add one with: ediv server adduser NAME --role admin"
                   f" --config {cfg.config_dir / 'server.toml'}", err=True)
    click.echo(f"ediv WBEM server on {handle.url}", err=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stopping.set())
    signal.signal(signal.SIGINT, lambda _sig, _frame: stopping.set())
    while not stopping.wait(0.5) and handle.transport.is_alive():
        pass
    shutdown(plugin, handle)


def shutdown(plugin: EnginePlugin, handle: ServerHandle) -> None:
    """Within 10 s: the indication watcher first (a successor process must be the only one
    delivering), then the transport (no new connections; requests in flight get 5 s), then
    a last look for jobs; a job still running is failed by the next start."""
    log = logging.getLogger("ediv.provider")
    plugin.stop_indications(timeout=2)
    log.info("indication watcher stopped")
    handle.stop()
    log.info("WBEM server stopped")
    if plugin.jobs is not None:
        plugin.jobs.wait_all(1)


@server.command("adduser")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["reader", "operator", "admin"]))
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Server config whose users file is updated.")
@click.pass_context
def adduser(ctx: click.Context, name: str, role: str, config_file: Path | None) -> None:
    """Add or update a user; the password is read from standard input."""
    config_file = config_file or ctx.obj.get("server_config") or default_config_path()
    cfg = load_config(config_file)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    add_user(cfg.users_file, name, Role.parse(role), password)
    click.echo(f"user {name} ({role}) written to {cfg.users_file}", err=True)
