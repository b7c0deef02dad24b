"""The host agent against the real kernel: deploy, exec, release, crashes, bad input.

Root only. Addresses come from 198.18.0.0/15; traffic stays on bridges these tests create.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from agent_helpers import agent_exec_command, scenario_uid, unique_key, unique_mgmt_pair

UML_KERNEL = "/usr/bin/linux"
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (namespaces, bridges, mounts)")
needs_uml = pytest.mark.skipif(not os.access(UML_KERNEL, os.X_OK),
                               reason=f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
pytestmark = [pytest.mark.root, needs_root]

FOUR_VMS = """<?xml version="1.0" encoding="UTF-8"?>
<vnuml>
  <global>
    <version>1.8</version>
    <simulation_name>{name}</simulation_name>
    <vm_mgmt type="none"/>
  </global>
  <net name="Lan0" mode="virtual_bridge"/>
  <net name="Core" mode="virtual_bridge" type="ppp"/>
  <net name="Lan2" mode="uml_switch"/>
  <vm name="h1" type="{leaf}">{leaf_fs}
    <if id="1" net="Lan0"><ipv4 mask="255.255.255.0">198.18.10.1</ipv4></if>
    <route type="ipv4" gw="198.18.10.254">default</route>
    <filetree root="/opt/ediv-ft-{name}" seq="files">conf</filetree>
  </vm>
  <vm name="r1" type="{router}">{router_fs}
    <if id="1" net="Lan0"><mac>02:00:5e:12:00:01</mac><ipv4>198.18.10.254/24</ipv4></if>
    <if id="2" net="Core"><ipv4 mask="30">198.18.11.1</ipv4></if>
    <route type="ipv4" gw="198.18.11.2">198.18.12.0/24</route>
    <forwarding type="ip"/>
    <filetree root="/opt/ediv-ft-{name}" seq="files">conf</filetree>
  </vm>
  <vm name="r2" type="{router}">{router_fs}
    <if id="1" net="Core"><ipv4>198.18.11.2/30</ipv4></if>
    <if id="2" net="Lan2"><ipv4>198.18.12.254/24</ipv4></if>
    <route type="ipv4" gw="198.18.11.1">198.18.10.0/24</route>
    <forwarding type="ip"/>
  </vm>
  <vm name="h2" type="{leaf}">{leaf_fs}
    <if id="1" net="Lan2"><ipv4>198.18.12.1/24</ipv4></if>
    <route type="ipv4" gw="198.18.12.254">default</route>
  </vm>
</vnuml>
"""
ADDRESSES = {"h1": ["198.18.10.1"], "r1": ["198.18.10.254", "198.18.11.1"],
             "r2": ["198.18.11.2", "198.18.12.254"], "h2": ["198.18.12.1"]}


def make_bundle(root: Path, xml: str, deploy: dict) -> Path:
    (root / "files" / "conf").mkdir(parents=True)
    (root / "files" / "conf" / "marker.txt").write_text("ediv filetree marker\n")
    (root / "scenario.xml").write_text(xml)
    (root / "deploy.json").write_text(json.dumps(deploy))
    return root


def four_vm_xml(name: str, router: str, leaf: str, image: Path | None) -> str:
    fs = f"\n    <filesystem type=\"cow\">{image}</filesystem><mem>64M</mem>" if image else ""
    return FOUR_VMS.format(name=name, router=router, leaf=leaf,
                           router_fs=fs if router == "uml" else "",
                           leaf_fs=fs if leaf == "uml" else "")


def add_ping_all(xml: str) -> str:
    """Every VM pings every other VM's addresses (sequence "pingall")."""
    for vm in ADDRESSES:
        targets = [a for other, addrs in ADDRESSES.items() if other != vm for a in addrs]
        execs = "".join(f'\n    <exec seq="pingall" type="verbatim">ping -c1 -W3 {t}</exec>'
                        for t in targets)
        xml = xml.replace(f'<vm name="{vm}" ', f'<vm name="{vm}" ', 1)
        head, sep, tail = xml.partition(f'<vm name="{vm}" ')
        body, end, rest = tail.partition("</vm>")
        xml = head + sep + body + execs + "\n  " + end + rest
    return xml


def check_four_vm_scenario(agent, snapshot, tmp_path: Path, key: str, router: str, leaf: str,
                           image: Path | None) -> None:
    before = snapshot(key)
    target_dir = Path(f"/opt/ediv-ft-{key}")
    assert not target_dir.exists()
    m_r1, m_h1 = unique_mgmt_pair()
    bundle = make_bundle(tmp_path / "bundle", add_ping_all(
        four_vm_xml(key, router, leaf, image)), {
            "scenario": key, "key": key, "mgmt": {"r1": m_r1, "h1": m_h1}})
    dep = agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 0, dep.events
    assert {e["vm"] for e in dep.of("vm") if e["state"] == "running"} == set(ADDRESSES)
    assert {e["net"] for e in dep.of("net")} == {"Lan0", "Core", "Lan2"}
    assert any("uml_switch" in e["message"] for e in dep.of("warning"))
    # a UML VM's second console is a pty of the host's devpts (the jail's own ptmx node)
    for v in dep.result["vms"]:
        if v["type"] == "uml":
            assert re.fullmatch(r"/dev/pts/\d+", v.get("console") or ""), v
            assert Path(v["console"]).exists(), v

    run = agent("exec", "pingall", "--key", key)
    assert run.rc == 0, [r for r in run.result.get("results", []) if r["exit_code"]]
    pings = run.result["results"]
    assert len(pings) == sum(len(a) for a in ADDRESSES.values()) * 3
    assert all(r["exit_code"] == 0 for r in pings)

    files = agent("exec", "files", "--key", key)
    assert files.rc == 0, files.events
    assert {e["vm"] for e in files.of("filetree")} == {"h1", "r1"}
    # the filetree is inside the VMs, not on the host
    (tmp_path / "files2").mkdir()
    check = tmp_path / "check.xml"
    check.write_text("unused")
    cat = agent_exec_command(agent, key, ["h1", "r1"], f"cat {target_dir}/marker.txt")
    assert all(out == "ediv filetree marker\n" for out in cat.values()), cat
    assert not target_dir.exists()
    # hostname, management link and the MAC from the scenario
    names = agent_exec_command(agent, key, ["r1"], "hostname; cat /sys/class/net/eth1/address")
    assert names["r1"].split() == ["r1", "02:00:5e:12:00:01"]
    # console: the argument vector reaches the VM intact, the exit status comes back
    for vm in ("h1", "r1"):
        con = subprocess.run(agent.argv("console", "--key", key, vm, "--", "sh", "-c",
                                        'echo "a  b"; exit 3'),
                             capture_output=True, text=True, timeout=120, check=False)
        assert (con.returncode, con.stdout) == (3, "a  b\n"), (vm, con.stderr)
    # exec --vm: one VM only (VNUML's -M)
    one = agent("exec", "pingall", "--key", key, "--vm", "h1")
    assert one.rc == 0 and {r["vm"] for r in one.result["results"]} == {"h1"}, one.events
    assert agent("exec", "pingall", "--key", key, "--vm", "nope").rc == 1
    mg = subprocess.run(["ping", "-c1", "-W3", m_r1["vm"].split("/")[0]], capture_output=True,
                        check=False)
    assert mg.returncode == 0, mg.stdout

    status = agent("status", "--key", key)
    assert [s["state"] for s in status.result["scenarios"]] == ["deployed"]
    assert all(v["state"] == "running" for v in status.result["scenarios"][0]["vms"])

    rel = agent("release", "--key", key)
    assert rel.rc == 0, rel.events
    assert snapshot(key) == before
    assert not (agent.state / key).exists()
    again = agent("release", "--key", key)  # idempotent
    assert again.rc == 0 and again.result["released"][0]["existed"] is False


def test_four_containers_three_nets_ping_filetree_release(agent, snapshot, tmp_path):
    check_four_vm_scenario(agent, snapshot, tmp_path, unique_key("ac"), "container",
                           "container", None)


@needs_uml
@pytest.mark.slow
def test_two_uml_routers_two_containers(agent, snapshot, tmp_path, rootfs_image):
    digest = subprocess.run(["md5sum", str(rootfs_image)], capture_output=True, text=True,
                            check=True).stdout
    check_four_vm_scenario(agent, snapshot, tmp_path, unique_key("au"), "uml", "container",
                           rootfs_image)
    # copy-on-write: the backing image is untouched
    assert subprocess.run(["md5sum", str(rootfs_image)], capture_output=True, text=True,
                          check=True).stdout == digest


def test_agent_killed_half_way_then_release_leaves_nothing(agent, snapshot, tmp_path):
    key = unique_key("ki")
    before = snapshot(key)
    vms = "".join(f'<vm name="v{i}" type="container"><if id="1" net="N">'
                  f"<ipv4>198.18.20.{i + 1}/24</ipv4></if></vm>\n" for i in range(40))
    xml = (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
           f'</global><net name="N" mode="virtual_bridge"/>{vms}</vnuml>')
    bundle = make_bundle(tmp_path / "b", xml, {"scenario": key, "key": key})
    p = subprocess.Popen(agent.argv("deploy", "--bundle", str(bundle)), stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    booting = 0
    for line in p.stdout:
        ev = json.loads(line)
        if ev.get("event") == "vm" and ev.get("state") == "booting":
            booting += 1
            if booting == 20:  # processes started, others not yet, nobody waited for
                os.kill(p.pid, signal.SIGKILL)
                break
    p.wait()
    p.stdout.close()
    assert p.returncode == -signal.SIGKILL
    assert snapshot(key) != before  # something was half-built
    st = agent("status", "--key", key)
    assert st.result["scenarios"][0]["state"] == "incomplete"
    rel = agent("release", "--key", key)
    assert rel.rc == 0, rel.events
    assert snapshot(key) == before
    assert not (agent.state / key).exists()


def test_sigterm_half_way_rolls_back_by_itself(agent, snapshot, tmp_path):
    key = unique_key("te")
    before = snapshot(key)
    vms = "".join(f'<vm name="v{i}" type="container"><if id="1" net="N">'
                  f"<ipv4>198.18.21.{i + 1}/24</ipv4></if></vm>\n" for i in range(40))
    xml = (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
           f'</global><net name="N" mode="virtual_bridge"/>{vms}</vnuml>')
    bundle = make_bundle(tmp_path / "b", xml, {"scenario": key, "key": key})
    p = subprocess.Popen(agent.argv("deploy", "--bundle", str(bundle)), stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    events = []
    for line in p.stdout:
        events.append(json.loads(line))
        if events[-1].get("event") == "vm":
            os.kill(p.pid, signal.SIGTERM)
            break
    events += [json.loads(line) for line in p.stdout]
    p.wait()
    p.stdout.close()
    assert p.returncode == 1
    assert events[-1]["event"] == "error" and "SIGTERM" in events[-1]["message"]
    assert any(e["event"] == "rollback" for e in events)
    assert snapshot(key) == before
    assert not (agent.state / key).exists()


def test_exec_unknown_scenario_is_a_clear_error(agent):
    res = agent("exec", "x", "--key", unique_key("no"))
    assert res.rc == 1 and "not deployed" in res.result["message"]


# -- bad input: clear error, nothing half-built ---------------------------------------------
def _one_vm(key: str, vm: str, extra: str = "", net_attrs: str = "") -> str:
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            f'</global><net name="N" mode="virtual_bridge"{net_attrs}/>{vm}{extra}</vnuml>')


def _assert_refused(agent, snapshot, tmp_path, key, xml, deploy=None, *, expect: str):
    before = snapshot(key)
    bundle = make_bundle(tmp_path / f"b-{key}", xml, {"scenario": key, "key": key,
                                                      **(deploy or {})})
    res = agent("deploy", "--bundle", str(bundle))
    assert res.rc == 1, res.events
    assert res.result["event"] == "error" and expect in res.result["message"], res.result
    assert snapshot(key) == before
    assert not (agent.state / key).exists()


CONTAINER = ('<vm name="c" type="container"><if id="1" net="N"><ipv4>198.18.30.1/24</ipv4>'
             "</if></vm>")


def test_missing_uml_kernel_refused(agent, snapshot, tmp_path, rootfs_image):
    vm = (f'<vm name="u" type="uml"><filesystem type="cow">{rootfs_image}</filesystem>'
          "<kernel>/nonexistent/linux</kernel>"
          '<if id="1" net="N"><ipv4>198.18.30.2/24</ipv4></if></vm>')
    key = unique_key("bk")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, CONTAINER + vm),
                    expect="UML kernel /nonexistent/linux not found")


def test_kernel_outside_allowed_paths_refused(agent, snapshot, tmp_path, rootfs_image):
    vm = (f'<vm name="u" type="uml"><filesystem type="cow">{rootfs_image}</filesystem>'
          "<kernel>/bin/sh</kernel><if id=\"1\" net=\"N\"/></vm>")
    key = unique_key("ka")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, vm),
                    expect="UML kernel /bin/sh is not in the agent's uml_kernel_paths")


def test_missing_image_refused(agent, snapshot, tmp_path):
    # inside the allowed image roots (the session's temp dirs), so the refusal is "not found"
    missing = tmp_path / "nonexistent-root.img"
    vm = (f'<vm name="u" type="uml"><filesystem type="cow">{missing}</filesystem>'
          '<if id="1" net="N"/></vm>')
    key = unique_key("bi")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, CONTAINER + vm),
                    expect=f"filesystem image {missing} not found")


def test_interface_id_clash_refused(agent, snapshot, tmp_path):
    vm = ('<vm name="c" type="container"><if id="1" net="N"/><if id="1" net="N"/></vm>')
    key = unique_key("cl")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, vm),
                    expect="interface name clash: eth1")


def test_existing_host_interface_clash_refused(agent, snapshot, tmp_path):
    # a link with the name the scenario's bridge would get already exists
    key = unique_key("c2")
    subprocess.run(["ip", "link", "add", f"eb{key}.0", "type", "bridge"], check=True)
    try:
        _assert_refused_keep(agent, tmp_path, key)
    finally:
        subprocess.run(["ip", "link", "del", f"eb{key}.0"], check=False)


def _assert_refused_keep(agent, tmp_path, key):
    bundle = make_bundle(tmp_path / "b", _one_vm(key, CONTAINER), {"scenario": key, "key": key})
    res = agent("deploy", "--bundle", str(bundle))
    assert res.rc == 1
    assert f"interface name clash: eb{key}.0 already exists" in res.result["message"]
    assert not (agent.state / key).exists()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert f"ev{key}" not in links and f"ediv-{key}" not in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_vni_used_by_another_scenario_refused(agent, snapshot, tmp_path):
    # peers=[]: no fdb entry, so nothing is ever sent to the underlay
    import secrets

    vni = 100000 + secrets.randbelow(10**6)
    seg = {"segments": [{"net": "N", "kind": "vxlan", "id": vni, "local": "198.18.0.2",
                         "peers": []}]}
    ka, kb = unique_key("va"), unique_key("vb")
    first = make_bundle(tmp_path / "first", _one_vm(ka, CONTAINER),
                        {"scenario": ka, "key": ka, **seg})
    res = agent("deploy", "--bundle", str(first))
    assert res.rc == 0, res.events
    assert any(e.get("segment") == "vxlan" for e in res.of("net"))
    _assert_refused(agent, snapshot, tmp_path, kb, _one_vm(kb, CONTAINER), seg,
                    expect=f"VNI {vni} is already used")


def test_host_exec_not_allowed_refused(agent, snapshot, tmp_path):
    host = '<host><exec seq="s" type="verbatim">touch /tmp/ediv-should-not-exist</exec></host>'
    key = unique_key("he")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, CONTAINER, host),
                    expect="allow_host_exec = false")
    assert not Path("/tmp/ediv-should-not-exist").exists()


def test_vlan_segment_without_8021q_refused(agent, snapshot, tmp_path):
    from ediv.agent.network import vlan_supported

    if vlan_supported():
        pytest.skip("this kernel has 802.1q; the refusal path needs a kernel without it")
    seg = {"segments": [{"net": "N", "kind": "vlan", "id": 101, "dev": "lo"}]}
    key = unique_key("vl")
    _assert_refused(agent, snapshot, tmp_path, key, _one_vm(key, CONTAINER), seg,
                    expect="8021q")


def test_malformed_xml_refused(agent, snapshot, tmp_path):
    key = unique_key("bx")
    _assert_refused(agent, snapshot, tmp_path, key, "<vnuml><global>", expect="scenario.xml")


def test_failure_half_way_rolls_back(agent, snapshot, tmp_path):
    """A route whose gateway is on no interface fails inside the VM's namespace, after the
    bridges, namespaces and veths exist: the deploy rolls all of it back."""
    key = unique_key("rb")
    before = snapshot(key)
    vm = ('<vm name="c" type="container"><if id="1" net="N"><ipv4>198.18.33.1/24</ipv4></if>'
          '<route type="ipv4" gw="198.18.99.1">198.18.34.0/24</route></vm>')
    bundle = make_bundle(tmp_path / "b", _one_vm(key, CONTAINER.replace('"c"', '"c0"') + vm),
                         {"scenario": key, "key": key})
    res = agent("deploy", "--bundle", str(bundle))
    assert res.rc == 1
    assert res.of("net") and res.of("rollback")
    assert "vm c: network configuration failed" in res.result["message"]
    assert snapshot(key) == before
    assert not (agent.state / key).exists()


def test_tar_bundle_on_stdin(agent, snapshot, tmp_path):
    import io
    import tarfile

    key = unique_key("ta")
    before = snapshot(key)
    bundle = make_bundle(tmp_path / "b", _one_vm(key, CONTAINER), {"scenario": key, "key": key})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(bundle, arcname=".")
    res = agent("deploy", stdin=buf.getvalue())
    assert res.rc == 0, res.events
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


# -- root filesystems -------------------------------------------------------------------------
@pytest.fixture
def busybox_tree(tmp_path) -> Path:
    from ediv.agent.rootfs import populate_busybox_tree

    return populate_busybox_tree(tmp_path / "bbroot")


def test_container_on_a_busybox_root_directory(agent, snapshot, tmp_path, busybox_tree):
    key = unique_key("bb")
    before = snapshot(key)
    vm = (f'<vm name="c" type="container"><filesystem type="hostfs">{busybox_tree}'
          '</filesystem><if id="1" net="N"><ipv4>198.18.31.1/24</ipv4></if>'
          '<exec seq="s" type="verbatim">readlink /bin/sh; echo new &gt; /etc/motd</exec></vm>')
    bundle = make_bundle(tmp_path / "b", _one_vm(key, vm), {"scenario": key, "key": key})
    assert agent("deploy", "--bundle", str(bundle)).rc == 0
    res = agent("exec", "s", "--key", key)
    assert res.rc == 0 and res.result["results"][0]["output"] == "/bin/busybox\n"
    assert not (busybox_tree / "etc" / "motd").exists()  # writes land in the overlay
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


@needs_uml
@pytest.mark.slow
def test_uml_direct_and_hostfs_roots(agent, snapshot, tmp_path, rootfs_image, busybox_tree):
    import shutil

    key = unique_key("ud")
    before = snapshot(key)
    image = tmp_path / "direct.img"
    shutil.copy(rootfs_image, image)
    # UML runs as the scenario's uid: the VM writes what that uid may write (test's own files)
    uid = scenario_uid(key)
    os.chown(image, uid, uid)
    for p in [busybox_tree, *busybox_tree.rglob("*")]:
        os.lchown(p, uid, uid)
    vms = (f'<vm name="d" type="uml"><filesystem type="direct">{image}</filesystem>'
           '<if id="1" net="N"><ipv4>198.18.32.1/24</ipv4></if>'
           '<exec seq="s" type="verbatim">echo direct &gt; /root/mark; ping -c1 -W3 198.18.32.2'
           "</exec></vm>"
           f'<vm name="h" type="uml"><filesystem type="hostfs">{busybox_tree}</filesystem>'
           '<if id="1" net="N"><ipv4>198.18.32.2/24</ipv4></if>'
           '<exec seq="s" type="verbatim">echo hostfs &gt; /root/mark</exec></vm>')
    bundle = make_bundle(tmp_path / "b", _one_vm(key, vms), {"scenario": key, "key": key})
    dep = agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 0, dep.events
    res = agent("exec", "s", "--key", key)
    assert res.rc == 0, res.events
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before
    # direct writes the image itself; hostfs writes the host directory (VNUML semantics)
    assert (busybox_tree / "root" / "mark").read_text() == "hostfs\n"
    dump = subprocess.run(["debugfs", "-R", "cat /root/mark", str(image)], capture_output=True,
                          text=True, check=False)
    assert dump.stdout == "direct\n"
