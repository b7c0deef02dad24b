"""Attacks of docs/threat-model.md tried by an operator over WBEM (pywbem, HTTPS, Basic auth)
against a real server with the engine plugin; each one must fail.

- a scenario naming the server's own key and users file by absolute path: refused, and the
  secret never appears in a job or anywhere a reader can see;
- an indication destination the admin did not list (SSRF): refused, the target gets nothing;
- a brute-force loop from one address: answered 429 after a few failures, while another
  client is served as usual.

The cluster's one host is an address nobody listens on: every attack must be refused before
any host is contacted (a regression would show as an 'unreachable' error instead).
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import time
from functools import partial

import pytest
from wbem_support import USERS

from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.server import serve
from tests.conftest import follow_job

pywbem = pytest.importorskip("pywbem")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
BURST = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec")
    cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
    cfg.schema_cache_dir = base / "cache"
    cfg.cluster_file = base / "cluster.conf"
    cfg.cluster_file.write_text("[cluster]\nhost = h1\n[h1]\naddress = 198.18.255.254\n")
    cfg.login_failures, cfg.login_refill_seconds = BURST, 3600.0  # no refill during the test
    for role, (name, password) in USERS.items():
        add_user(cfg.users_file, name, Role.parse(role), password)
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    plugin = EnginePlugin()
    handle = serve(cfg, plugins=[plugin])
    try:
        yield handle, plugin
    finally:
        handle.stop()
        plugin.stop()
        os.environ.update(saved)


def connect(handle, role="operator", namespace="root/ediv"):
    name, password = USERS[role]
    return pywbem.WBEMConnection(handle.url, (name, password), default_namespace=namespace,
                                 ca_certs=str(handle.config.cert_file), timeout=30)


follow = partial(follow_job, timeout=120.0, interval=0.2)


def test_server_files_named_by_a_scenario_never_leave_the_server(server):
    handle, _plugin = server
    cfg = handle.config
    secret = cfg.key_file.read_text()
    users = cfg.users_file.read_text()
    spec = f"""<vnuml><global><version>1.8</version><simulation_name>steal</simulation_name>
<vm_mgmt type="none"/></global><net name="n" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="n"/>
<filetree seq="s" root="/loot">{cfg.key_file.parent}</filetree>
<exec seq="s" type="file">{cfg.users_file}</exec></vm></vnuml>"""
    op = connect(handle)
    (service,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    # refused when defined (the same check a deploy makes): nothing is recorded, no host asked
    with pytest.raises(pywbem.CIMError) as err:
        op.InvokeMethod("DefineSystem", service, [("SystemSettings", pywbem.CIMInstance(
            "EDIV_ScenarioSettingData", properties={"ScenarioDefinition": spec}))])
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "is outside the scenario's files" in err.value.status_description
    assert "unreachable" not in err.value.status_description.lower()
    assert all(s["Name"] != "steal" for s in op.EnumerateInstances("EDIV_Scenario"))
    reader = connect(handle, "reader")
    seen = [str(v) for cls in ("EDIV_ConcreteJob", "EDIV_Scenario", "EDIV_ScenarioSettingData")
            for inst in reader.EnumerateInstances(cls) for v in inst.values()]
    key_body = secret.splitlines()[1]
    assert not any(key_body in s or users[:40] in s for s in seen)


def test_ssrf_destination_is_refused_and_the_target_gets_nothing(server):
    handle, _plugin = server
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(4)
    target.setblocking(False)
    url = f"http://127.0.0.1:{target.getsockname()[1]}"
    op = connect(handle, namespace="interop")
    try:
        for dest in (url, url + "/cimom", f"http://127.0.0.1:5990@127.0.0.1:"
                                          f"{target.getsockname()[1]}/"):
            with pytest.raises(pywbem.CIMError) as err:
                op.CreateInstance(pywbem.CIMInstance("CIM_ListenerDestinationCIMXML",
                                                     properties={"Name": "x",
                                                                 "Destination": dest}))
            assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
            assert "indication_listeners" in err.value.status_description
        assert op.EnumerateInstances("CIM_ListenerDestinationCIMXML") == []
        with pytest.raises(BlockingIOError):
            target.accept()  # nobody connected
    finally:
        target.close()


def _basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "CIMOperation": "MethodCall",
            "CIMMethod": "EnumerateInstanceNames", "CIMObject": "root/ediv",
            "Content-Type": 'application/xml; charset="utf-8"'}


BODY = (b'<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
        b'<IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH>'
        b'<NAMESPACE NAME="root"/><NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
        b'<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="EDIV_Scenario"/></IPARAMVALUE>'
        b'</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')


def attempt(handle, source: str, name: str, password: str) -> tuple[int, str | None]:
    ctx = ssl.create_default_context(cafile=str(handle.config.cert_file))
    conn = http.client.HTTPSConnection("127.0.0.1", handle.port, context=ctx, timeout=30,
                                       source_address=(source, 0))
    try:
        conn.request("POST", "/cimom", body=BODY, headers=_basic(name, password))
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


def test_brute_force_is_slowed_per_address_while_others_are_served(server):
    handle, _plugin = server
    name, password = USERS["operator"]
    statuses = []
    op = connect(handle)  # another client (127.0.0.1), served throughout
    for i in range(BURST + 6):  # bounded loop
        statuses.append(attempt(handle, "127.0.0.2", name, f"guess-{i}"))
        assert op.EnumerateInstanceNames("EDIV_Scenario") is not None
    assert [s for s, _ in statuses[:BURST]] == [401] * BURST
    assert all(s == 429 and int(retry) > 0 for s, retry in statuses[BURST:]), statuses
    # while blocked, not even the right password is checked
    assert attempt(handle, "127.0.0.2", name, password)[0] == 429
    # another address is not blocked, and the right password still works from there
    assert attempt(handle, "127.0.0.3", name, "wrong")[0] == 401
    assert attempt(handle, "127.0.0.3", name, password)[0] == 200


def test_throttle_bucket_refills_and_stays_bounded():
    from ediv.provider.auth import LoginThrottle, TooManyFailures

    now = [0.0]
    t = LoginThrottle(burst=2, refill=10.0, max_addresses=3, clock=lambda: now[0])
    t.failed("a")
    t.failed("a")
    with pytest.raises(TooManyFailures) as err:
        t.check("a")
    assert err.value.retry_after == 10
    now[0] = 10.0
    t.check("a")  # one failure earned back
    for addr in ("b", "c", "d", "e"):
        t.failed(addr)
    assert len(t) == 3  # bounded: the least recently seen goes first
    t.check("e")  # one failure of two


def test_cached_login_never_runs_scrypt_and_takes_only_the_verified_password(tmp_path,
                                                                           monkeypatch):
    """What the event loop may authenticate alone: the password scrypt last accepted for
    the user, until the users file changes; anything else is left to ``authenticate``."""
    from ediv.provider import auth

    path = tmp_path / "users.json"
    add_user(path, "otto", Role.OPERATOR, "o-pass")
    users = auth.UserStore(path)
    real_verify = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda *a: pytest.fail("scrypt ran"))
    assert users.cached_login("otto", "o-pass") is None  # never verified yet
    monkeypatch.setattr(auth, "verify_password", real_verify)
    assert users.authenticate("otto", "o-pass") is not None
    monkeypatch.setattr(auth, "verify_password", lambda *a: pytest.fail("scrypt ran"))
    assert users.cached_login("otto", "o-pass").name == "otto"
    assert users.cached_login("otto", "o-pass ") is None
    assert users.cached_login("nobody", "o-pass") is None
    add_user(path, "anna", Role.READER, "a-pass")  # the file changed: verify again
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1))
    assert users.cached_login("otto", "o-pass") is None


def test_busy_password_checks_do_not_queue_failed_addresses(tmp_path):
    """While every scrypt slot is taken (by other logins), an address that failed recently is
    refused at once and one whose credentials are verified is served from the cache."""
    from ediv.provider.auth import LoginThrottle, TooManyFailures, UserStore

    add_user(tmp_path / "users.json", "otto", Role.OPERATOR, "o-pass")
    users = UserStore(tmp_path / "users.json", LoginThrottle(burst=5), verify_slots=1)
    assert users.authenticate("otto", "o-pass", "10.0.0.1") is not None  # verified, cached
    assert users.authenticate("otto", "bad", "10.0.0.2") is None
    users._slots.acquire()  # a check in progress elsewhere
    try:
        with pytest.raises(TooManyFailures, match="being checked"):
            users.authenticate("otto", "bad-again", "10.0.0.2")
        assert users.authenticate("otto", "o-pass", "10.0.0.1") is not None
    finally:
        users._slots.release()
    assert users.throttle.clean("10.0.0.1") and not users.throttle.clean("10.0.0.2")
