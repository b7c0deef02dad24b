"""HTTP/1.1 over TLS for the WBEM server, where a slow, idle or hostile peer costs only its own
connection.

One event loop (uvloop, in a thread) accepts connections and does the TLS handshakes (with a
time limit, never in the accept path); each connection is an ``_HTTPConnection`` protocol
that feeds httptools (llhttp, C) and keeps its own timers: ``idle_timeout`` from the moment
the connection is up until a request's head is complete and between requests (a peer that
never sends a request, or never ends its headers, is closed), ``read_timeout`` per read of a
body and for a whole body (408), and for a response the peer does not take. It serves
keep-alive and pipelined requests one at a time, chunked request bodies and 100-continue,
bounds the number of connections (503 and close beyond ``max_connections``) and the request
head (431), and hands the verified client certificate to the application.

Why our own protocol rather than a server library: hypercorn (h11, pure Python) was the
previous transport and cost about half of a GetInstance's server CPU (bench/bench_wbem.py:
1.6 ms a request, 1.25 with this protocol on asyncio, 1.1 with uvloop); uvicorn has the
httptools protocol but no timer for a connection that never sends a request and no per-read
timeout, and its protocol classes are internals to subclass; cheroot handshakes in its
accept thread (one silent TCP peer froze the whole server for 30 s). What remains of the
HTTP layer here is the state machine around httptools' callbacks.

The CIM work (authentication included: scrypt is slow on purpose) runs in a fixed pool of
daemon threads, so a request still running at shutdown does not hold the process; beyond
``max_requests`` requests waiting for or in a worker, clients get a 503 at once. The one
exception is ``WBEMApp.quick``: refusals decided from the headers, and GetInstance/GetClass
of a class measured fast in the workers (``wbem_http.QuickPath``), are answered on the loop,
as the two thread hand-offs cost more than such a call (0.3 ms against 0.4 ms) and, with one
GIL, a short call in a worker holds the loop up just as long. With both, a raw GetInstance
went from 1.98 to 0.85 ms of server CPU (409 to 796 req/s, 8 clients, loaded machine).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
import uvloop

from ediv.provider.image_upload import ImageEndpoint, Upload, is_image_path, too_large
from ediv.provider.request import CLIENT_GONE
from ediv.provider.wbem_http import Prepared, Reply, WBEMApp

log = logging.getLogger("ediv.provider.http")

# a refused body is read and thrown away (so the client can read the refusal) while it keeps
# coming: a pause this long, or this many times the body limit, and the connection is closed
_DRAIN_PAUSE = 1.0
_DRAIN_FACTOR = 4
_SSL_SHUTDOWN = 3.0
_JOIN_MAX = 256 * 1024  # bodies up to this size are joined to their head (one write)
_MAX_HEAD = 16 * 1024  # request line and headers (h11's bound, as before)
_MAX_UNREAD = 1 << 20  # body bytes received but not taken: beyond, the socket is not read
_MPOST = b"M-POST "
_REFUSE_WAIT = 1.0  # a connection over the bound: its request awaited this long, then 503
_IMAGE_WRITE = 1 << 20  # an image upload is written (in a thread) in pieces this large


@dataclass
class Limits:
    """Bounds of the transport: beyond them a peer gets 503 or is closed, alone."""

    max_connections: int = 512     # open connections (TLS done); more get a 503 and are closed
    max_requests: int = 64         # requests waiting for or in a worker thread; more get 503
    max_buffered_bytes: int = 256 * 1024 * 1024  # request bodies held at once, all clients
    handshake_timeout: float = 10.0
    idle_timeout: float = 15.0     # a connection with no request in progress
    read_timeout: float = 30.0     # one read, and a whole request body
    shutdown_grace: float = 5.0    # in-flight requests get this long at shutdown


class Busy(Exception):
    """No room for another request in flight."""


class WorkerPool:
    """Daemon threads running blocking calls for the event loop."""

    def __init__(self, threads: int):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"ediv-wbem-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, future, fn, args = item
            try:
                outcome = (fn(*args), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (None, exc)
            # RuntimeError: the loop is gone (shutdown), nobody waits for this
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class _Cycle:
    """One request on a connection: its environ, its body as it arrives, its response."""

    __slots__ = ("_head", "body", "complete", "conn", "continue_sent", "environ", "event",
                 "expect_continue", "gone", "keep_alive", "response_done", "started")

    def __init__(self, conn: _HTTPConnection, environ: dict, keep_alive: bool,
                 expect_continue: bool):
        self.conn = conn
        self.environ = environ
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.body: list[bytes] = []
        self.complete = False  # the whole body has arrived
        self.gone = False  # the connection closed
        self.event: asyncio.Event | None = None
        self.started = False  # response head sent
        self.response_done = False

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()

    def client_gone(self) -> bool:
        """Whether the connection closed (read from the worker thread doing the CIM work)."""
        return self.gone

    async def receive(self) -> dict:
        """ASGI-style: the body arrived so far (``more_body`` until the end) or a disconnect."""
        while True:
            if self.body or self.complete:
                data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
                self.body.clear()
                self.conn.consumed(self, len(data))
                return {"type": "http.request", "body": data, "more_body": not self.complete}
            if self.gone:
                return {"type": "http.disconnect"}
            if self.expect_continue and not self.continue_sent:
                self.continue_sent = True
                self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.event = self.event or asyncio.Event()
            self.event.clear()
            await self.event.wait()

    async def send(self, message: dict) -> None:
        """ASGI-style response messages: the head is held and written with the body."""
        if message["type"] == "http.response.start":
            self.started = True
            self._head = message
            return
        head = self._head
        close = not self.keep_alive or not self.complete or self.conn.closing
        status = head["status"]
        lines = [f"HTTP/1.1 {status} {head.get('reason') or _reason(status)}\r\n".encode()]
        for name, value in head["headers"]:
            if name.lower() == b"connection" and value.lower() == b"close":
                close = True
                continue
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"Date: " + _http_date() + b"\r\n")
        if close:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        body = message.get("body", b"")
        if len(body) <= _JOIN_MAX:
            lines.append(body)
            self.conn.write(b"".join(lines))
        else:  # a big body is not copied for the sake of one record
            self.conn.write(b"".join(lines))
            self.conn.write(body)
        self.response_done = True
        await self.conn.response_sent(self, close)


class _HTTPConnection(asyncio.Protocol):
    """HTTP/1.1 on one connection, parsed by httptools (llhttp, C): keep-alive, pipelined
    requests one at a time, chunked bodies, 100-continue; timers for a connection with no
    request in progress (``idle_timeout``, from the first byte: also a peer that never sends
    a request or never ends its headers), for a body that stops arriving (``read_timeout``
    per read) and for a response the peer does not take (``read_timeout``)."""

    def __init__(self, server: Transport):
        self.server = server
        self.loop = server._loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: dict = {}
        self.cycle: _Cycle | None = None  # the request being served
        self.pipeline: collections.deque[_Cycle] = collections.deque()
        self.reading: _Cycle | None = None  # the request whose head/body is being parsed
        self.tasks: set[asyncio.Task] = set()
        self.closing = False
        self.refusing = False
        self.paused = False
        self.unread = 0  # body bytes received and not yet taken by receive()
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.drained: asyncio.Event | None = None  # set while the peer takes our writes
        self._url = b""
        self._environ: dict = {}
        self._between = True  # no request begun since the last one ended
        self._mpost = False
        self._prefix = b""

    # ------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        server = self.server
        server.connections.add(self)
        if server.closing:
            transport.close()
            return
        if len(server.connections) > server.limits.max_connections:
            self.refusing = True  # counted, so that refusals are bounded too
            self._arm(_REFUSE_WAIT, self._refuse)
            return
        self.peer = _peer(transport)
        self._arm(server.limits.idle_timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.refusing:
            self._refuse()
            return
        if self.reading is not None and not self.reading.complete:
            self._arm(self.server.limits.read_timeout + 1, self.abort)  # per read
        if self._between:
            data = self._method_line(data)
            if not data:
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported\n")
        except httptools.HttpParserError as exc:  # also what a callback raised, wrapped
            if self.head_bytes > _MAX_HEAD:
                self._fail(431, "request head too large\n")
            else:
                self._fail(400, f"malformed HTTP request: {exc}\n")

    def _method_line(self, data: bytes) -> bytes:
        """DSP0200's M-POST, which llhttp does not know, as POST (remembered): only at the
        start of a request that begins a read (a pipelined M-POST inside one gets a 400)."""
        if self._prefix:
            data, self._prefix = self._prefix + data, b""
        start = data.lstrip(b"\r\n")
        if len(start) < len(_MPOST) and _MPOST.startswith(start):
            self._prefix = data  # too little to tell yet
            return b""
        if start.startswith(_MPOST):
            self._mpost = True
            return start[2:]
        return data

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._disarm()
        for cycle in (self.cycle, self.reading, *self.pipeline):
            if cycle is not None:
                cycle.gone = True
                cycle.wake()
        if self.drained is not None:
            self.drained.set()

    def pause_writing(self) -> None:
        self.drained = asyncio.Event()

    def resume_writing(self) -> None:
        if self.drained is not None:
            self.drained.set()
            self.drained = None

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self._between = False
        self.head_bytes = 0
        self._url = b""
        self._environ = {}

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ = self._environ
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text

    def on_headers_complete(self) -> None:
        parser = self.parser
        environ = self._environ
        environ["REQUEST_METHOD"] = "M-POST" if self._mpost else parser.get_method().decode()
        self._mpost = False
        path = httptools.parse_url(self._url).path or b"/"
        environ["PATH_INFO"] = unquote(path.decode("latin-1"))
        environ.update(self.peer)
        expect = environ.get("HTTP_EXPECT", "").lower() == "100-continue"
        cycle = _Cycle(self, environ, parser.should_keep_alive(), expect)
        environ[CLIENT_GONE] = cycle.client_gone
        self.reading = cycle
        if self.cycle is None:
            self._begin(cycle)
        else:  # pipelined: waits for the one being served; no more reading until then
            self.pipeline.append(cycle)
            self._pause()

    def on_body(self, body: bytes) -> None:
        cycle = self.reading
        cycle.body.append(body)
        self.unread += len(body)
        if self.unread > _MAX_UNREAD:
            self._pause()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._between = True
        cycle = self.reading
        cycle.complete = True
        self.reading = None
        cycle.wake()
        if cycle is self.cycle:
            self._disarm()  # the reply is ours to give now: no read timer

    # ------------------------------------------------------------ requests
    def _begin(self, cycle: _Cycle) -> None:
        self.cycle = cycle
        self._disarm()
        if not cycle.complete:
            self._arm(self.server.limits.read_timeout + 1, self.abort)
        task = self.loop.create_task(self._serve(cycle))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, cycle: _Cycle) -> None:
        try:
            await self.server._request(cycle.environ, cycle.receive, cycle.send)
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("request failed")
            if not cycle.response_done and not cycle.gone:
                await cycle.send({"type": "http.response.start", "status": 500,
                                  "headers": [(b"Content-Length", b"0")]})
                await cycle.send({"type": "http.response.body", "body": b""})
        if not cycle.response_done:
            self.abort()  # nothing to say (the client went away)

    async def response_sent(self, cycle: _Cycle, close: bool) -> None:
        if self.drained is not None:  # the peer is slow to take the response
            try:
                async with asyncio.timeout(self.server.limits.read_timeout):
                    await self.drained.wait()
            except TimeoutError:
                self.abort()
                return
        if close or self.transport is None or self.transport.is_closing():
            self.close()
            return
        self.cycle = None
        if self.pipeline:
            self._begin(self.pipeline.popleft())
        else:
            self._arm(self.server.limits.idle_timeout, self._idle)
        self._resume()

    def consumed(self, cycle: _Cycle, n: int) -> None:
        self.unread -= n
        if self.paused and self.unread <= _MAX_UNREAD and not self.pipeline:
            self._resume()

    # ------------------------------------------------------------ helpers
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """After the current response, or at once with no request in progress."""
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Server shutdown: an idle connection closes now, a busy one after its reply."""
        self.closing = True
        if self.cycle is None and self.reading is None:
            self.close()

    def _idle(self) -> None:
        self.timer = None
        self.close()

    def _refuse(self) -> None:
        if not self.refusing:
            return
        self.refusing = False
        self._disarm()
        self.write(_REFUSAL)
        self.close()
        self._arm(_REFUSE_WAIT * 2, self.abort)  # for a peer that does not take it

    def _fail(self, status: int, text: str) -> None:
        if self.cycle is None or self.cycle.response_done:
            body = text.encode()
            self.write(f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: text/plain; "
                       f"charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close"
                       "\r\n\r\n".encode() + body)
        self.close()

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > _MAX_HEAD:
            raise _HeadTooLarge

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()


class _HeadTooLarge(Exception):
    """Raised in a parser callback (httptools hands it back as HttpParserCallbackError)."""


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_date_cache: list = [0, b""]


def _http_date() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True).encode()]
    return _date_cache[1]

class Transport:
    """Serves ``app`` on the listening ``sock`` until ``stop``."""

    def __init__(self, app: WBEMApp, sock: socket.socket, ssl_context: ssl.SSLContext | None,
                 threads: int, limits: Limits | None = None,
                 images: ImageEndpoint | None = None):
        self.app = app
        self.images = images  # HEAD|PUT /ediv/images/...: streamed, not through _read_body
        self.sock = sock
        self.ssl_context = ssl_context
        self.limits = limits or Limits()
        self.pool = WorkerPool(threads)
        self.connections: set[_HTTPConnection] = set()  # TLS done
        self.working: set[asyncio.Task] = set()  # tasks waiting for a worker thread
        self.in_flight = 0
        self.buffered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ediv-wbem-io", daemon=True)
        self.closing = False

    # ------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let requests in flight finish (``shutdown_grace``), close the rest."""
        loop, shutdown = self._loop, self._shutdown
        if loop is not None and shutdown is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(shutdown.set)
        self._thread.join(timeout if timeout is not None else self.limits.shutdown_grace + 3)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            # uvloop: libuv and its TLS layer in C (asyncio's SSL protocol is Python code)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._main())
        finally:
            self.pool.stop()
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        server = await self._loop.create_server(
            lambda: _HTTPConnection(self), sock=self.sock, ssl=self.ssl_context, backlog=1024,
            ssl_handshake_timeout=self.limits.handshake_timeout if self.ssl_context else None,
            # a peer that never answers our close_notify holds its place this long at most
            ssl_shutdown_timeout=_SSL_SHUTDOWN if self.ssl_context else None)
        self._ready.set()
        await self._shutdown.wait()
        self.closing = True
        server.close()  # no new connections
        for conn in list(self.connections):  # idle ones close, busy ones after their reply
            conn.shutdown()
        # requests in a worker get the grace period; one still being read is not worth it
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.working and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 0.5  # replies being written
        while any(c.tasks for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        pending = list(self.connections)
        if pending:
            log.log(logging.WARNING if self.working else logging.INFO,
                    "shutdown: closed %d connections (%d with a request running)",
                    len(pending), len(self.working))
        tasks = [t for c in pending for t in c.tasks]
        for conn in pending:
            conn.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1)
        await asyncio.sleep(0)  # connection_lost callbacks

    # ------------------------------------------------------------ requests
    async def _request(self, environ: dict, receive: Callable, send: Callable) -> None:
        try:
            await self._serve(environ, receive, send)
        except Busy:
            await _reply(send, Reply.plain(503, "Service Unavailable",
                                           "server busy, retry shortly\n",
                                           [("Retry-After", "1")]), close=True)

    async def _serve(self, environ: dict, receive: Callable, send: Callable) -> None:
        if self.images is not None and is_image_path(environ.get("PATH_INFO", "")):
            await self._serve_image(environ, receive, send)
            return
        limit = self.app.max_body_bytes
        announced = _content_length(environ)
        if announced is not None and announced > limit:
            complete = await self._drain(receive, _DRAIN_FACTOR * limit)
            await _reply(send, _too_large(limit), close=not complete)
            return
        # the body first (bounded, counted in ``buffered``), then one trip to a worker for
        # the header checks, authentication and the CIM work: a refusal after reading the
        # body keeps the connection usable, and a slow sender never holds a worker
        try:
            body = await self._read_body(receive, limit)
        except ConnectionError:
            return
        if isinstance(body, Reply):
            await _reply(send, body, close=True)
            return
        try:
            quick = self.app.quick(environ, body)  # a refusal or a fast answer, on the loop
            if isinstance(quick, Reply):
                reply = quick
            else:
                reply = await self._work(self._handle, environ, body, quick)
        finally:
            self.buffered -= len(body)
        await _reply(send, reply)

    async def _serve_image(self, environ: dict, receive: Callable, send: Callable) -> None:
        """An image request: headers checked (authentication, role, digest, size) before
        any of the body is read; the body then goes, 1 MiB at a time, to a file of the image
        store (``ediv.provider.image_upload``), never held whole here."""
        images = self.images
        checked = await self._work(images.check, environ)
        if isinstance(checked, Reply):
            complete = await self._drain(receive, _DRAIN_FACTOR * self.app.max_body_bytes)
            await _reply(send, checked, close=not complete)
            return
        if checked.method == "HEAD":
            await _reply(send, await self._work(images.head, checked))
            return
        begun = await self._work(images.begin, checked)
        if isinstance(begun, Reply):  # present (only named), or refused
            complete = await self._drain(receive, _DRAIN_FACTOR * self.app.max_body_bytes)
            await _reply(send, begun, close=not complete)
            return
        upload = begun
        try:
            reply, close = await self._receive_image(receive, upload)
        finally:
            # before the reply: a refused or failed body is gone when the client hears of it
            await asyncio.to_thread(upload.abort)  # a no-op once finished
        if reply is not None:
            await _reply(send, reply, close=close)

    async def _receive_image(self, receive: Callable, upload: Upload) -> tuple[Reply | None, bool]:
        """(reply, close the connection): the body written 1 MiB at a time (in a thread),
        then verified and stored; None when the client has gone."""
        cap = self.images.max_image_bytes
        buf: list[bytes] = []
        held = 0
        while True:
            try:
                async with asyncio.timeout(self.limits.read_timeout):
                    message = await receive()
            except TimeoutError:
                return Reply.plain(408, "Request Timeout", "no image data for "
                                   f"{self.limits.read_timeout:g} s\n"), True
            if message["type"] == "http.disconnect":
                return None, True
            chunk = message.get("body", b"")
            if upload.size + held + len(chunk) > cap:
                return too_large(cap), True
            buf.append(chunk)
            held += len(chunk)
            more = message.get("more_body", False)
            if held >= _IMAGE_WRITE or (not more and held):
                await asyncio.to_thread(upload.write, b"".join(buf))
                buf, held = [], 0
            if not more:
                return await asyncio.to_thread(upload.finish), False

    def _handle(self, environ: dict, body: bytes, prepared: Prepared | None = None) -> Reply:
        """In a worker thread."""
        if prepared is not None:
            return self.app.answer_prepared(environ, prepared)
        checked = self.app.check(environ)
        if isinstance(checked, Reply):
            return checked
        return self.app.answer(environ, checked, body)

    async def _work(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.in_flight >= self.limits.max_requests:
            raise Busy
        self.in_flight += 1
        task = asyncio.current_task()
        self.working.add(task)
        try:
            return await self.pool.run(fn, *args)
        finally:
            self.in_flight -= 1
            self.working.discard(task)

    async def _read_body(self, receive: Callable, limit: int) -> bytes | Reply:
        """The body, counted in ``buffered`` (the caller gives it back), or the refusal;
        ConnectionError when the client has gone."""
        chunks: list[bytes] = []
        held = 0
        deadline = time.monotonic() + self.limits.read_timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                async with asyncio.timeout(left):
                    message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError
                chunk = message.get("body", b"")
                if held + len(chunk) > limit:
                    self.buffered -= held
                    held = 0
                    await self._drain(receive, _DRAIN_FACTOR * limit)
                    return _too_large(limit)
                if self.buffered + len(chunk) > self.limits.max_buffered_bytes:
                    raise Busy
                self.buffered += len(chunk)
                held += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    held = 0  # now the caller's
                    return b"".join(chunks)
        except TimeoutError:
            return Reply.plain(408, "Request Timeout", "request body not received within "
                               f"{self.limits.read_timeout:g} s\n")
        finally:
            self.buffered -= held

    async def _drain(self, receive: Callable, cap: int) -> bool:
        """Read and discard the rest of a refused body while it keeps coming (so the client,
        which usually sends it all before reading, gets the answer). True if it all came."""
        total = 0
        deadline = time.monotonic() + self.limits.read_timeout
        while total <= cap:
            left = min(_DRAIN_PAUSE, deadline - time.monotonic())
            if left <= 0:
                return False
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                return False
            if message["type"] == "http.disconnect":
                return False
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


def _too_large(limit: int) -> Reply:
    return Reply.plain(413, "Content Too Large", f"request body larger than {limit} bytes\n")


async def _reply(send: Callable, reply: Reply, close: bool = False) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"Content-Length", str(len(reply.body)).encode()))
    if close:
        headers.append((b"Connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "reason": reply.reason,
                "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 21\r\n\r\n"
            b"too many connections\n")


def _peer(transport: asyncio.BaseTransport) -> dict:
    """REMOTE_ADDR and, for a client certificate the TLS layer verified, its subject CN."""
    out: dict = {}
    peername = transport.get_extra_info("peername")
    if peername:
        out["REMOTE_ADDR"] = str(peername[0])
    tls = transport.get_extra_info("ssl_object")
    cert = tls.getpeercert() if tls is not None else None
    if cert:
        out["SSL_CLIENT_VERIFY"] = "SUCCESS"
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    out["SSL_CLIENT_S_DN_CN"] = value
    return out


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None
