"""Faults through the WBEM server, on a real 2-host testbed with the server as its own process:
kill -9 of the server mid-deploy (the scenario then reads "interrupted", EnabledState 1 with
OtherEnabledState "Interrupted", and RequestStateChange(3) releases it), and a deploy job that
fails on a host (the scenario stays defined, with its files, deployable again).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from ediv import testbed
from ediv.provider.auth import Role, add_user
from tests.conftest import TESTBED, follow_job
from tests.test_faults import (
    TALLY,
    Env,
    _FaultBed,
    agent_pids,
    key_dir,
    print_tally,
    scenario,
    wait_for,
)

pywbem = pytest.importorskip("pywbem")

pytestmark = [*TESTBED, pytest.mark.slow]

OPERATOR = ("faultop", "fault-op-password-1")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
NS = "root/ediv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ediv server`` as a child process (so it can be killed -9 and started again)."""

    def __init__(self, base: Path, cluster: Path):
        self.base = base
        self.port = _free_port()
        self.config = base / "server.toml"
        self.config.write_text(f'[server]\nlisten = "127.0.0.1:{self.port}"\n'
                               f'cluster = "{cluster}"\nstate = "state.db"\n')
        add_user(base / "users.json", OPERATOR[0], Role.OPERATOR, OPERATOR[1])
        self.proc: subprocess.Popen | None = None
        self.env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}

    def start(self) -> None:
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ediv.client.cli", "server", "--config", str(self.config)],
            stdout=log, stderr=log, env=self.env)
        log.close()

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, 60, "the server to listen")

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def conn(self):
        return pywbem.WBEMConnection(f"https://127.0.0.1:{self.port}", OPERATOR,
                                     default_namespace=NS,
                                     ca_certs=str(self.base / "server.pem"), timeout=60)


@pytest.fixture(scope="module")
def site(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("wfaults")
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}  # they beat ca_certs
    tb = testbed.up(2, d / "bed", progress=lambda _m: None)
    server = None
    try:
        bed = _FaultBed(tb, d)
        server = Server(d, bed.cluster)
        server.start()
        yield bed, server
    finally:
        if server is not None:
            server.stop()
        testbed.down(d / "bed", progress=lambda _m: None)
        os.environ.update(saved)
        print_tally(request, "faults through the WBEM server")


def _scenario_ref(name: str):
    return pywbem.CIMInstanceName("EDIV_Scenario", {"CreationClassName": "EDIV_Scenario",
                                                    "Name": name}, namespace=NS)


def _define(conn, xml: str) -> None:
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    settings = pywbem.CIMInstance("EDIV_ScenarioSettingData",
                                  properties={"ScenarioDefinition": xml})
    rv, _ = conn.InvokeMethod("DefineSystem", service, [("SystemSettings", settings)])
    assert rv == 0


def _request(conn, name: str, state: int):
    rv, out = conn.InvokeMethod("RequestStateChange", _scenario_ref(name),
                                [("RequestedState", pywbem.Uint16(state))])
    return int(rv), out.get("Job")


_follow = partial(follow_job, timeout=120.0)


def _destroy(conn, name: str) -> None:
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    rv, _ = conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", _scenario_ref(name))])
    assert rv == 0


@pytest.fixture
def wenv(site, tmp_path, request):
    bed, server = site
    e = Env(bed, tmp_path)
    e.state = server.base / "state.db"
    TALLY["tried"].append(request.node.name)
    yield e, server
    left = e.settle()
    assert left == [], f"left after the fault was handled: {left}"
    TALLY["clean"].append(request.node.name)


def test_server_killed_mid_deploy_reads_interrupted_and_releases(wenv, tmp_path):
    e, server = wenv
    xml = scenario(tmp_path / "w.xml", "wkill", on_boot=6).read_text()
    conn = server.conn()
    _define(conn, xml)
    rv, _job = _request(conn, "wkill", 2)
    assert rv == 4096
    wait_for(lambda: key_dir(e.bed.hosts[1], "") and
             (key_dir(e.bed.hosts[1], "") / "state.json").exists(), 60, "h2 built")
    server.kill9()
    # the agents see their controller gone and roll back by themselves
    wait_for(lambda: not agent_pids(e.bed.hosts[0]) and not agent_pids(e.bed.hosts[1]), 30,
             "the orphaned agents to finish")
    server.start()
    conn = server.conn()
    sc = conn.GetInstance(_scenario_ref("wkill"))
    assert sc["EnabledState"] == 1 and sc["OtherEnabledState"] == "Interrupted", sc.tomof()
    assert sc["StatusDescriptions"][0] == "interrupted"
    assert sc["OperationalStatus"] == [6]
    rv, job = _request(conn, "wkill", 3)
    assert rv == 4096
    done = _follow(conn, job)
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert conn.GetInstance(_scenario_ref("wkill"))["EnabledState"] == 3  # defined again
    _destroy(conn, "wkill")


def test_failed_wbem_deploy_leaves_the_scenario_defined_with_its_files(wenv, tmp_path):
    """VM b (on h2) asks for a UML kernel that does not exist: h2's agent refuses, h1 is
    rolled back, and the scenario stays defined (with its directory), deployable again."""
    _e, server = wenv
    xml = scenario(tmp_path / "f.xml", "wfail").read_text().replace(
        '<vm name="b" type="container">',
        '<vm name="b" type="uml"><filesystem type="cow">/nonexistent/rootfs</filesystem>'
        "<kernel>/nonexistent/linux</kernel>", 1)
    conn = server.conn()
    _define(conn, xml)
    files = server.base / "data" / "scenarios" / "wfail"
    assert files.is_dir()
    rv, job = _request(conn, "wfail", 2)
    assert rv == 4096
    done = _follow(conn, job)
    assert done["JobState"] == 10 and "rolled back" in done["ErrorDescription"]
    sc = conn.GetInstance(_scenario_ref("wfail"))
    assert sc["EnabledState"] == 3, sc.tomof()
    assert files.is_dir()  # defined and its files: both kept
    _destroy(conn, "wfail")
    assert not files.exists()  # destroyed: both gone


def test_server_restart_fails_the_killed_job(site):
    """The deploy job the killed server ran is failed ("interrupted"), not running forever."""
    _bed, server = site
    conn = server.conn()
    jobs = conn.EnumerateInstances("EDIV_ConcreteJob")
    assert jobs and all(j["JobState"] != 4 for j in jobs)
    assert any("interrupted" in (j["ErrorDescription"] or "") for j in jobs)

