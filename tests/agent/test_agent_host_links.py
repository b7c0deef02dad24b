"""Host-side links of container VMs on the real kernel: a scenario's bridge takes no IPv6
from its VMs unless the host has an IPv6 address on it (every VM's MLD reports and DAD
probes reach the bridge, and with IPv6 on each was routed through one ``ff00::/8`` route
per host-side port); host-side ports have no IPv6 address; the VMs' IPv6 works as before.

Root only. IPv4 from 198.18.0.0/15, IPv6 from the benchmarking range 2001:2::/48; traffic
stays on the bridge this test creates.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from agent_helpers import Agent, agent_exec_command, unique_key, unique_mgmt_pair

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")]

SCENARIO = """<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>
<vm_mgmt type="none"/></global>
<net name="Lan" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="Lan"><ipv4>198.18.42.1/24</ipv4>
  <ipv6>2001:2:0:42::1/64</ipv6></if></vm>
<vm name="b" type="container"><if id="1" net="Lan"><ipv4>198.18.42.2/24</ipv4>
  <ipv6>2001:2:0:42::2/64</ipv6></if></vm>
{host}</vnuml>"""

# DAD keeps a new IPv6 address tentative for about a second: retried, bounded
PING6 = ("r=failed; for i in $(seq 100); do if ping -6 -c1 -W1 2001:2:0:42::2 >/dev/null; "
         "then r=ok6; break; fi; sleep 0.1; done; echo $r")


def _ipv6_disabled(dev: str) -> bool:
    return Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").read_text().strip() == "1"


def _links(key: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [link["ifname"] for link in json.loads(out) if key in link["ifname"]]


def _addresses6(dev: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", dev], capture_output=True,
                         text=True, check=True).stdout
    return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]


def _deploy(agent, tmp_path: Path, key: str, xml: str, deploy: dict):
    bundle = tmp_path / f"bundle-{key}"
    (bundle / "files").mkdir(parents=True)
    (bundle / "scenario.xml").write_text(xml)
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key, **deploy}))
    return agent("deploy", "--bundle", str(bundle))


def test_bridge_takes_no_ipv6_from_its_vms_and_vms_still_speak_it(agent, snapshot, tmp_path):
    key = unique_key("h6")
    before = snapshot(key)
    m_a, _ = unique_mgmt_pair()
    dep = _deploy(agent, tmp_path, key, SCENARIO.format(key=key, host=""), {"mgmt": {"a": m_a}})
    assert dep.rc == 0, dep.events
    links = _links(key)
    ports = [n for n in links if n.startswith((f"ev{key}", f"em{key}"))]
    bridges = [n for n in links if n.startswith(f"eb{key}")]
    assert len(ports) == 3 and len(bridges) == 1, links
    assert _ipv6_disabled(bridges[0])
    assert [(n, _addresses6(n)) for n in ports + bridges] == [(n, []) for n in ports + bridges]
    # the management link still reaches the VM over IPv4
    ping = subprocess.run(["ping", "-c1", "-W3", m_a["vm"].split("/")[0]], capture_output=True,
                          check=False)
    assert ping.returncode == 0, ping.stdout
    # inside, the VMs keep their link-local addresses and talk IPv6 across the bridge
    out = agent_exec_command(agent, key, ["a"],
                             f"ip -6 -o addr show dev eth1 scope link; {PING6}")
    assert "fe80::" in out["a"] and out["a"].rstrip().endswith("ok6"), out

    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


def test_bridge_with_an_ipv6_host_address_keeps_ipv6(tmp_path, snapshot):
    config = tmp_path / "agent.ini"  # a <hostif> gives the host an address: admin's choice
    config.write_text("[agent]\nallow_hostif = true\n")
    agent = Agent(tmp_path / "state", config)
    key = unique_key("h7")
    before = snapshot(key)
    host = '<host><hostif net="Lan"><ipv6>2001:2:0:42::fe/64</ipv6></hostif></host>'
    try:
        dep = _deploy(agent, tmp_path, key, SCENARIO.format(key=key, host=host), {})
        assert dep.rc == 0, dep.events
        bridge = next(n for n in _links(key) if n.startswith(f"eb{key}"))
        assert not _ipv6_disabled(bridge)
        assert "2001:2:0:42::fe" in _addresses6(bridge)
        # DAD keeps the host's address tentative for about a second: retried, bounded
        for _ in range(100):
            ping = subprocess.run(["ping", "-6", "-c1", "-W1", "-I", bridge, "2001:2:0:42::2"],
                                  capture_output=True, check=False)
            if ping.returncode == 0:
                break
            time.sleep(0.1)
        assert ping.returncode == 0, ping.stdout
        assert agent("release", "--key", key).rc == 0
        assert snapshot(key) == before
    finally:
        agent("purge")
