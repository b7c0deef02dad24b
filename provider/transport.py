"""HTTP/1.1 over TLS for the WBEM server, where a slow, idle or hostile peer costs only its own
connection.

One asyncio loop (in a thread) accepts connections, does the TLS handshakes (asyncio, with a
time limit, never in the accept path) and runs hypercorn's per-connection HTTP/1.1 machinery:
h11 parsing, keep-alive, chunked request bodies, 100-continue, and the idle and read timeouts.
Hypercorn was chosen over uvicorn because it times out connections that never send a request
(uvicorn only times out between requests) and has a per-read timeout; over cheroot because
cheroot handshakes in its accept thread (one silent TCP peer froze the whole server for 30 s).
Our own accept callback (hypercorn's serve loop offers neither) bounds the number of
connections and hands the verified client certificate to the application.

The CIM work (authentication included: scrypt is slow on purpose) runs in a fixed pool of
daemon threads, so a request still running at shutdown does not hold the process; beyond
``max_requests`` requests waiting for or in a worker, clients get a 503 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData

from ediv.provider.image_upload import ImageEndpoint, Upload, is_image_path, too_large
from ediv.provider.wbem_http import Reply, WBEMApp

log = logging.getLogger("ediv.provider.http")

# a refused body is read and thrown away (so the client can read the refusal) while it keeps
# coming: a pause this long, or this many times the body limit, and the connection is closed
_DRAIN_PAUSE = 1.0
_DRAIN_FACTOR = 4
_SSL_SHUTDOWN = 3.0
_MAX_RECV = 2**16
_HOLD_MAX = 2048  # a response head written this small waits for its body (same loop turn)
_JOIN_MAX = 256 * 1024  # bodies up to this size are joined to their head (one write)
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


class _Connection(TCPServer):
    """Hypercorn's connection, with less event-loop work per request (measured with
    bench/bench_wbem.py: the transport was half of a GetInstance's server CPU): timeouts
    as ``asyncio.timeout`` scopes rather than ``wait_for`` (a task per read), and the
    response head written together with the body that follows it (one TLS record and one
    ``send`` instead of two)."""

    _held: bytes | None = None
    _held_handle: asyncio.Handle | None = None

    async def _read_data(self) -> None:
        while not self.reader.at_eof():
            try:
                async with asyncio.timeout(self.config.read_timeout):
                    data = await self.reader.read(_MAX_RECV)
            except (ConnectionError, OSError, TimeoutError, ssl.SSLError):
                break
            await self.protocol.handle(RawData(data))
        await self.protocol.handle(Closed())
        # the peer has gone: hypercorn would keep the connection task until the idle timer
        # fired (up to idle_timeout later), holding a place among max_connections
        await self.idle_task.stop()

    async def _idle_timeout(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.keep_alive_timeout):
                await self.context.terminated.wait()
        await asyncio.shield(self._initiate_server_close())

    async def protocol_send(self, event: Any) -> None:
        if isinstance(event, RawData):
            data = event.data
            if not data:
                return  # h11's end of a Content-Length body: nothing to write
            if self._held is not None:  # a response head: goes out with this data
                self._held_handle.cancel()
                if len(data) <= _JOIN_MAX:
                    data, self._held = self._held + data, None
                else:  # a big body is not copied for the sake of one record
                    self._write_held()
            elif len(data) <= _HOLD_MAX:
                # the app's body usually follows within this loop turn; if not, the next
                # turn writes the head alone (a 100 Continue, a body-less reply)
                self._held = data
                self._held_handle = self.loop.call_soon(self._write_held)
                return
            await super().protocol_send(RawData(data))
            return
        self._write_held()
        await super().protocol_send(event)

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if held:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.write(held)


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
        self.connections: set[asyncio.Task] = set()
        self.working: set[asyncio.Task] = set()  # tasks waiting for a worker thread
        self.in_flight = 0
        self.buffered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ediv-wbem-io", daemon=True)
        self.hconfig = HypercornConfig()
        self.hconfig.keep_alive_timeout = self.limits.idle_timeout
        # per read; a second more than ours for a whole body, so that a stalled body gets
        # our 408 rather than a silent close
        self.hconfig.read_timeout = int(self.limits.read_timeout) + 1
        self.hconfig.include_server_header = False
        self.hconfig.errorlog = log
        self.hconfig.accesslog = None
        self.context = WorkerContext(None)

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
            asyncio.run(self._main())
        finally:
            self.pool.stop()
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        server = await asyncio.start_server(
            self._accept, sock=self.sock, ssl=self.ssl_context, backlog=1024,
            ssl_handshake_timeout=self.limits.handshake_timeout if self.ssl_context else None,
            # a peer that never answers our close_notify holds its place this long at most
            ssl_shutdown_timeout=_SSL_SHUTDOWN if self.ssl_context else None)
        self._ready.set()
        await self._shutdown.wait()
        server.close()  # no new connections
        await self.context.terminated.set()  # idle connections close, busy ones after a reply
        # requests in a worker get the grace period; one still being read is not worth it
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.working and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pending = set(self.connections)
        if pending:  # replies being written
            _done, pending = await asyncio.wait(pending, timeout=0.5)
        for task in pending:
            task.cancel()
        if pending:
            log.log(logging.WARNING if self.working else logging.INFO,
                    "shutdown: closed %d connections (%d with a request running)",
                    len(pending), len(self.working))
            await asyncio.wait(pending, timeout=1)

    # ------------------------------------------------------------ connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._shutdown.is_set():
            writer.close()
            return
        if len(self.connections) >= self.limits.max_connections:
            task = asyncio.current_task()
            self.connections.add(task)  # counted, so that refusals are bounded too
            try:
                await _refuse_connection(reader, writer)
            except asyncio.CancelledError:
                pass
            finally:
                self.connections.discard(task)
            return
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            peer = _peer(writer)
            app = ASGIWrapper(partial(self._asgi, peer))
            await _Connection(app, self._loop, self.hconfig, self.context, {}, reader, writer)
        except asyncio.CancelledError:
            pass  # closed at shutdown (Python 3.11's asyncio would log the cancel as an error)
        except (OSError, TimeoutError, ssl.SSLError) as exc:  # the peer went away badly
            log.debug("connection ended: %s", exc)
        finally:
            self.connections.discard(task)

    async def _asgi(self, peer: dict, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        environ = _environ(scope, peer)
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
            reply = await self._work(self._handle, environ, body)
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

    def _handle(self, environ: dict, body: bytes) -> Reply:
        """In a worker thread."""
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
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 21\r\n\r\n"
            b"too many connections\n")


async def _refuse_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
            await asyncio.wait_for(reader.read(65536), 1.0)  # the request, usually
        writer.write(_REFUSAL)
        await asyncio.wait_for(writer.drain(), 2.0)
    except (TimeoutError, OSError, ssl.SSLError, RuntimeError):
        pass
    finally:
        writer.close()


def _peer(writer: asyncio.StreamWriter) -> dict:
    """REMOTE_ADDR and, for a client certificate the TLS layer verified, its subject CN."""
    out: dict = {}
    peername = writer.get_extra_info("peername")
    if peername:
        out["REMOTE_ADDR"] = str(peername[0])
    tls = writer.get_extra_info("ssl_object")
    cert = tls.getpeercert() if tls is not None else None
    if cert:
        out["SSL_CLIENT_VERIFY"] = "SUCCESS"
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    out["SSL_CLIENT_S_DN_CN"] = value
    return out


def _environ(scope: dict, peer: dict) -> dict:
    environ = {"REQUEST_METHOD": scope["method"], "PATH_INFO": scope.get("path", ""), **peer}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None
