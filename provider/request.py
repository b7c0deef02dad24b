"""The context of one CIM request: its time limit, whether its client is still there, and a
memo for what several look-ups of the same request share (one scenario's nets, parsed spec).

The dispatcher opens one around every call (``Dispatcher.call``); loops that can run long
(enumerations, association traversals, response writing) call ``check()``, which raises
CIM_ERR_SERVER_LIMITS_EXCEEDED once the limit has passed or the transport reports the
client gone. Outside a request (library use, tests) ``check`` does nothing and ``memo``
just computes.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pywbem import CIM_ERR_SERVER_LIMITS_EXCEEDED, CIMError

T = TypeVar("T")
CLIENT_GONE = "ediv.client_gone"  # the transport's environ key: a callable, True once gone
_CANCEL_EVERY = 64  # ask the transport whether the client is gone every this many checks


class RequestContext:
    __slots__ = ("_checks", "_memo", "cancelled", "deadline", "time_limit")

    def __init__(self, time_limit: float | None, cancelled: Callable[[], bool] | None = None):
        self.time_limit = time_limit
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.cancelled = cancelled
        self._checks = 0
        self._memo: dict[Any, Any] = {}

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CIMError(CIM_ERR_SERVER_LIMITS_EXCEEDED,
                           f"the operation ran over the server's time limit of "
                           f"{self.time_limit:g} s")
        if self.cancelled is not None:
            self._checks += 1
            if self._checks % _CANCEL_EVERY == 0 and self.cancelled():
                raise CIMError(CIM_ERR_SERVER_LIMITS_EXCEEDED,
                               "the client closed the connection")

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


_CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "ediv_cim_request", default=None)


@contextmanager
def request(time_limit: float | None, cancelled: Callable[[], bool] | None = None
            ) -> Iterator[RequestContext]:
    ctx = RequestContext(time_limit, cancelled)
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def current() -> RequestContext | None:
    return _CURRENT.get()


def check() -> None:
    """Raise CIMError when the current request ran out of time or lost its client."""
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.check()


def memo(key: Any, compute: Callable[[], T]) -> T:
    """``compute()``, once per request for ``key``."""
    ctx = _CURRENT.get()
    return compute() if ctx is None else ctx.memo(key, compute)
