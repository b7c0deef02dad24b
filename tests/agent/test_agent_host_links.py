"""Host-side links of container VMs on the real kernel: bridge ports and host ends with IPv4
addresses only carry no IPv6 of the host's (no per-link ``ff00::/8`` route for every
multicast the host receives to walk), while the VMs' own IPv6 works as before.

Root only. IPv4 from 198.18.0.0/15, IPv6 from the benchmarking range 2001:2::/48; traffic
stays on the bridge this test creates.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from agent_helpers import agent_exec_command, unique_key, unique_mgmt_pair

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")]

SCENARIO = """<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>
<vm_mgmt type="none"/></global>
<net name="Lan" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="Lan"><ipv4>198.18.42.1/24</ipv4>
  <ipv6>2001:2:0:42::1/64</ipv6></if></vm>
<vm name="b" type="container"><if id="1" net="Lan"><ipv4>198.18.42.2/24</ipv4>
  <ipv6>2001:2:0:42::2/64</ipv6></if></vm>
</vnuml>"""

# DAD keeps a new IPv6 address tentative for about a second: retried, bounded
PING6 = ("r=failed; for i in $(seq 100); do if ping -6 -c1 -W1 2001:2:0:42::2 >/dev/null; "
         "then r=ok6; break; fi; sleep 0.1; done; echo $r")


def _ipv6_disabled(dev: str) -> bool:
    return Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").read_text().strip() == "1"


def _links(key: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [link["ifname"] for link in json.loads(out) if key in link["ifname"]]


def test_host_ports_carry_no_ipv6_and_vms_still_speak_it(agent, snapshot, tmp_path):
    key = unique_key("h6")
    before = snapshot(key)
    m_a, _ = unique_mgmt_pair()
    bundle = tmp_path / "bundle"
    (bundle / "files").mkdir(parents=True)
    (bundle / "scenario.xml").write_text(SCENARIO.format(key=key))
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key,
                                                    "mgmt": {"a": m_a}}))
    dep = agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 0, dep.events
    links = _links(key)
    ports = [n for n in links if n.startswith(f"ev{key}")]  # VM ends on the bridge
    mgmt = [n for n in links if n.startswith(f"em{key}")]  # IPv4-only management end
    bridges = [n for n in links if n.startswith(f"eb{key}")]
    assert len(ports) == 2 and len(mgmt) == 1 and len(bridges) == 1, links
    assert all(_ipv6_disabled(n) for n in ports + mgmt)
    assert not _ipv6_disabled(bridges[0])  # the bridge may hold host addresses
    local6 = subprocess.run(["ip", "-6", "route", "show", "table", "local"],
                            capture_output=True, text=True, check=True).stdout
    assert not [line for line in local6.splitlines() if key in line and "eb" not in line]
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
