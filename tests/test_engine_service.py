"""The engine service on a real 2-host testbed, through the ``ediv`` command (direct mode) and
through a WBEM server with real clients (pywbem):

- exec gives one entry per VM (its first non-zero exit code, all its outputs in order), also
  when a command fails, a VM is stopped or one host's agent is killed mid-exec (what finished
  before is kept, the rest carries an error); ExecuteSequence's ResultData has the same shape;
  an unknown sequence is an error naming the ones the scenario has;
- the CLI's deploy of a file and the WBEM DefineSystem + RequestStateChange deploy of the same
  file leave the same store rows, and the server writes no spec file;
- one claim: two WBEM clients deploying one defined scenario at once, through one server or
  through two server processes on one store: exactly one deploys, the other hears "busy".
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from ediv import testbed
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.server import serve
from ediv.state import StateStore
from tests.conftest import EDIV, TESTBED, follow_job
from tests.test_faults import exec_agents, kill9, wait_for

pytestmark = [*TESTBED, pytest.mark.slow]

OPERATOR = ("otto", "o-pass")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def spec(name: str) -> str:
    """VM ``a`` (h1): ``echo one`` then a failing command; VM ``b`` (h2): succeeds; ``slow``:
    b reports one command, then sleeps (long enough to be killed in)."""
    return (
        f"<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>"
        '<automac/><vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
        '<vm name="a" type="container"><if id="1" net="N"><ipv4 mask="255.255.255.0">'
        "198.18.9.1</ipv4></if>"
        '<exec seq="t" type="verbatim">echo one</exec>'
        '<exec seq="t" type="verbatim">echo two; exit 3</exec>'
        '<exec seq="slow" type="verbatim">echo a-slow</exec></vm>'
        '<vm name="b" type="container"><if id="1" net="N"><ipv4 mask="255.255.255.0">'
        "198.18.9.2</ipv4></if>"
        '<exec seq="t" type="verbatim">echo fine</exec>'
        '<exec seq="slow" type="verbatim">echo first</exec>'
        '<exec seq="slow" type="verbatim">sleep 4711</exec></vm>'
        "</vnuml>")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base: Path = tmp_path_factory.mktemp("svc")
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    handle = plugin = None
    try:
        bed = testbed.up(2, base / "tb", progress=lambda _m: None)
        cfg = load_config(base / "server.toml", listen="127.0.0.1:0",
                          state=base / "server-state.db")
        cfg.cluster_file = base / "tb" / "cluster.conf"
        cfg.schema_cache_dir = base / "cache"
        cfg.data_dir = base / "data"
        add_user(cfg.users_file, OPERATOR[0], Role.OPERATOR, OPERATOR[1])
        plugin = EnginePlugin()
        handle = serve(cfg, plugins=[plugin])
        yield {"bed": bed, "base": base, "handle": handle, "plugin": plugin, "cfg": cfg,
               "cluster": str(base / "tb" / "cluster.conf")}
    finally:
        if handle is not None:
            handle.stop()
        if plugin is not None and plugin.jobs is not None:
            plugin.jobs.wait_all(120)
        testbed.down(base / "tb", progress=lambda _m: None)
        os.environ.update(saved)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([*EDIV, *args], capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"ediv {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r


@pytest.fixture
def lab(site, tmp_path):
    """A deployed scenario ``lab`` (a on h1, b on h2) in a fresh state store; released after."""
    path = tmp_path / "lab.xml"
    path.write_text(spec("lab"))
    state = str(tmp_path / "state.db")
    cli("deploy", str(path), "-c", site["cluster"], "--state", state, "-a", "RoundRobin")
    status = json.loads(cli("status", "lab", "--state", state, "--json").stdout)
    assert {v["name"]: v["host"] for v in status["vms"]} == {"a": "h1", "b": "h2"}
    try:
        yield {"state": state, "path": path}
    finally:
        cli("release", "lab", "--state", state, check=False)


def exec_json(state: str, *args: str) -> tuple[int, list[dict]]:
    r = cli("exec", "lab", *args, "--state", state, "--json", check=False)
    return r.returncode, json.loads(r.stdout)


A_FAILED = {"vm": "a", "host": "h1", "exit_code": 3, "output": "one\ntwo\n"}


def test_exec_one_entry_per_vm_with_a_failing_command(lab):
    rc, results = exec_json(lab["state"], "t")
    assert results == [A_FAILED, {"vm": "b", "host": "h2", "exit_code": 0, "output": "fine\n"}]
    assert rc != 0
    unknown = cli("exec", "lab", "nope", "--state", lab["state"], check=False)
    assert unknown.returncode == 1 and "no command sequence 'nope'" in unknown.stderr
    assert "(it has: slow, t)" in unknown.stderr


def test_exec_with_a_vm_stopped(lab):
    cli("vm", "stop", "lab", "b", "--state", lab["state"])
    rc, results = exec_json(lab["state"], "t")
    assert results == [A_FAILED, {"vm": "b", "host": "h2", "exit_code": None, "output": "",
                                  "error": "b is not running; start it first"}]
    assert rc != 0


def test_exec_agent_killed_mid_exec_keeps_what_finished(site, lab):
    h2 = site["bed"].hosts[1]
    proc = subprocess.Popen([*EDIV, "exec", "lab", "slow", "--state", lab["state"], "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # b's second command runs: its first has been reported
        wait_for(lambda: _sleeping(), 60, "b's sleep", proc)
        kill9(wait_for(lambda: _exec_agents(h2), 30, "h2's exec agent", proc))
        out, _err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_sleep()
    results = json.loads(out)
    assert [r["vm"] for r in results] == ["a", "b"], results
    assert results[0] == {"vm": "a", "host": "h1", "exit_code": 0, "output": "a-slow\n"}
    b = results[1]
    assert b["exit_code"] is None and b["output"] == "first\n" and b["error"], b
    assert proc.returncode != 0


def _exec_agents(host) -> list[int]:
    """The host's agent processes running an exec's commands (the exec command's agent
    session, with the commands as its children)."""
    return exec_agents(host)


def _sleeping() -> list[int]:
    pids = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmd.read_bytes().split(b"\0")[:2] == [b"sleep", b"4711"]:
                pids.append(int(cmd.parent.name))
        except OSError:
            continue
    return pids


def _kill_sleep() -> None:
    for pid in _sleeping():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


# ---------------------------------------------------------------- through WBEM

def _conn(site):
    import pywbem

    handle = site["handle"]
    return pywbem.WBEMConnection(handle.url, OPERATOR, default_namespace="root/ediv",
                                 ca_certs=str(handle.config.cert_file), timeout=120)


def _service(conn):
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    return service


def _define(conn, text: str):
    import pywbem

    settings = pywbem.CIMInstance("EDIV_ScenarioSettingData",
                                  properties={"ScenarioDefinition": text,
                                              "PartitionAlgorithm": "RoundRobin"})
    rv, out = conn.InvokeMethod("DefineSystem", _service(conn), [("SystemSettings", settings)])
    assert rv == 0, out
    return out["ResultingSystem"]


_follow = partial(follow_job, timeout=600.0)


def _deploy(conn, ref):
    import pywbem

    rv, out = conn.InvokeMethod("RequestStateChange", ref, [("RequestedState", pywbem.Uint16(2))])
    assert rv == 4096, rv
    job = _follow(conn, out["Job"])
    assert job["JobState"] == 7, job["ErrorDescription"]


def _release_and_destroy(conn, ref):
    import pywbem

    rv, out = conn.InvokeMethod("RequestStateChange", ref, [("RequestedState", pywbem.Uint16(3))])
    if rv == 4096:
        _follow(conn, out["Job"])
    conn.InvokeMethod("DestroySystem", _service(conn), [("AffectedSystem", ref)])


def test_execute_sequence_result_data_is_per_vm(site):
    conn = _conn(site)
    ref = _define(conn, spec("wlab"))
    try:
        _deploy(conn, ref)
        service = _service(conn)
        rv, out = conn.InvokeMethod("ExecuteSequence", service,
                                    [("AffectedSystem", ref), ("Sequence", "t")])
        assert rv == 4096
        job = _follow(conn, out["Job"])
        assert job["JobState"] == 10  # exception: one VM failed
        assert json.loads(job["ResultData"]) == [
            A_FAILED, {"vm": "b", "host": "h2", "exit_code": 0, "output": "fine\n"}]
        import pywbem

        with pytest.raises(pywbem.CIMError) as bad:
            conn.InvokeMethod("ExecuteSequence", service,
                              [("AffectedSystem", ref), ("Sequence", "nope")])
        assert "(it has: slow, t)" in bad.value.status_description
    finally:
        _release_and_destroy(conn, ref)


def _rows(store: StateStore, name: str) -> dict:
    """What a deploy recorded, without what differs by nature (keys, times, measured loads,
    where the files are)."""
    row = store.scenario(name)
    plan = dict(row.plan)
    plan.pop("loads")
    parts = []
    for p in store.parts(name):
        deploy = dict(p["deploy"])
        deploy.pop("key")
        parts.append({"host": p["host"], "subscenario": p["subscenario"], "deploy": deploy,
                      "state": p["state"]})
    return {"state": row.stored_state, "spec": row.spec, "algorithm": row.algorithm,
            "plan": plan, "mac_base": row.mac_base, "mgmt_offset": row.mgmt_offset,
            "parts": parts,
            "vms": [{k: v for k, v in vm.items() if k != "scenario"} for vm in store.vms(name)],
            "segments": store.segments(name)}


def test_cli_and_wbem_deploys_of_one_file_record_the_same_rows(site, tmp_path):
    text = spec("same")
    path = tmp_path / "same.xml"
    path.write_text(text)
    state = tmp_path / "state.db"
    cli("deploy", str(path), "-c", site["cluster"], "--state", str(state), "-a", "RoundRobin")
    store = StateStore(state)
    try:
        direct = _rows(store, "same")
    finally:
        store.close()
    cli("release", "same", "--state", str(state))
    conn = _conn(site)
    ref = _define(conn, text)
    try:
        _deploy(conn, ref)
        server = StateStore(site["cfg"].state_path)
        try:
            assert _rows(server, "same") == direct
        finally:
            server.close()
        written = [p for p in Path(site["cfg"].data_dir).rglob("*") if p.suffix == ".xml"]
        assert written == [], "the server wrote a spec file"
    finally:
        _release_and_destroy(conn, ref)


def _race(calls) -> list:
    """Run the calls at once (a barrier), each on its own thread; their outcomes."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def one(i, call):
        barrier.wait()
        try:
            out[i] = call()
        except Exception as exc:  # the outcome under test
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


def _check_one_deploys(conns, ref):
    import pywbem

    def request(conn):
        return conn.InvokeMethod("RequestStateChange", ref,
                                 [("RequestedState", pywbem.Uint16(2))])

    outcomes = _race([lambda c=c: request(c) for c in conns])
    started = [o for o in outcomes if isinstance(o, tuple) and o[0] == 4096]
    refused = [o for o in outcomes if isinstance(o, pywbem.CIMError)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert refused[0].status_code == pywbem.CIM_ERR_FAILED
    assert "is busy (deploy)" in refused[0].status_description
    job = _follow(conns[0], started[0][1]["Job"])
    assert job["JobState"] == 7, job["ErrorDescription"]


def test_two_clients_deploying_one_scenario_one_deploys(site):
    conns = [_conn(site), _conn(site)]
    ref = _define(conns[0], spec("race1"))
    try:
        _check_one_deploys(conns, ref)
    finally:
        _release_and_destroy(conns[0], ref)


def test_two_server_processes_on_one_store_one_deploys(site, tmp_path):
    """A second server process on the same state store and data dir."""
    cfg = site["cfg"]
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ediv.provider.config import load_config\n"
        "from ediv.provider.engine_plugin import EnginePlugin\n"
        "from ediv.provider.server import serve\n"
        f"cfg = load_config({str(site['base'] / 'server.toml')!r}, listen='127.0.0.1:0',"
        f" state={str(cfg.state_path)!r})\n"
        f"cfg.cluster_file = Path({str(cfg.cluster_file)!r})\n"
        f"cfg.schema_cache_dir = Path({str(cfg.schema_cache_dir)!r})\n"
        f"cfg.data_dir = Path({str(cfg.data_dir)!r})\n"
        "h = serve(cfg, plugins=[EnginePlugin()])\n"
        "print(h.url, flush=True)\n"
        "sys.stdin.readline()\n"
        "h.stop()\n")
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), url
        import pywbem

        other = pywbem.WBEMConnection(url, OPERATOR, default_namespace="root/ediv",
                                      ca_certs=str(cfg.cert_file), timeout=120)
        conns = [_conn(site), other]
        ref = _define(conns[0], spec("race2"))
        try:
            _check_one_deploys(conns, ref)
        finally:
            _release_and_destroy(conns[0], ref)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
