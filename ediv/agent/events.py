"""JSON-lines output of the agent: progress events, then one result or error line."""

from __future__ import annotations

import json
import sys
import threading
from typing import IO, Any

from ediv.agent.interrupts import held


class Emitter:
    """Writes one JSON object per line and flushes, from any thread."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event; a reader that went away (SSH hangup) must not stop a rollback."""
        line = json.dumps({"event": event, **fields}, default=str)
        # a signal that stops the verb waits until the lock is given back (and the line is
        # whole): raised between acquire and try, it would leave the lock taken for good
        with held():
            # a writer stuck on a full pipe (link down) must not stop the others, nor a
            # rollback
            if not self._lock.acquire(timeout=5):
                self.broken = True
                return
            try:
                self._write(line)
            finally:
                self._lock.release()

    def _write(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def vm(self, name: str, state: str, **fields: Any) -> None:
        self.emit("vm", vm=name, state=state, **fields)

    def net(self, name: str, state: str, **fields: Any) -> None:
        self.emit("net", net=name, state=state, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("warning", message=message, **fields)


class NullEmitter(Emitter):
    def emit(self, event: str, **fields: Any) -> None:
        pass
