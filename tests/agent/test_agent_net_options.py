"""VNUML net settings on the real kernel: netconfig stp, hub, <bw> on ppp nets, capture_file;
net@vlan on an external net at command level (this kernel has no 802.1q).

Root only. Addresses come from 198.18.0.0/15; traffic stays on bridges these tests create.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from agent_helpers import Agent, unique_key

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")]

SCENARIO = """<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>
<netconfig stp="on"/><vm_mgmt type="none"/></global>
<net name="Lan" mode="virtual_bridge" hub="yes" capture_file="../../lan.pcap"
     capture_expression="icmp"/>
<net name="Link" mode="virtual_bridge" type="ppp"><bw>1000000</bw></net>
<vm name="a" type="{vtype}">{fs}<if id="1" net="Lan"><ipv4>198.18.40.1/24</ipv4></if>
  <if id="2" net="Link"><ipv4>198.18.41.1/30</ipv4></if>
  <exec seq="ping" type="verbatim">ping -c 3 -i 0.2 -W 2 198.18.40.2</exec></vm>
<vm name="b" type="{vtype}">{fs}<if id="1" net="Lan"><ipv4>198.18.40.2/24</ipv4></if>
  <if id="2" net="Link"><ipv4>198.18.41.2/30</ipv4></if></vm>
</vnuml>"""


def link_details(name: str) -> dict:
    out = subprocess.run(["ip", "-d", "-j", "link", "show", name], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


def pcap_packets(path: Path) -> int:
    data = path.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a pcap file"
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    count, off = 0, 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "IIII", data[off:off + 16])[2]
        off += 16 + incl
        count += 1
    return count


@pytest.fixture
def net_agent(tmp_path, tmp_path_factory):
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"capture_dir": str(tmp_path / "captures"),
                                  "vm_image_paths": [f"{tmp_path_factory.getbasetemp()}/"]}))
    a = Agent(tmp_path / "state", config)
    yield a
    if a.state.exists():
        assert a("purge").rc == 0


@pytest.mark.skipif(not Path("/usr/bin/tcpdump").exists(), reason="tcpdump not installed")
@pytest.mark.parametrize("vtype", ["container", "uml"])
def test_stp_hub_bandwidth_and_capture(net_agent, snapshot, tmp_path, request, vtype):
    fs = ""
    if vtype == "uml":
        if not os.access("/usr/bin/linux", os.X_OK):
            pytest.skip("needs user-mode-linux")
        image = request.getfixturevalue("rootfs_image")
        fs = f'<filesystem type="cow">{image}</filesystem><mem>64M</mem>'
    key = unique_key("no")
    before = snapshot(key)
    bundle = tmp_path / "bundle"
    (bundle / "files").mkdir(parents=True)
    (bundle / "scenario.xml").write_text(SCENARIO.format(key=key, vtype=vtype, fs=fs))
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    dep = net_agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 0, dep.events
    bridges = {n["name"]: n["bridge"] for n in dep.result["nets"]}
    lan = link_details(bridges["Lan"])["linkinfo"]["info_data"]
    assert lan["stp_state"] == 1 and lan["ageing_time"] == 0
    link = link_details(bridges["Link"])["linkinfo"]["info_data"]
    assert link["stp_state"] == 1 and link["ageing_time"] != 0  # hub= is per net
    ports = [p["ifname"] for p in json.loads(subprocess.run(
        ["ip", "-j", "link", "show", "master", bridges["Link"]], capture_output=True, text=True,
        check=True).stdout)]
    assert len(ports) == 2
    for port in ports:
        qd = subprocess.run(["tc", "qdisc", "show", "dev", port], capture_output=True,
                            text=True, check=True).stdout
        assert "tbf" in qd and "rate 1Mbit" in qd, qd
    # STP holds new ports for 2 x forward_delay (2 s minimum) before they forward
    ping = None
    for _ in range(10):
        ping = net_agent("exec", "ping", "--key", key)
        if ping.rc == 0:
            break
        subprocess.run(["sleep", "1"], check=True)
    assert ping.rc == 0, ping.events
    assert net_agent("release", "--key", key).rc == 0
    assert snapshot(key) == before
    # the capture: a bare file name under capture_dir/<scenario>, kept after release
    pcap = tmp_path / "captures" / key / "lan.pcap"
    assert pcap.exists() and not (tmp_path / "lan.pcap").exists()
    assert oct(pcap.stat().st_mode & 0o777) == "0o600"
    assert pcap_packets(pcap) >= 6  # 3 echo requests + 3 replies, icmp only


def test_external_vlan_is_a_subinterface_and_needs_8021q():
    from ediv.agent.bundle import parse_deploy_info
    from ediv.agent.layout import build_layout
    from ediv.agent.network import preflight, vlan_supported
    from ediv.scenario import parse_string

    sc = parse_string(
        '<vnuml><global><version>1.8</version><simulation_name>x</simulation_name>'
        '<vm_mgmt type="none"/></global><net name="Ext" mode="virtual_bridge" external="lo" '
        'vlan="10"/><vm name="a" type="container"><if id="1" net="Ext"/></vm></vnuml>', "x.xml")
    layout = build_layout(sc, parse_deploy_info({"key": "kv1234"}, "x"))
    ext = layout.nets["Ext"]
    assert ext.external_link == "lo.10" and "lo.10" in layout.links()
    refused = preflight(layout, Path("/nonexistent"), allow_external=False,
                        allow_host_exec=False)
    assert any("needs allow_external" in p for p in refused)
    if not vlan_supported():
        problems = preflight(layout, Path("/nonexistent"), allow_external=True,
                             allow_host_exec=False)
        assert any("vlan=10 on lo needs the kernel's 8021q" in p for p in problems), problems
