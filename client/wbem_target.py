"""Where ``--server`` points: the WBEM options every cluster command takes and the
:class:`Target` they make. Kept apart from ``ediv.client.wbem_mode`` (the back end itself) so
that a command in direct mode declares these options without importing that back end."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ediv.errors import EdivError


@dataclass
class Target:
    url: str
    user: str | None
    password: str | None
    ca_cert: str | None

    def connect(self):
        import pywbem

        from ediv.cim_names import NAMESPACE

        creds = (self.user, self.password or "") if self.user else None
        return pywbem.WBEMConnection(self.url, creds, default_namespace=NAMESPACE,
                                     ca_certs=self.ca_cert, timeout=120)


def target_of(server: str | None, user: str | None, password_file: str | None,
            ca_cert: str | None, profile: str | None) -> Target | None:
    data: dict[str, Any] = {}
    if profile:
        import tomllib  # here: every cluster command imports this module for its options

        try:
            data = tomllib.loads(Path(profile).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EdivError(f"{profile}: cannot read the profile: {exc}") from None
        base = Path(profile).resolve().parent
        for key in ("password_file", "ca_cert"):
            if data.get(key) and not Path(data[key]).expanduser().is_absolute():
                data[key] = str(base / Path(data[key]).expanduser())
    url = server or data.get("server")
    if not url:
        return None
    user = user or data.get("user")
    password_file = password_file or data.get("password_file")
    password = os.environ.get("EDIV_PASSWORD")
    if password_file:
        try:
            password = Path(password_file).expanduser().read_text(encoding="utf-8") \
                .splitlines()[0]
        except (OSError, IndexError) as exc:
            raise EdivError(f"{password_file}: cannot read the password: {exc}") from None
    elif password is None and user and sys.stdin.isatty():
        password = click.prompt(f"Password for {user}", hide_input=True, err=True)
    return Target(url, user, password, ca_cert or data.get("ca_cert"))


SERVER_OPTIONS = (
    click.option("--server", metavar="URL", envvar="EDIV_SERVER",
                 help="Run through this ediv WBEM server (https://HOST:5989)."),
    click.option("--user", metavar="NAME", help="WBEM user (with --server)."),
    click.option("--password-file", type=click.Path(dir_okay=False),
                 help="File whose first line is the password (with --server)."),
    click.option("--ca-cert", type=click.Path(dir_okay=False, exists=True),
                 help="CA (or the server's own) certificate, PEM (with --server)."),
    click.option("--profile", type=click.Path(dir_okay=False, exists=True),
                 help="TOML file with server, user, password_file, ca_cert."),
)
