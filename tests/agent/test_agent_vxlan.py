"""Two emulated hosts (network namespaces joined by a veth "underlay"), one agent each, and a
net that spans both through a unicast VXLAN segment — the way the controller splits scenarios.
Also covers the <host> section (hostif), exec type=file and the same key on two hosts."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from agent_helpers import Agent, unique_key

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, VXLAN)")]


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=True)


@pytest.fixture
def two_hosts():
    """hA and hB: namespaces with 198.19.N.1 and .2 on a veth pair (nothing else)."""
    tag = secrets.token_hex(3)
    net = 100 + secrets.randbelow(150)
    a, b = f"edivt-{tag}-a", f"edivt-{tag}-b"
    sh("ip", "netns", "add", a)
    try:
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", b)
        for ns, host in ((a, 1), (b, 2)):
            sh("ip", "-n", ns, "addr", "add", f"198.19.{net}.{host}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield {"A": (a, f"198.19.{net}.1"), "B": (b, f"198.19.{net}.2")}
    finally:
        subprocess.run(["ip", "netns", "del", b], check=False)
        subprocess.run(["ip", "netns", "del", a], check=False)


class NsAgent(Agent):
    """The agent run inside a host namespace (``ip netns exec`` also remounts /sys)."""

    def __init__(self, state: Path, netns: str):
        super().__init__(state)
        self.netns = netns

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().argv(*args)]


def bundle(root: Path, key: str, vm: str, addr: str, seg: dict, extra: str = "") -> Path:
    (root / "files" / "scripts").mkdir(parents=True)
    (root / "files" / "scripts" / "who.sh").write_text("echo I am $(hostname)\n")
    xml = f"""<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>
  </global><net name="Net0" mode="virtual_bridge"/>
  <vm name="{vm}" type="container"><if id="1" net="Net0"><ipv4>{addr}/24</ipv4></if>
    <exec seq="who" type="file">scripts/who.sh</exec></vm>{extra}</vnuml>"""
    (root / "scenario.xml").write_text(xml)
    (root / "deploy.json").write_text(json.dumps({"scenario": key, "key": key,
                                                 "segments": [seg]}))
    return root


def test_vxlan_segment_joins_a_net_across_two_hosts(two_hosts, tmp_path):
    key = unique_key("vx")  # the same key on both hosts, as the controller does
    vni = 200000 + secrets.randbelow(10**6)
    lan = 100 + secrets.randbelow(150)
    (ns_a, ip_a), (ns_b, ip_b) = two_hosts["A"], two_hosts["B"]
    agents = {"A": NsAgent(tmp_path / "stateA", ns_a), "B": NsAgent(tmp_path / "stateB", ns_b)}
    allow = tmp_path / "agent.ini"  # the <hostif> gives the host an address: admin's choice
    allow.write_text("[agent]\nallow_hostif = true\n")
    agents["A"].config = allow
    seg = {"net": "Net0", "kind": "vxlan", "id": vni, "dev": "u0"}
    hostif = (f'<host><hostif net="Net0"><ipv4>198.18.{lan}.254/24</ipv4></hostif></host>')
    try:
        res_a = agents["A"]("deploy", "--bundle", str(bundle(
            tmp_path / "a", key, "va", f"198.18.{lan}.1",
            {**seg, "local": ip_a, "peers": [ip_b]}, hostif)))
        assert res_a.rc == 0, res_a.events
        res_b = agents["B"]("deploy", "--bundle", str(bundle(
            tmp_path / "b", key, "vb", f"198.18.{lan}.2", {**seg, "local": ip_b,
                                                             "peers": [ip_a]})))
        assert res_b.rc == 0, res_b.events
        links_a = sh("ip", "-n", ns_a, "-d", "link", "show", f"ex{key}.0").stdout
        assert f"vxlan id {vni}" in links_a and "mtu 1450" in links_a
        # VM b (host B) is reached from host A through the VXLAN, both from the hostif...
        ping = subprocess.run(["ip", "netns", "exec", ns_a, "ping", "-c1", "-W3",
                               f"198.18.{lan}.2"], capture_output=True, text=True, check=False)
        assert ping.returncode == 0, ping.stdout
        # ...and from VM a; exec type=file runs the bundle's script in the VM
        who = agents["A"]("exec", "who", "--key", key)
        assert who.rc == 0 and who.result["results"][0]["output"] == "I am va\n"
        # both hosts use the same key and never see each other's namespaces
        st = [agents[h]("status", "--key", key).result["scenarios"][0] for h in "AB"]
        assert [v["name"] for v in st[0]["vms"]] == ["va"] and st[0]["state"] == "deployed"
        assert [v["name"] for v in st[1]["vms"]] == ["vb"]
        rel_a = agents["A"]("release", "--key", key)
        assert rel_a.rc == 0, rel_a.events
        # releasing host A left host B's VM running
        assert agents["B"]("status", "--key", key).result["scenarios"][0]["vms"][0][
            "state"] == "running"
        assert agents["B"]("release", "--key", key).rc == 0
        for ns in (ns_a, ns_b):
            assert key not in sh("ip", "-n", ns, "-br", "link").stdout
        assert key not in sh("ip", "netns", "list").stdout
    finally:
        for a in agents.values():
            if a.state.exists():
                a("purge")


def test_host_section_routes_and_allowed_host_exec(two_hosts, tmp_path):
    """Run in an emulated host so the host route never touches the real host's table."""
    ns, _ = two_hosts["A"]
    key = unique_key("hs")
    lan = 100 + secrets.randbelow(150)
    config = tmp_path / "agent.ini"
    config.write_text("[agent]\nallow_host_exec = true\nallow_external = true\n")
    a = NsAgent(tmp_path / "state", ns)
    a.config = config
    mark = tmp_path / "host-exec-ran"
    host = (f'<host><hostif net="Net0"><ipv4>198.18.{lan}.254/24</ipv4></hostif>'
            f'<route type="ipv4" gw="198.18.{lan}.1">198.18.{lan + 1}.0/24</route>'
            f'<exec seq="who" type="verbatim">echo host &gt; {mark}</exec></host>')
    b = bundle(tmp_path / "a", key, "va", f"198.18.{lan}.1",
               {"net": "Net0", "kind": "vxlan", "id": 300000 + secrets.randbelow(10**6),
                "local": two_hosts["A"][1], "peers": []}, host)
    try:
        assert a("deploy", "--bundle", str(b)).rc == 0
        routes = sh("ip", "-n", ns, "route", "show", f"198.18.{lan + 1}.0/24").stdout
        assert f"via 198.18.{lan}.1" in routes
        res = a("exec", "who", "--key", key)
        assert res.rc == 0, res.events
        assert {r["vm"] for r in res.result["results"]} == {"va", None}
        assert mark.read_text() == "host\n"
        assert a("release", "--key", key).rc == 0
        assert sh("ip", "-n", ns, "route", "show", f"198.18.{lan + 1}.0/24").stdout == ""
    finally:
        if a.state.exists():
            a("purge")


def test_probe_reports_the_host(tmp_path):
    res = Agent(tmp_path / "state")("probe")
    assert res.rc == 0
    r = res.result
    assert r["cpus"] == os.cpu_count()
    assert abs(r["load"] - r["load1"] / r["cpus"]) < 0.01
    assert r["features"]["bridge"] is True and r["features"]["vxlan"] is True
    assert r["features"]["tap"] == os.path.exists("/dev/net/tun")
    assert r["uml"]["installed"] == os.access("/usr/bin/linux", os.X_OK)
    assert r["memory"]["total"] > r["memory"]["available"] > 0
    assert set(r["drivers"]) >= {"container", "uml"}
