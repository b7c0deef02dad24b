"""One ``ediv-host session`` per host and command: the agent's verbs one after another in one
Python process over one SSH channel (docs/agent-protocol.md, "Session mode").

A deploy's probe, upload (``receive``) and build (``deploy --key``) then cost one agent start
and one channel per host instead of three. Each request is one JSON line (then its input
bytes); the agent answers with the verb's events and a ``done`` line carrying the exit status
the one-shot verb would have had, so callers see exactly what they saw before. An agent that
has no session mode (it exits before its ``session`` line) makes the caller fall back to
one-shot verbs (:class:`NoSession`).

Time is bounded as for one-shot verbs: ``bound`` seconds of silence (the agent's heartbeat
keeps a live session talking) or the request's whole ``timeout`` end it with
HostUnreachable; the caller then drops the connection (and the session with it).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable

import paramiko

from ediv.cluster import Host
from ediv.protocol import EVENT_DONE, EVENT_SESSION, SessionRequest


class NoSession(Exception):
    """The host's agent ended before it said ``session``: it has no session mode (or could
    not start): use one-shot verbs, which report why as they always did."""


class AgentSession:
    """A running ``ediv-host session`` on one host; one request at a time (``lock``)."""

    def __init__(self, host: Host, chan: paramiko.Channel, bound: float):
        self.host, self.chan, self.bound = host, chan, bound
        self.lock = threading.Lock()
        self.started = False  # its ``session`` line was read
        self._pending = b""

    @classmethod
    def open(cls, host: Host, transport: paramiko.Transport, command: str, *,
             connect_timeout: float, bound: float) -> AgentSession:
        """Start the agent (no wait: the first request reads its ``session`` line)."""
        chan = transport.open_session(timeout=min(connect_timeout, bound))
        chan.settimeout(bound)  # every recv/send: at most ``bound`` seconds of silence
        chan.exec_command(command)
        return cls(host, chan, bound)

    @property
    def alive(self) -> bool:
        return not self.chan.closed and not self.chan.exit_status_ready()

    def request(self, verb: str, args: tuple[str, ...], *, stdin: bytes | None,
                deadline: float | None, timeout: float | None,
                on_line: Callable[[str], None], unreachable: Callable[[str], Exception]
                ) -> tuple[int, str]:
        """Run one verb; stream its event lines to ``on_line``; (exit status, stderr).

        ``deadline``: the agent's own limit for the verb; ``timeout``: the controller's
        (HostUnreachable, made by ``unreachable(reason)``)."""
        end = time.monotonic() + timeout if timeout else None
        req = SessionRequest(verb, args, deadline, len(stdin or b""))
        err = bytearray()
        self.chan.sendall(json.dumps(req.to_json()).encode() + b"\n" + (stdin or b""))
        while True:
            raw = self._line(end, timeout, err, unreachable)
            if raw is None:  # the channel ended
                if not self.started:
                    raise NoSession(err.decode("utf-8", "replace"))
                raise unreachable("the agent session ended before the verb did (sshd, the "
                                  "agent or the connection was killed)")
            line = raw.decode("utf-8", "replace")
            event = _event(line)
            kind = event.get("event") if event else None
            if not self.started:  # before it: nothing of this request (a one-shot retry
                self.started = kind == EVENT_SESSION  # says it again if it matters)
                continue
            if kind == EVENT_DONE:
                status = event.get("status")
                return (status if isinstance(status, int) else -1,
                        err.decode("utf-8", "replace"))
            on_line(line)

    def _line(self, end: float | None, timeout: float | None, err: bytearray,
              unreachable: Callable[[str], Exception]) -> bytes | None:
        while b"\n" not in self._pending:
            if end is not None and time.monotonic() > end:
                raise unreachable(f"no answer within {timeout:g} s")
            try:
                data = self.chan.recv(65536)
            except TimeoutError:
                raise unreachable(f"silent for {self.bound:g} s (host, link, sshd or agent "
                                  "lost)") from None
            while self.chan.recv_stderr_ready():
                err.extend(self.chan.recv_stderr(65536))
            if not data:
                self._drain_stderr(err)
                return None
            self._pending += data
        raw, self._pending = self._pending.split(b"\n", 1)
        return raw

    def _drain_stderr(self, err: bytearray) -> None:
        """What the agent said on stderr before it ended (bounded wait)."""
        stop = time.monotonic() + min(2.0, self.bound)
        while not self.chan.eof_received and time.monotonic() < stop:
            if not self.chan.recv_stderr_ready():
                time.sleep(0.01)
                continue
            err.extend(self.chan.recv_stderr(65536))
        while self.chan.recv_stderr_ready():
            err.extend(self.chan.recv_stderr(65536))

    def close(self) -> None:
        """End of input, then the channel closed: an idle agent exits; a verb still running
        loses its reader and stops (a deploy rolls back, an exec stops: heartbeat)."""
        with contextlib.suppress(Exception):
            self.chan.shutdown_write()
        with contextlib.suppress(Exception):
            self.chan.close()


def _event(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
