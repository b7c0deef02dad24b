"""The distributed controller on a real 3-host testbed: namespaces, sshd, agents, VXLAN.

Everything here runs as root: each test deploys through the real `ediv` command line,
checks what the user sees, and asserts that release leaves nothing on any host or in the
state store's pools.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from html import escape
from pathlib import Path

import pytest

from ediv import testbed
from ediv.state import StateStore
from tests.conftest import EDIV, EXAMPLES, TESTBED, state_entries

pytestmark = [*TESTBED, pytest.mark.slow]



def run(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([*EDIV, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(
            f"ediv {' '.join(args)} exited {r.returncode}:\n{r.stderr}\n{r.stdout}")
    return r


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_ids(bed) -> set[str]:
    """The agents' ids of the testbed's hosts (ediv.agent.naming.host_id, seen from outside):
    other testbeds on this machine may come and go while these tests run."""
    from ediv.agent.naming import b36

    return {b36(os.stat(f"/run/netns/{h.netns}").st_ino % 36**5) for h in bed.hosts}


def ours(bed, names: set[str]) -> set[str]:
    ids = host_ids(bed)
    return {n for n in names if n.startswith(bed.prefix) or
            (n.startswith("ediv-") and n.split("-")[2:3] and n.split("-")[2] in ids)}


def host_links(ns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", ns, "-br", "link"], capture_output=True, text=True).stdout
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def agent_processes(ids: set[str] | None = None) -> list[int]:
    """VM processes (the agent marks them EDIV_HOST_KEY=<key>@<host id>), of ``ids`` only."""
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            for var in env.read_bytes().split(b"\0"):
                if var.startswith(b"EDIV_HOST_KEY=") and (
                        ids is None or var.decode().rsplit("@", 1)[-1] in ids):
                    pids.append(int(env.parent.name))
        except (OSError, UnicodeDecodeError):
            continue
    return pids


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb")
    tb = testbed.up(3, d / "bed", progress=lambda _m: None,
                    image_paths=[tmp_path_factory.getbasetemp()])
    try:
        yield tb
    finally:
        testbed.down(d / "bed", progress=lambda _m: None)
        assert not [n for n in netns_list() if n.startswith(tb.prefix)]


@pytest.fixture
def env(bed, tmp_path):
    """Per test: a fresh state store; afterwards assert the testbed is as clean as new."""
    state = tmp_path / "state.db"
    baseline_ns = ours(bed, netns_list())
    baseline_procs = set(agent_processes(host_ids(bed)))
    yield {"cluster": str(bed.cluster_conf), "state": str(state), "bed": bed}
    try:
        assert_clean(bed, state, baseline_ns, baseline_procs)
    except AssertionError:
        # leave the testbed usable for the next test, then report what was left
        run("cleanup", "-c", str(bed.cluster_conf), "--state", str(state), "--yes", check=False)
        raise


def assert_clean(bed, state: Path, baseline_ns: set[str], baseline_procs: set[int]) -> None:
    assert ours(bed, netns_list()) == baseline_ns, "a namespace was left behind"
    for host in bed.hosts:
        assert host_links(host.netns) == {"lo", "eth0"}, f"links left on {host.name}"
        leftovers = state_entries(host.state_dir)
        assert leftovers == [], f"agent state left on {host.name}: {leftovers}"
    left = set(agent_processes(host_ids(bed))) - baseline_procs
    assert left == set(), "VM processes left running"
    if state.exists():
        store = StateStore(state)
        try:
            assert store.segments() == [], "segments still allocated"
            assert store.scenarios() == [], "scenarios still recorded"
        finally:
            store.close()


def deploy(env, scenario: Path | str, *extra: str) -> dict:
    r = run("deploy", str(scenario), "-c", env["cluster"], "--state", env["state"], "--json",
            *extra)
    return json.loads(r.stdout)


def release(env, name: str) -> None:
    run("release", name, "--state", env["state"])


def exec_json(env, name: str, seq: str) -> list[dict]:
    r = run("exec", name, seq, "--state", env["state"], "--json", check=False)
    return json.loads(r.stdout)


def full_mesh_scenario(path: Path, name: str, n_vms: int, sites: int, types: list[str],
                       rootfs: Path | None = None) -> Path:
    """Routers joined by a backbone, hosts on per-site LANs; sequence "mesh" makes every VM
    ping every other VM's address."""
    addrs: dict[str, str] = {}
    vms = []
    per_site = (n_vms - sites) // sites
    for k in range(1, sites + 1):
        addrs[f"r{k}"] = f"198.18.{k}.1"
    for k in range(1, sites + 1):
        for i in range(per_site):
            addrs[f"s{k}h{i}"] = f"198.18.{k}.{10 + i}"
    extra = n_vms - len(addrs)
    for i in range(extra):
        addrs[f"s1x{i}"] = f"198.18.1.{200 + i}"
    for vm_index, (vm, addr) in enumerate(addrs.items()):
        others = " ".join(a for v, a in addrs.items() if v != vm)
        mesh = escape(f"f=0; for a in {others}; do ping -c 1 -W 3 -q $a >/dev/null 2>&1 || "
                      f"{{ echo unreachable $a; f=1; }}; done; exit $f", quote=False)
        vtype = types[vm_index % len(types)]
        disk = (f'<filesystem type="cow">{rootfs}</filesystem><mem>64M</mem>'
                if vtype == "uml" else "")
        if vm.startswith("r"):
            k = int(vm[1:])
            routes = "".join(
                f'<route type="ipv4" gw="198.18.100.{j}">198.18.{j}.0/24</route>'
                for j in range(1, sites + 1) if j != k)
            vms.append(
                f'<vm name="{vm}" type="{vtype}">{disk}'
                f'<if id="1" net="Backbone"><ipv4 mask="255.255.255.0">198.18.100.{k}</ipv4></if>'
                f'<if id="2" net="Site{k}"><ipv4 mask="255.255.255.0">{addr}</ipv4></if>'
                f'{routes}<forwarding type="ip"/>'
                f'<exec seq="mesh" type="verbatim">{mesh}</exec></vm>')
        else:
            k = int(re.match(r"s(\d+)", vm).group(1))
            vms.append(
                f'<vm name="{vm}" type="{vtype}">{disk}'
                f'<if id="1" net="Site{k}"><ipv4 mask="255.255.255.0">{addr}</ipv4></if>'
                f'<route type="ipv4" gw="198.18.{k}.1">default</route>'
                f'<exec seq="mesh" type="verbatim">{mesh}</exec></vm>')
    nets = ['<net name="Backbone" mode="virtual_bridge"/>'] + [
        f'<net name="Site{k}" mode="virtual_bridge"/>' for k in range(1, sites + 1)]
    path.write_text(
        f"<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>"
        f'<automac/><vm_mgmt type="none"/></global>{"".join(nets)}{"".join(vms)}</vnuml>')
    return path


def assert_mesh(env, name: str, n_vms: int) -> None:
    results = exec_json(env, name, "mesh")
    assert len(results) == n_vms
    bad = [f"{r['vm']}@{r['host']}: {r['output'].strip()}" for r in results if r["exit_code"]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("algorithm", ["RoundRobin", "WeightedRoundRobin"])
def test_simple6_deploy_exec_release(env, algorithm):
    extra = ["--load", "h1=0.9", "--load", "h2=0.1", "--load", "h3=0.1"]
    extra = extra if algorithm == "WeightedRoundRobin" else []
    status = deploy(env, EXAMPLES / "simple6.xml", "-a", algorithm, *extra)
    assert status["name"] == "simple6" and status["state"] == "deployed"
    counts = [sum(1 for v in status["vms"] if v["host"] == h) for h in ("h1", "h2", "h3")]
    # EDIV: equal shares when idle; with h1 busy (0.9 against 0.1) it gets the fewest
    assert counts == ([2, 2, 2] if algorithm == "RoundRobin" else [1, 3, 2])
    assert {s["net"] for s in status["segments"]} >= {"Net0", "Net1"}
    results = exec_json(env, "simple6", "check")
    assert [r["exit_code"] for r in results] == [0] * 6, results
    assert any("198.18.2.10" in r["output"] for r in results)
    located = json.loads(run("locate", "--state", env["state"], "--json").stdout)
    assert {(x["vm"], x["host"]) for x in located} == {
        (v["name"], v["host"]) for v in status["vms"]}
    segs = json.loads(run("segments", "--state", env["state"], "--json").stdout)
    assert sorted(s["id"] for s in segs) == sorted(s["id"] for s in status["segments"])
    assert json.loads(run("status", "simple6", "--state", env["state"], "--json").stdout) == status
    out = run("console", "simple6", "h3", "--state", env["state"], "--", "ip", "-4", "-br", "addr")
    assert "198.18.2.10" in out.stdout
    release(env, "simple6")


def test_one_vm_stopped_started_rebooted_and_reset(env):
    """`ediv vm`: one VM changes state on its host; the others and the scenario carry on."""
    status = deploy(env, EXAMPLES / "simple6.xml")
    h3_host = next(v["host"] for v in status["vms"] if v["name"] == "h3")

    def vm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("vm", *args, "--state", env["state"], check=check)

    stopped = json.loads(vm("stop", "simple6", "h3", "--json").stdout)
    assert stopped == {"scenario": "simple6", "vm": "h3", "host": h3_host, "action": "stop",
                       "previous": "running", "state": "stopped"}
    now = json.loads(run("status", "simple6", "--state", env["state"], "--json").stdout)
    assert {v["name"]: v["state"] for v in now["vms"]} == {
        "h1": "running", "h2": "running", "r1": "running", "r2": "running", "h3": "stopped",
        "h4": "running"}
    results = exec_json(env, "simple6", "check")
    # one entry per VM: the stopped one says so, the others (on its host too) ran
    assert len(results) == 6 and [r for r in results if r["vm"] == "h3"] == [
        {"vm": "h3", "host": h3_host, "exit_code": None, "output": "",
         "error": "h3 is not running; start it first"}], results
    assert all(r["exit_code"] is not None and "error" not in r
               for r in results if r["vm"] != "h3"), results
    wrong = vm("reboot", "simple6", "h3", check=False)
    assert wrong.returncode == 4 and "h3 is stopped" in wrong.stderr
    assert "already stopped" in vm("stop", "simple6", "h3").stdout
    assert vm("start", "simple6", "h3").stdout.strip() == \
        f"simple6/h3 on {h3_host}: start: stopped -> running"
    assert [r["exit_code"] for r in exec_json(env, "simple6", "check")] == [0] * 6
    for action, target in (("reboot", "r2"), ("reset", "r1")):
        assert json.loads(vm(action, "simple6", target, "--json").stdout)["state"] == "running"
    # the routers' addresses, routes and forwarding are back: h1 reaches h3 and h4 again
    assert [r["exit_code"] for r in exec_json(env, "simple6", "check")] == [0] * 6
    # pause freezes h3 (h2's ping of it fails), resume lets it run on
    paused = json.loads(vm("pause", "simple6", "h3", "--json").stdout)
    assert (paused["previous"], paused["state"]) == ("running", "paused")
    now = json.loads(run("status", "simple6", "--state", env["state"], "--json").stdout)
    assert {v["name"]: v["state"] for v in now["vms"]}["h3"] == "paused"
    h2 = run("exec", "simple6", "check", "--vm", "h2", "--state", env["state"], "--json",
             check=False)
    assert [r["exit_code"] for r in json.loads(h2.stdout)] != [0]
    resumed = json.loads(vm("resume", "simple6", "h3", "--json").stdout)
    assert (resumed["previous"], resumed["state"]) == ("paused", "running")
    assert [r["exit_code"] for r in exec_json(env, "simple6", "check")] == [0] * 6
    unknown = vm("stop", "simple6", "nope", check=False)
    assert unknown.returncode == 1 and "no VM named 'nope'" in unknown.stderr
    release(env, "simple6")
    gone = vm("start", "simple6", "h3", check=False)
    assert gone.returncode == 1 and "no scenario named 'simple6'" in gone.stderr


def test_second_deploy_of_same_name_refused_and_two_scenarios_coexist(env, tmp_path):
    deploy(env, EXAMPLES / "simple6.xml")
    again = run("deploy", str(EXAMPLES / "simple6.xml"), "-c", env["cluster"], "--state",
                env["state"], check=False)
    assert again.returncode == 1 and "already deployed" in again.stderr
    twin = tmp_path / "twin.xml"
    twin.write_text((EXAMPLES / "simple6.xml").read_text().replace(
        "<simulation_name>simple6<", "<simulation_name>twin6<"))
    deploy(env, twin, "-a", "MinCut")
    for name in ("simple6", "twin6"):
        assert [r["exit_code"] for r in exec_json(env, name, "check")] == [0] * 6
    segs = json.loads(run("segments", "--state", env["state"], "--json").stdout)
    ids = [s["id"] for s in segs]
    assert len(ids) == len(set(ids))
    release(env, "simple6")
    assert [r["exit_code"] for r in exec_json(env, "twin6", "check")] == [0] * 6
    release(env, "twin6")


@pytest.mark.parametrize("algorithm", ["RoundRobin", "WeightedRoundRobin"])
def test_51_vms_full_mesh(env, tmp_path, algorithm):
    sc = full_mesh_scenario(tmp_path / "mesh51.xml", "mesh51", 51, 3, ["container"])
    extra = ["--load", "h1=0.9", "--load", "h2=0.1", "--load", "h3=0.1"]
    status = deploy(env, sc, "-a", algorithm, *(extra if algorithm != "RoundRobin" else []))
    counts = [sum(1 for v in status["vms"] if v["host"] == h) for h in ("h1", "h2", "h3")]
    if algorithm == "RoundRobin":
        assert counts == [17, 17, 17]
    else:
        assert counts == [8, 22, 21]  # EDIV's rule for loads 0.9/0.1/0.1: test_partition_weighted
    assert_mesh(env, "mesh51", 51)
    release(env, "mesh51")


@pytest.mark.skipif(not Path("/usr/bin/linux").exists(), reason="user-mode-linux not installed")
def test_51_vms_uml_and_containers_full_mesh(env, tmp_path):
    from ediv.agent.rootfs import build_busybox_rootfs

    rootfs = build_busybox_rootfs(tmp_path / "rootfs.img")
    before = rootfs.read_bytes()
    types = ["uml", "container", "container", "container", "container"]  # UML on every host
    sc = full_mesh_scenario(tmp_path / "mix51.xml", "mix51", 51, 3, types, rootfs)
    status = deploy(env, sc, "-a", "RoundRobin")
    kinds = {v["type"] for v in status["vms"]}
    assert kinds == {"uml", "container"}
    assert {v["host"] for v in status["vms"] if v["type"] == "uml"} == {"h1", "h2", "h3"}
    assert_mesh(env, "mix51", 51)
    release(env, "mix51")
    assert rootfs.read_bytes() == before  # copy-on-write: the backing image is untouched


def test_host_with_sshd_stopped_is_refused_before_building(env):
    bed = env["bed"]
    victim = bed.hosts[1]
    pid = int((Path(bed.dir) / victim.name / "sshd.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # the listener stays but never answers: worse than refused
    try:
        r = run("deploy", str(EXAMPLES / "simple6.xml"), "-c", env["cluster"], "--state",
                env["state"], check=False, timeout=180)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 1
    assert "h2" in r.stderr and "nothing was built" in r.stderr
    assert "Traceback" not in r.stderr


def test_agent_failure_half_way_rolls_back_every_host(env, tmp_path):
    # VM 2 (h2 under RoundRobin) names a UML kernel that does not exist: h2's agent refuses
    # while h1 and h3 build; the controller must release them.
    text = (EXAMPLES / "simple6.xml").read_text().replace(
        '<vm name="h2">',
        '<vm name="h2" type="uml"><filesystem type="cow">/nonexistent/rootfs</filesystem>'
        '<kernel>/nonexistent/linux</kernel>', 1)
    bad = tmp_path / "bad.xml"
    bad.write_text(text.replace("<simulation_name>simple6<", "<simulation_name>broken6<"))
    r = run("deploy", str(bad), "-c", env["cluster"], "--state", env["state"], "-a",
            "RoundRobin", check=False)
    assert r.returncode == 1
    assert "h2" in r.stderr and "rolled back" in r.stderr


def test_controller_killed_mid_deploy_then_release(env, tmp_path):
    sc = full_mesh_scenario(tmp_path / "kill.xml", "killme", 30, 3, ["container"])
    proc = subprocess.Popen([*EDIV, "deploy", str(sc), "-c", env["cluster"], "--state",
                             env["state"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "running" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1)  # let the orphaned remote agents finish or die
    status = json.loads(run("status", "killme", "--state", env["state"], "--json").stdout)
    # its owner (the killed controller) is gone: not "deploying" forever
    assert status["state"] == "interrupted"
    assert "interrupted" in status["error"] and "ediv release killme" in status["error"]
    release(env, "killme")


def test_controller_killed_then_cleanup(env, tmp_path):
    sc = full_mesh_scenario(tmp_path / "kill2.xml", "killme2", 12, 3, ["container"])
    proc = subprocess.Popen([*EDIV, "deploy", str(sc), "-c", env["cluster"], "--state",
                             env["state"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:
        if "running" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1)
    r = run("cleanup", "-c", env["cluster"], "--state", env["state"], "--yes")
    assert "killme2" in r.stdout


def test_wrong_host_key_is_refused(env, tmp_path):
    bed = env["bed"]
    known = Path(bed.dir) / "known_hosts"
    original = known.read_text()
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    fake = impostor.with_suffix(".pub").read_text().split()
    lines = original.splitlines()
    lines[0] = f"{lines[0].split()[0]} {fake[0]} {fake[1]}"
    known.write_text("\n".join(lines) + "\n")
    try:
        r = run("deploy", str(EXAMPLES / "simple6.xml"), "-c", env["cluster"], "--state",
                env["state"], check=False)
    finally:
        known.write_text(original)
    assert r.returncode == 1
    assert "does NOT match" in r.stderr and "h1" in r.stderr


def test_ediv_ctl_flags_file_names_exec_vm_and_console_quoting(env):
    """EDIV users' scripts: ediv-ctl -t / -x / -d with the scenario file; ``ediv`` commands
    that take NAME take the file too; exec --vm limits the run (VNUML -M); console keeps the
    command's words and exit status."""
    scenario = str(EXAMPLES / "simple6.xml")
    ctl = [sys.executable, "-m", "ediv.client.ctl"]

    def ediv_ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*ctl, *args, "--state", env["state"]], capture_output=True,
                              text=True, timeout=600, check=False)

    up = ediv_ctl("-t", "-s", scenario, "-c", env["cluster"])
    assert up.returncode == 0, up.stderr
    try:
        status = json.loads(run("status", scenario, "--state", env["state"], "--json").stdout)
        assert status["name"] == "simple6" and status["state"] == "deployed"
        con = run("console", scenario, "h3", "--state", env["state"], "--",
                  "sh", "-c", 'echo "a  b"; exit 3', check=False)
        assert (con.returncode, con.stdout) == (3, "a  b\n"), con.stderr
        only = json.loads(run("exec", scenario, "check", "--vm", "h3", "--vm", "r1",
                              "--state", env["state"], "--json").stdout)
        assert sorted(r["vm"] for r in only) == ["h3", "r1"]
        assert all(r["exit_code"] == 0 for r in only), only
        wrong = run("exec", "simple6", "check", "--vm", "nope", "--state", env["state"],
                    check=False)
        assert wrong.returncode == 1 and "has no VM 'nope'" in wrong.stderr
        x = ediv_ctl("-x", "check", "-s", scenario, "-M", "h1")
        assert x.returncode == 0, x.stderr
    finally:
        down = ediv_ctl("-d", "-s", scenario)
    assert down.returncode == 0 and "simple6: released" in down.stdout, down.stderr


def test_vm_defaults_route_filetree_user_keys_and_host_mapping_reach_every_vm(env, tmp_path):
    """A tutorial-like <vm_defaults> with a route, a filetree and a user (with its key), a
    global <ssh_key> and <host_mapping/>: after `exec start`, VMs on two different hosts
    have the route, the file, the user, the keys and each other's names."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "motd").write_text("from vm_defaults\n")
    root_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkaXZyb290a2V5ZWRpdnJvb3RrZXllZGl2 root@lab"
    user_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkaXZ1c2Vya2V5ZWRpdnVzZXJrZXllZGl2 lab@lab"
    (tmp_path / "root.pub").write_text(root_key + "\n")
    (tmp_path / "lab.pub").write_text("# the lab user\n" + user_key + "\n")
    sc = tmp_path / "tut.xml"
    show = ("ip -4 route show 198.18.99.0/24; cat /etc/lab/motd; id lab; "
            "cat /root/.ssh/authorized_keys /home/lab/.ssh/authorized_keys; "
            "grep -E ' (a|b)$' /etc/hosts")
    sc.write_text(
        '<vnuml><global><version>1.8</version><simulation_name>tutdef</simulation_name>'
        '<ssh_key>root.pub</ssh_key>'
        '<vm_mgmt type="none"><host_mapping/></vm_mgmt><vm_defaults>'
        '<route type="ipv4" gw="198.18.7.1">198.18.99.0/24</route>'
        '<user username="lab"><group>wheel</group><ssh_key>lab.pub</ssh_key></user>'
        '<filetree seq="start" root="/etc/lab">conf</filetree>'
        '</vm_defaults></global><net name="Lan" mode="virtual_bridge"/>'
        + "".join(f'<vm name="{v}" type="container"><if id="1" net="Lan">'
                  f'<ipv4 mask="255.255.255.0">198.18.7.{i}</ipv4></if>'
                  f'<exec seq="show" type="verbatim">{show}</exec></vm>'
                  for i, v in ((1, "a"), (2, "b")))
        + "</vnuml>")
    status = deploy(env, sc)
    assert len({v["host"] for v in status["vms"]}) == 2
    try:
        exec_json(env, "tutdef", "start")  # filetrees only: copies, no commands
        shown = exec_json(env, "tutdef", "show")
        assert sorted(r["vm"] for r in shown) == ["a", "b"]
        for r in shown:
            out = r["output"]
            assert r["exit_code"] == 0, r
            assert "198.18.99.0/24 via 198.18.7.1" in out, r
            assert "from vm_defaults" in out, r
            assert "(lab)" in out and "(wheel)" in out, r
            assert root_key in out and user_key in out, r
            assert "198.18.7.1 a" in out and "198.18.7.2 b" in out, r
    finally:
        release(env, "tutdef")


@pytest.mark.skipif(not os.access("/usr/bin/linux", os.X_OK), reason="needs user-mode-linux")
def test_uml_ipv6_across_hosts(env, tmp_path):
    """Debian's UML kernel has IPv6 as a module: the boot disk loads it, and two UML VMs on
    different testbed hosts ping each other over IPv6 (a VXLAN segment between them);
    addresses from 2001:2::/48, the IPv6 benchmarking range (RFC 5180)."""
    from ediv.agent.rootfs import build_busybox_rootfs

    rootfs = build_busybox_rootfs(tmp_path / "rootfs.img")
    disk = f'<filesystem type="cow">{rootfs}</filesystem><mem>64M</mem>'
    sc = tmp_path / "v6.xml"
    sc.write_text(
        '<vnuml><global><version>1.8</version><simulation_name>umlv6</simulation_name>'
        '<vm_mgmt type="none"/></global><net name="Lan" mode="virtual_bridge"/>'
        + "".join(f'<vm name="{v}" type="uml">{disk}<if id="1" net="Lan">'
                  f'<ipv4>198.18.8.{i}/24</ipv4><ipv6>2001:2:0:8::{i}/64</ipv6></if>'
                  f'<exec seq="ping6" type="verbatim">ping -6 -c 2 -W 3 2001:2:0:8::{3 - i}'
                  f'</exec></vm>' for i, v in ((1, "u1"), (2, "u2")))
        + "</vnuml>")
    status = deploy(env, sc)
    try:
        assert len({v["host"] for v in status["vms"]}) == 2
        results = []
        for _ in range(5):  # duplicate address detection holds new addresses ~1-2 s
            results = exec_json(env, "umlv6", "ping6")
            if all(r["exit_code"] == 0 for r in results):
                break
            time.sleep(1)
        assert sorted(r["vm"] for r in results) == ["u1", "u2"]
        assert all(r["exit_code"] == 0 for r in results), results
    finally:
        release(env, "umlv6")
