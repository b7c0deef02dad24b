"""The transport: idle, slow and greedy peers cost only their own connection; keep-alive,
chunked bodies, readable refusals, bounded connections and requests, clean SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import pywbem
import requests
from test_wbem_security import GET_CLASS, _auth, post
from wbem_support import USERS, connect

from ediv.provider import request as creq
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.operations import MethodProvider
from ediv.provider.schema import EDIV_NAMESPACE, load_schema
from ediv.provider.server import serve

HEADERS = {"Content-Type": 'application/xml; charset="utf-8"', "CIMOperation": "MethodCall",
           "CIMMethod": "GetClass", "CIMObject": "root%2Fediv"}


def _tls_socket(server, ssl_context) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ssl_context.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def test_idle_tcp_and_tls_peers_do_not_stall_others(wbem_server, ca_file, ssl_context):
    """One raw TCP connection that never handshakes and ten TLS connections that never send
    a request: a new client is answered at once (cheroot made it wait 30 s)."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(socket.create_connection(("127.0.0.1", wbem_server.port)))
        raw.sendall(b"\x16")  # the first byte of a ClientHello, then silence
        for _ in range(10):
            stack.enter_context(_tls_socket(wbem_server, ssl_context))
        conn = connect(wbem_server, "reader", ca_file)
        conn.timeout = 4
        assert conn.GetClass("EDIV_Scenario").classname == "EDIV_Scenario"


def test_two_hundred_idle_connections_still_serve(wbem_server, ca_file, ssl_context):
    with contextlib.ExitStack() as stack:
        for i in range(200):
            if i % 2:
                stack.enter_context(_tls_socket(wbem_server, ssl_context))
            else:
                stack.enter_context(socket.create_connection(("127.0.0.1", wbem_server.port)))
        conn = connect(wbem_server, "reader", ca_file)
        conn.timeout = 5
        assert conn.GetClass("EDIV_Scenario").classname == "EDIV_Scenario"


def test_keep_alive_serves_requests_on_one_connection(wbem_server, ssl_context):
    conn = http.client.HTTPSConnection("127.0.0.1", wbem_server.port, context=ssl_context,
                                       timeout=10)
    try:
        socks = []
        for _ in range(3):
            conn.request("POST", "/cimom", body=GET_CLASS % b"",
                         headers={**HEADERS, "Authorization": _auth()})
            resp = conn.getresponse()
            assert resp.status == 200 and b'<CLASS NAME="EDIV_Scenario"' in resp.read()
            socks.append(conn.sock)
        assert socks[0] is socks[1] is socks[2]  # never reconnected
    finally:
        conn.close()


def test_chunked_request_body(wbem_server, ssl_context):
    body = GET_CLASS % b""
    conn = http.client.HTTPSConnection("127.0.0.1", wbem_server.port, context=ssl_context,
                                       timeout=5)
    try:
        conn.request("POST", "/cimom", body=iter([body[:40], body[40:]]), encode_chunked=True,
                     headers={**HEADERS, "Authorization": _auth(),
                              "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 200 and b'<CLASS NAME="EDIV_Scenario"' in resp.read()
    finally:
        conn.close()


def test_oversized_body_gets_a_readable_413(wbem_server, ca_file):
    """requests (pywbem's HTTP layer) sends the whole body before reading: it must get the
    413, not a TLS EOF."""
    limit = wbem_server.config.max_body_bytes
    name, password = USERS["reader"]
    resp = requests.post(f"{wbem_server.url}/cimom", data=b"x" * (limit + 3 * 1024 * 1024),
                         headers=HEADERS, auth=(name, password), verify=ca_file, timeout=30)
    assert resp.status_code == 413
    assert str(limit) in resp.text


def test_wrong_password_with_body_keeps_connection_usable(wbem_server, ssl_context):
    conn = http.client.HTTPSConnection("127.0.0.1", wbem_server.port, context=ssl_context,
                                       timeout=10)
    try:
        conn.request("POST", "/cimom", body=GET_CLASS % b"",
                     headers={**HEADERS, "Authorization": _auth("reader", "wrong")})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401
        conn.request("POST", "/cimom", body=GET_CLASS % b"",
                     headers={**HEADERS, "Authorization": _auth()})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


# ---------------------------------------------------------------- servers with small limits

class _Gate(MethodProvider):
    """EDIV_ConcreteJob.GetError(): blocks until the test opens the gate."""
    classname = "EDIV_ConcreteJob"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def invoke(self, namespace, target, method, params):
        self.entered.set()
        self.release.wait(20)
        return pywbem.Uint32(0), []


@pytest.fixture
def small_server(tmp_path, monkeypatch):
    """Factory: a server with the given config overrides and the gate method."""
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(key, raising=False)
    handles = []
    gate = _Gate()

    def make(provider: MethodProvider | None = None, **overrides):
        cfg = load_config(tmp_path / "server.toml", listen="127.0.0.1:0")
        cfg.schema_cache_dir = tmp_path / "cache"
        for key, value in overrides.items():
            setattr(cfg, key, value)
        for role, (name, password) in USERS.items():
            add_user(cfg.users_file, name, Role.parse(role), password)

        def plugin(_registry, dispatcher, _config):
            dispatcher.register_methods(EDIV_NAMESPACE, provider or gate)

        handle = serve(cfg, schema=load_schema(cfg.schema_cache_dir), plugins=[plugin])
        handles.append(handle)
        return handle, gate

    try:
        yield make
    finally:
        gate.release.set()
        for h in handles:
            h.stop()


def _context(handle) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(handle.config.cert_file))


def _invoke_gate(handle) -> None:
    conn = connect(handle, "operator", str(handle.config.cert_file))
    with contextlib.suppress(pywbem.Error):
        conn.InvokeMethod("GetError", pywbem.CIMClassName("EDIV_ConcreteJob",
                                                      namespace=EDIV_NAMESPACE))


def test_requests_beyond_the_bound_get_503(small_server):
    handle, gate = small_server(threads=1, max_requests=1)
    busy = threading.Thread(target=_invoke_gate, args=(handle,), daemon=True)
    busy.start()
    try:
        assert gate.entered.wait(10)
        status, headers, body = post(handle, _context(handle), GET_CLASS % b"")
        assert status == 503 and headers["Retry-After"] == "1"
        assert b"busy" in body
    finally:
        gate.release.set()
        busy.join(10)
    status, _, _ = post(handle, _context(handle), GET_CLASS % b"")
    assert status == 200


def test_connections_beyond_the_bound_get_503(small_server):
    handle, _gate = small_server(max_connections=3)
    ctx = _context(handle)
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(_tls_socket(handle, ctx))
        status, headers, _ = post(handle, ctx, GET_CLASS % b"")
        assert status == 503 and headers["Connection"] == "close"
    # the idle ones gone (once the server has seen them close), it takes new ones again
    deadline = time.monotonic() + 10
    while handle.transport.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert post(handle, ctx, GET_CLASS % b"")[0] == 200


def test_silent_peers_are_timed_out(small_server):
    handle, _gate = small_server(handshake_timeout=1.0, idle_timeout=1.0, read_timeout=2.0)
    ctx = _context(handle)
    with socket.create_connection(("127.0.0.1", handle.port)) as raw:  # never handshakes
        assert _closed_by_server(raw, 8)
    with _tls_socket(handle, ctx) as tls:  # never sends a request
        assert _closed_by_server(tls, 8)
    with _tls_socket(handle, ctx) as tls:  # headers that never end (slowloris)
        tls.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\n")
        assert _closed_by_server(tls, 8)
    with _tls_socket(handle, ctx) as tls:  # a body that never arrives
        tls.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\nCIMOperation: MethodCall\r\n"
                    b"Authorization: " + _auth().encode() + b"\r\nContent-Length: 100\r\n\r\n")
        tls.settimeout(8)
        assert tls.recv(4096).startswith(b"HTTP/1.1 408")


class _GoneWatch(MethodProvider):
    """EDIV_ConcreteJob.GetError(): waits until the request's context says the client has
    gone (what a long association walk checks between steps)."""
    classname = "EDIV_ConcreteJob"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.saw_gone = threading.Event()

    def invoke(self, namespace, target, method, params):
        self.entered.set()
        ctx = creq.current()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ctx is not None and ctx.cancelled is not None and ctx.cancelled():
                self.saw_gone.set()
                break
            time.sleep(0.05)
        return pywbem.Uint32(0), []


def test_work_of_a_client_that_gave_up_learns_it_is_gone(small_server):
    """A client that times out closes its connection: the CIM work in the worker can tell,
    and stops at its next check instead of running to the time limit."""
    watch = _GoneWatch()
    handle, _gate = small_server(watch)
    conn = connect(handle, "operator", str(handle.config.cert_file))
    conn.timeout = 1
    with pytest.raises(pywbem.Error):
        conn.InvokeMethod("GetError", pywbem.CIMClassName("EDIV_ConcreteJob",
                                                          namespace=EDIV_NAMESPACE))
    assert watch.entered.is_set()
    assert watch.saw_gone.wait(15)


def test_stop_with_a_request_in_flight_returns_promptly(small_server):
    handle, gate = small_server()
    busy = threading.Thread(target=_invoke_gate, args=(handle,), daemon=True)
    busy.start()
    assert gate.entered.wait(10)
    stopper = threading.Thread(target=handle.stop)
    stopper.start()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=2).close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_exits_with_idle_and_half_sent_clients(tmp_path):
    """`ediv server` with an idle TCP peer, an idle TLS peer and a half-sent request: SIGTERM
    stops the indication watcher, then the server, well within 10 s."""
    config = tmp_path / "server.toml"
    add_user(tmp_path / "users.json", "ops", Role.READER, "pw")
    port = _free_port()
    code = ("import click, sys\nfrom ediv.provider import cli\n"
            "@click.group()\ndef g(): pass\ncli.register(g)\ng(sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", code, "server", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}", "--state", str(tmp_path / "s.db")],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        ctx = None
        deadline = time.monotonic() + 60
        while ctx is None:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                ctx = ssl.create_default_context(cafile=str(tmp_path / "server.pem"))
            except OSError:
                time.sleep(0.2)
        with contextlib.ExitStack() as stack:
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            raw = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            half = stack.enter_context(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
            half.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<CIM")
            time.sleep(0.5)
            proc.terminate()
            proc.wait(timeout=10)
        err = proc.stderr.read()
        assert proc.returncode == 0, err
        assert err.index("indication watcher stopped") < err.index("WBEM server stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
