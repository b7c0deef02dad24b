"""Stopping a verb from a signal without breaking what the main thread holds.

SIGTERM/SIGHUP and the deadline's SIGALRM stop a verb by raising an exception in the main
thread (a deploy then rolls back). Python runs the handler between two bytecodes, so the
exception can come right after a lock was taken and before the ``try`` that gives it back:
a lock taken by the emitter just as the signal came stayed taken, every later event (the
rollback's, the error line) then waited 5 s for it and was dropped; one taken inside
``threading`` (a Condition's ``__enter__`` is Python code) while a thread pool was being
fed or waited on left its workers, and the pool's end waiting for them, blocked for ever.
Such sections run inside :class:`held`: a signal arriving there is raised as it ends.

A held section must therefore not wait long: a thread pool running the VMs' commands (an
exec, a deploy's on_boot) would keep a stop away until the commands end (an agent whose
controller was killed stayed until its ``sleep 600`` ended, holding the scenario's lock).
So a stop also kills, at once, every process group started with :func:`command` (the
commands run in VMs, whichever thread waits for them), and marks the verb as stopping:
a worker thread then raises :class:`Stopping` at its next :func:`check` (before the next
command) instead of carrying on, and the section ends soon after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from ediv.errors import EdivError

_depth = 0  # the main thread's sections being run (handlers run in the main thread only)
_pending: list[BaseException] = []
_stopping: list[BaseException] = []  # the verb's stop, once one came (cleared by reset())
_groups: dict[int, None] = {}  # process groups (leaders' pids) that a stop kills


class Stopping(EdivError):
    """Raised in a worker thread that finds the verb stopped (the main thread raises the
    stop itself)."""


def _in_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def stop(exc: BaseException) -> None:
    """From a signal handler: kill the running commands' process groups, then raise ``exc``
    now, or as the running :func:`held` section ends."""
    if not _stopping:
        _stopping.append(exc)
    _kill_groups()
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


def _kill_groups() -> None:
    for pgid in list(_groups):  # a copy made under the GIL: threads may add meanwhile
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def check() -> None:
    """In a worker thread, before the next piece of work: raise :class:`Stopping` if the
    verb was stopped (the main thread's own stop is raised by the signal handler)."""
    if _stopping:
        raise Stopping(f"stopped: {_stopping[0]}")


def reset() -> None:
    """A new verb (a session's next request): no stop yet."""
    _stopping.clear()


@contextlib.contextmanager
def command(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen]:
    """``Popen(argv)`` as the leader of its own process group, which a stop kills (the
    command and whatever it started in it, also inside a VM's PID namespace). Leaving by an
    exception (the stop, a timeout) kills the group too; a command that ended leaves its
    background processes alone (a daemon an on_boot started). The start and registration
    are held: a stop cannot come between them and leave a command nobody kills. For the
    VMs' commands only: after a stop (until :func:`reset`) a new one is killed at once,
    which a rollback's own tools must not be."""
    with held():
        proc = subprocess.Popen(argv, process_group=0, **popen)
        _groups[proc.pid] = None
        if _stopping:  # the stop came before the registration: kill it as the stop would
            _kill_groups()
    with proc:
        try:
            yield proc
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            _groups.pop(proc.pid, None)


def run(argv: list[str], *, timeout: float | None = None,
        **popen: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(argv)`` with stdout and stderr together, as a :func:`command` (a
    stop kills its whole group, not only ``argv[0]``: a command the VM's shell forked kept
    the output pipe, and its waiter, for as long as it ran). A timeout kills the group too
    and raises ``TimeoutExpired`` with the output so far. In a worker thread, a command a
    stop killed raises :class:`Stopping` (it has no result to report)."""
    with command(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT, **popen) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:  # what it wrote; bounded: a process that left the group may hold the pipe
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                out = b""
            raise subprocess.TimeoutExpired(argv, timeout or 0, output=out) from None
    check()
    return subprocess.CompletedProcess(argv, proc.returncode, out)
