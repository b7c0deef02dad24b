"""Progress of long operations: a live table per host and VM on a terminal, plain lines
otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import threading
import time

import click


class ProgressDisplay:
    def __init__(self, title: str, live: bool | None = None, quiet: bool = False):
        self.title = title
        self.quiet = quiet
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.hosts: dict[str, str] = {}
        self.vms: dict[str, tuple[str, str]] = {}
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self._live = None

    def __enter__(self) -> ProgressDisplay:
        if self.live_mode and not self.quiet:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=8,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        host = event.get("host", "")
        with self.lock:
            if kind == "host":
                self.hosts[host] = event.get("state", "")
            elif kind == "vm":
                self.vms[event.get("vm", "?")] = (host, event.get("state", ""))
            elif kind not in ("net", "segment", "scenario", "warning", "error"):
                return
            if self._live is not None:
                self._live.update(self._render())
            elif not self.quiet:
                click.echo(self._line(event), err=True)

    def _line(self, event: dict) -> str:
        t = time.monotonic() - self.start
        parts = [f"[{t:6.1f}s]"]
        for k in ("host", "vm", "net", "scenario"):
            if event.get(k):
                parts.append(f"{k} {event[k]}")
        parts.append(str(event.get("state") or event.get("message") or event.get("event")))
        if event.get("error"):
            parts.append(f"({event['error']})")
        return " ".join(parts)

    def _render(self):
        from rich.table import Table

        t = Table(title=f"{self.title}  {time.monotonic() - self.start:.1f}s", title_justify="left")
        t.add_column("host")
        t.add_column("state")
        t.add_column("VMs ready", justify="right")
        by_host: dict[str, list[str]] = {}
        for _vm, (host, state) in self.vms.items():
            by_host.setdefault(host, []).append(state)
        for host, state in sorted(self.hosts.items()):
            states = by_host.get(host, [])
            ready = sum(1 for s in states if s in ("running", "ready"))
            t.add_row(host, state, f"{ready}/{len(states)}" if states else "")
        return t
