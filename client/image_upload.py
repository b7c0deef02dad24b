"""Send a disk image to a WBEM server's image store (``HEAD|PUT /ediv/images/sha256/<hex>``,
docs/cim.md "Images"), over the same HTTPS and credentials as the CIM operations.

The digest is computed here first (streamed); when the server already holds it, nothing is
sent but the name. The body is streamed from the file (never read whole) with progress lines
on stderr; the server stores it only if its sha256 is the one in the URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click

from ediv.errors import EdivError
from ediv.images.digest import file_digest, hex_of


class _Reading:
    """A file as a request body of known length, reporting how much was read."""

    def __init__(self, path: Path, report: Callable[[int], None]):
        self.f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        self.size = path.stat().st_size
        self.done = 0
        self.report = report

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(max(n, 1 << 20) if n and n > 0 else -1)
        self.done += len(data)
        self.report(self.done)
        return data

    def close(self) -> None:
        self.f.close()


def _progress(label: str, total: int) -> Callable[[int], None]:
    """Plain lines, at most one per 10% or 2 s."""
    state = {"t": 0.0, "pct": -10}

    def report(done: int) -> None:
        pct = 100 * done // max(1, total)
        now = time.monotonic()
        if pct - state["pct"] >= 10 or now - state["t"] >= 2 or done >= total:
            if done >= total and state["pct"] == 100:
                return
            state.update(t=now, pct=pct)
            click.echo(f"{label}: uploading {pct}% ({done >> 20}/{max(1, total) >> 20} MiB)",
                       err=True)

    return report


def _session(conn):
    import requests

    s = requests.Session()
    # REQUESTS_CA_BUNDLE / SSL_CERT_FILE must not replace the CA the user gave
    s.trust_env = False
    s.verify = False if conn.no_verification else (conn.ca_certs or True)
    if conn.creds:
        s.auth = tuple(conn.creds)
    if conn.x509:
        s.cert = (conn.x509["cert_file"], conn.x509.get("key_file"))
    return s


def upload_image(conn, path: str | Path, name: str) -> str:
    """Make the server's image store hold ``path`` under ``name``; its ``sha256:<hex>``."""
    import requests

    path = Path(path)
    click.echo(f"{name}: computing the sha256 of {path.stat().st_size >> 20} MiB", err=True)
    digest = file_digest(path)
    url = f"{conn.url.rstrip('/')}/ediv/images/sha256/{hex_of(digest)}"
    headers = {"Ediv-Image-Name": name}
    timeout = (30, 300)
    with _session(conn) as s:
        try:
            r = s.head(url, timeout=timeout)
            if r.status_code == 200:
                r = s.put(url, data=b"", headers=headers, timeout=timeout)
                _check(r, name)
                click.echo(f"{name}: the server has {digest} already: nothing sent", err=True)
                return digest
            if r.status_code != 404:
                _check(r, name)
            body = _Reading(path, _progress(name, path.stat().st_size))
            try:
                r = s.put(url, data=body, headers=headers, timeout=timeout)
            finally:
                body.close()
        except requests.RequestException as exc:
            raise EdivError(f"{name}: image upload to {conn.url} failed: {exc}") from None
    _check(r, name)
    click.echo(f"{name}: uploaded {digest}", err=True)
    return digest


def _check(r, name: str) -> None:
    if r.status_code not in (200, 201):
        why = (r.headers.get("Ediv-Error") or r.text or r.reason or "").strip()
        raise EdivError(f"{name}: the server refused the image: {r.status_code} {why}")
