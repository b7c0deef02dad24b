"""Host-changing attacks of docs/threat-model.md on a real testbed host (a network namespace
with its own sshd and its own ``eth0``), tried by an operator through WBEM and against the
agent directly; with the default agent config each one must fail and change nothing:
``external="eth0"`` on a net that stays on one host (eth0 never gets a master) and
``<host><route>`` (the host's routing table stays as it was). A positive control in a
namespace of the test's own shows the same check passes when the admin allows it, so the
assertions can fail. Nothing here touches the machine's own interfaces.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ediv import testbed
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.server import serve
from tests.conftest import TESTBED

pytestmark = [*TESTBED, pytest.mark.slow]
OPERATOR = ("otto", "o-pass")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def spec(name: str, net_attrs: str = "", host: str = "") -> str:
    return (f'<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>'
            f'<vm_mgmt type="none"/></global><net name="n" mode="virtual_bridge"{net_attrs}/>'
            f'<vm name="a" type="container"><if id="1" net="n"><ipv4>198.18.251.1/24</ipv4>'
            f'</if></vm>{host}</vnuml>')


ROUTE = '<host><route type="ipv4" gw="198.18.251.254">198.18.252.0/24</route></host>'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base: Path = tmp_path_factory.mktemp("sectb")
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    handle = plugin = None
    try:
        bed = testbed.up(1, base / "tb", progress=lambda _m: None)
        cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
        cfg.cluster_file = base / "tb" / "cluster.conf"
        cfg.schema_cache_dir = base / "cache"
        add_user(cfg.users_file, OPERATOR[0], Role.OPERATOR, OPERATOR[1])
        plugin = EnginePlugin()
        handle = serve(cfg, plugins=[plugin])
        yield handle, bed
    finally:
        if handle is not None:
            handle.stop()
        if plugin is not None:
            plugin.stop()
        testbed.down(base / "tb", progress=lambda _m: None)
        os.environ.update(saved)


def host_view(netns: str) -> tuple[str, str, str]:
    """eth0's details, the link names and the routing table of the emulated host."""
    eth0 = sh("ip", "-n", netns, "-d", "link", "show", "eth0")
    names = " ".join(sorted(line.split()[0] for line in
                            sh("ip", "-n", netns, "-br", "link").splitlines()))
    return eth0, names, sh("ip", "-n", netns, "route", "show")


def deploy_over_wbem(handle, text: str):
    import pywbem

    conn = pywbem.WBEMConnection(handle.url, OPERATOR, default_namespace="root/ediv",
                                 ca_certs=str(handle.config.cert_file), timeout=60)
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    rv, out = conn.InvokeMethod("DefineSystem", service, [("SystemSettings", pywbem.CIMInstance(
        "EDIV_ScenarioSettingData", properties={"ScenarioDefinition": text}))])
    assert rv == 0
    system = out["ResultingSystem"]
    rv, out = conn.InvokeMethod("RequestStateChange", system,
                                [("RequestedState", pywbem.Uint16(2))])
    assert rv == 4096
    deadline = time.monotonic() + 180
    while (job := conn.GetInstance(out["Job"]))["JobState"] == 4:
        assert time.monotonic() < deadline, job["JobStatus"]
        time.sleep(0.3)
    conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", system)])
    return job


@pytest.mark.parametrize("attack, expect", [
    (spec("sx1", ' external="eth0"'), "external=eth0"),
    (spec("sx2", host=ROUTE), "<host><route>"),
])
def test_operator_cannot_change_the_host_over_wbem(site, attack, expect):
    handle, bed = site
    netns = bed.hosts[0].netns
    before = host_view(netns)
    job = deploy_over_wbem(handle, attack)
    assert job["JobState"] == 10, job["JobStatus"]
    assert expect in job["ErrorDescription"] and "allow_external" in job["ErrorDescription"]
    assert "refused before anything was built" in job["ErrorDescription"]
    after = host_view(netns)
    assert "master" not in after[0]
    assert after == before


class Agent:
    """``ediv-host`` run by hand inside a network namespace, as the controller's SSH would."""

    def __init__(self, netns: str, state: Path, config: Path | None = None):
        self.netns, self.state, self.config = netns, state, config

    def __call__(self, *args: str) -> tuple[int, list[dict]]:
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "ediv.agent.main",
                "--state-dir", str(self.state), *(["--config", str(self.config)]
                                                  if self.config else []), *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        return p.returncode, [json.loads(x) for x in p.stdout.splitlines() if x.strip()]


def bundle(root: Path, key: str, text: str) -> Path:
    (root / "files").mkdir(parents=True)
    (root / "scenario.xml").write_text(text)
    (root / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    return root


@pytest.mark.parametrize("extra, expect", [(' external="eth0"', "external=eth0"),
                                           ("", "<route>")])
def test_agent_refuses_host_changes_on_a_testbed_host(site, tmp_path, extra, expect):
    _handle, bed = site
    netns = bed.hosts[0].netns
    key = "sa" + secrets.token_hex(2)
    agent = Agent(netns, tmp_path / "state")
    before = host_view(netns)
    text = spec(key, extra, host="" if extra else ROUTE)
    rc, events = agent("deploy", "--bundle", str(bundle(tmp_path / "b", key, text)))
    assert rc == 1 and expect in events[-1]["message"], events
    assert "allow_external" in events[-1]["message"]
    assert host_view(netns) == before


@pytest.fixture
def own_host():
    """A namespace of this test with an 'eth0' (one end of a veth pair): the control case."""
    ns = f"edivt-sec-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_control_admin_allowed_external_attaches_and_release_detaches(own_host, tmp_path):
    key = "sc" + secrets.token_hex(2)
    config = tmp_path / "agent.ini"
    config.write_text("[agent]\nallow_external = true\n")
    agent = Agent(own_host, tmp_path / "state", config)
    rc, events = agent("deploy", "--bundle", str(bundle(tmp_path / "b", key,
                                                         spec(key, ' external="eth0"'))))
    try:
        assert rc == 0, events
        assert f"master eb{key}.0" in sh("ip", "-n", own_host, "-d", "link", "show", "eth0")
    finally:
        rc, events = agent("release", "--key", key)
    assert rc == 0, events
    assert "master" not in sh("ip", "-n", own_host, "-d", "link", "show", "eth0")
    assert key not in sh("ip", "netns", "list")
