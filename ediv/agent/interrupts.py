"""Stopping a verb from a signal without breaking what the main thread holds.

SIGTERM/SIGHUP and the deadline's SIGALRM stop a verb by raising an exception in the main
thread (a deploy then rolls back). Python runs the handler between two bytecodes, so the
exception can come right after a lock was taken and before the ``try`` that gives it back:
a lock taken by the emitter just as the signal came stayed taken, every later event (the
rollback's, the error line) then waited 5 s for it and was dropped; one taken inside
``threading`` (a Condition's ``__enter__`` is Python code) while a thread pool was being
fed or waited on left its workers, and the pool's end waiting for them, blocked for ever.
Such sections run inside :class:`held`: a signal arriving there is raised as it ends.
"""

from __future__ import annotations

import threading
from types import TracebackType

_depth = 0  # the main thread's sections being run (handlers run in the main thread only)
_pending: list[BaseException] = []


def _in_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def stop(exc: BaseException) -> None:
    """From a signal handler: raise ``exc`` now, or as the running :func:`held` section ends."""
    if _depth:
        if not _pending:
            _pending.append(exc)
        return
    _pending.clear()
    raise exc


class held:
    """A short section of the main thread that a stop never interrupts; in other threads
    (no handler runs there) it does nothing."""

    __slots__ = ("_main",)

    def __enter__(self) -> None:
        global _depth
        self._main = _in_main_thread()
        if self._main:
            _depth += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _depth
        if not self._main:
            return
        _depth -= 1
        if not _depth and _pending:
            raise _pending.pop()
