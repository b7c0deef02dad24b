"""The fast path of the transport: HTTP/1.1 details of our own protocol (100-continue,
pipelining, the head bound), GetInstance answered on the event loop only once measured fast,
and the cache of verified Authorization headers (never for a wrong or changed password)."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import pywbem
from test_wbem_security import GET_CLASS, _auth
from wbem_support import HOSTS, USERS, connect

from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.hosts import HostSystemProvider
from ediv.provider.schema import EDIV_NAMESPACE, load_schema
from ediv.provider.server import serve
from ediv.provider.wbem_http import QuickPath

HEAD = ("POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        "CIMOperation: MethodCall\r\nCIMMethod: GetClass\r\nCIMObject: root%2Fediv\r\n"
        "Authorization: {auth}\r\nContent-Length: {length}\r\n{extra}\r\n")


class _Recorder(HostSystemProvider):
    """EDIV_HostSystem whose look-ups note the thread they run in (and may be slow)."""

    def __init__(self, delay: float = 0.0):
        super().__init__(HOSTS)
        self.delay = delay
        self.threads: list[str] = []

    def get(self, path):
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        return super().get(path)


@pytest.fixture(scope="module")
def schema_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("schema-cache")


@pytest.fixture
def server(tmp_path, monkeypatch, schema_cache):
    """Factory: a server whose EDIV_HostSystem provider is ``provider``."""
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(key, raising=False)
    handles = []

    def make(provider=None):
        cfg = load_config(tmp_path / "server.toml", listen="127.0.0.1:0")
        cfg.schema_cache_dir = schema_cache
        for role, (name, password) in USERS.items():
            add_user(cfg.users_file, name, Role.parse(role), password)
        chosen = provider or HostSystemProvider(HOSTS)
        handle = serve(cfg, schema=load_schema(cfg.schema_cache_dir), plugins=[
            lambda registry, _d, _c: registry.register(EDIV_NAMESPACE, chosen)])
        handles.append(handle)
        return handle

    try:
        yield make
    finally:
        for h in handles:
            h.stop()


def _tls(handle) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(handle.config.cert_file))
    raw = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_response(f) -> tuple[int, dict, bytes]:
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline().strip()):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def _host_path(name: str) -> pywbem.CIMInstanceName:
    return pywbem.CIMInstanceName("EDIV_HostSystem", {
        "CreationClassName": "EDIV_HostSystem", "Name": name}, namespace=EDIV_NAMESPACE)


def test_expect_100_continue_gets_an_interim_response(server):
    handle = server()
    body = GET_CLASS % b""
    with _tls(handle) as sock:
        sock.sendall(HEAD.format(auth=_auth(), length=len(body),
                                 extra="Expect: 100-continue\r\n").encode())
        f = sock.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 100")
        assert f.readline() == b"\r\n"
        sock.sendall(body)
        status, _, answer = _read_response(f)
    assert status == 200 and b'<CLASS NAME="EDIV_Scenario"' in answer


def test_pipelined_requests_are_answered_in_order(server):
    handle = server()
    body = GET_CLASS % b""
    ok = HEAD.format(auth=_auth(), length=len(body), extra="").encode() + body
    wrong = HEAD.format(auth=_auth("reader", "wrong"), length=len(body), extra="").encode() + body
    with _tls(handle) as sock:
        sock.sendall(ok + wrong + ok)  # one write: three requests
        f = sock.makefile("rb")
        statuses = [_read_response(f)[0] for _ in range(3)]
    assert statuses == [200, 401, 200]


def test_oversized_request_head_is_refused(server):
    handle = server()
    with _tls(handle) as sock:
        sock.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        status, headers, _ = _read_response(sock.makefile("rb"))
    assert status == 431 and headers["connection"] == "close"


def test_fast_getinstance_moves_to_the_event_loop(server):
    """The first look-ups run in worker threads; once measured fast, on the event loop."""
    provider = _Recorder()
    handle = server(provider)
    conn = connect(handle, "reader", str(handle.config.cert_file))
    for _ in range(200):  # a streak of QuickPath.PROMOTE fast runs is needed; bounded
        assert conn.GetInstance(_host_path("host1"))["Name"] == "host1"
        if provider.threads[-1] == "ediv-wbem-io":
            break
    assert provider.threads[0].startswith("ediv-wbem-") and provider.threads[0] != "ediv-wbem-io"
    assert provider.threads[-1] == "ediv-wbem-io"
    # answers on the loop are the same answers
    assert conn.GetInstance(_host_path("host2"))["Name"] == "host2"
    with pytest.raises(pywbem.CIMError) as err:
        conn.GetInstance(_host_path("nosuchhost"))
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND


def test_blocking_getinstance_never_runs_on_the_event_loop(server):
    """A look-up that waits (I/O) every time is never promoted, however little CPU it uses."""
    provider = _Recorder(delay=QuickPath.FAST_WALL * 1.5)
    handle = server(provider)
    conn = connect(handle, "reader", str(handle.config.cert_file))
    for _ in range(QuickPath.PROMOTE + 4):
        conn.GetInstance(_host_path("host1"))
    assert "ediv-wbem-io" not in provider.threads


def test_quick_path_promotes_on_fast_runs_and_demotes_on_a_slow_inline_one():
    quick = QuickPath()
    key = ("getinstance", "root/ediv", "ediv_hostsystem")
    for _ in range(QuickPath.PROMOTE - 1):
        quick.ran_in_worker(key, 0.0001, 0.0002)
    quick.ran_in_worker(key, 0.0001, QuickPath.FAST_WALL * 2)  # waited: does not count
    assert not quick.inline(key)
    quick.ran_in_worker(key, 0.0001, 0.0002)
    assert quick.inline(key)
    quick.ran_inline(key, 0.0001, QuickPath.DEMOTE_WALL * 2)  # blocked the loop
    assert not quick.inline(key)
    for _ in range(QuickPath.PROMOTE):
        quick.ran_in_worker(key, 0.0001, 0.0002)
    assert quick.inline(key)
    quick.ran_inline(key, QuickPath.DEMOTE_CPU * 2, QuickPath.DEMOTE_CPU * 2)  # heavy
    assert not quick.inline(key)
    for _ in range(QuickPath.PROMOTE - 1):
        quick.ran_in_worker(key, 0.0001, 0.0002)
    quick.ran_in_worker(key, QuickPath.FAST_CPU * 2, QuickPath.FAST_CPU * 2)  # resets
    quick.ran_in_worker(key, 0.0001, 0.0002)
    assert not quick.inline(key)


def test_changed_password_is_refused_at_once(server):
    """A verified Authorization header is remembered; rewriting the users file forgets it."""
    handle = server()
    name, old = USERS["reader"]
    conn = pywbem.WBEMConnection(handle.url, (name, old), default_namespace=EDIV_NAMESPACE,
                                 ca_certs=str(handle.config.cert_file), timeout=20)
    for _ in range(3):
        assert conn.GetClass("EDIV_Scenario").classname == "EDIV_Scenario"
    add_user(handle.config.users_file, name, Role.READER, "a-new-password")
    with pytest.raises(pywbem.AuthError):
        conn.GetClass("EDIV_Scenario")
    fresh = pywbem.WBEMConnection(handle.url, (name, "a-new-password"),
                                  default_namespace=EDIV_NAMESPACE,
                                  ca_certs=str(handle.config.cert_file), timeout=20)
    assert fresh.GetClass("EDIV_Scenario").classname == "EDIV_Scenario"


def test_a_wrong_password_never_passes_for_a_verified_one(server):
    handle = server()
    name, real = USERS["reader"]
    good = pywbem.WBEMConnection(handle.url, (name, real), default_namespace=EDIV_NAMESPACE,
                                 ca_certs=str(handle.config.cert_file), timeout=20)
    good.GetClass("EDIV_Scenario")
    for wrong in (real + "x", real[:-1], real.upper()):
        bad = pywbem.WBEMConnection(handle.url, (name, wrong), default_namespace=EDIV_NAMESPACE,
                                    ca_certs=str(handle.config.cert_file), timeout=20)
        with pytest.raises(pywbem.AuthError):
            bad.GetClass("EDIV_Scenario")


def test_m_post_split_across_reads(server):
    """DSP0200's M-POST (a method llhttp does not know), its first bytes in a read alone."""
    handle = server()
    body = GET_CLASS % b""
    head = (f"M-POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Man: http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73\r\n"
            f"73-CIMOperation: MethodCall\r\n73-CIMMethod: GetClass\r\n"
            f"Authorization: {_auth()}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with _tls(handle) as sock:
        f = sock.makefile("rb")
        for _ in range(2):  # and again on the same connection
            sock.sendall(head[:3])
            time.sleep(0.2)
            sock.sendall(head[3:] + body)
            status, _, answer = _read_response(f)
            assert status == 200 and b'<CLASS NAME="EDIV_Scenario"' in answer
