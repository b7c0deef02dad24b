"""A scenario's whole life through WBEM, with real clients, on a real 3-host testbed.

pywbem discovers the profiles; pywbemcli defines the scenario (DefineSystem with a MOF
embedded instance) and deploys it (RequestStateChange 2); pywbem runs a command sequence
(ExecuteSequence) and follows the jobs; wbemcli releases it (cm RequestStateChange 3 over
HTTPS with a CA file); pywbem destroys the definition. Nothing may be left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ediv import testbed
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.server import serve
from tests.conftest import TESTBED, follow_job

pytestmark = [*TESTBED, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OPERATOR = ("otto", "o-pass")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _lines(*argv: str) -> set[str]:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns() -> set[str]:
    return _lines("ip", "netns", "list")


def links(namespace: str | None = None) -> set[str]:
    return _lines("ip", *(["-n", namespace] if namespace else []), "-br", "link")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A 3-host testbed and an ediv WBEM server (TLS, Basic auth) whose cluster it is.

    Other tests may run testbeds at the same time, so what must be gone at the end is
    checked by name: everything carrying this testbed's prefix."""
    base: Path = tmp_path_factory.mktemp("e2e")
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    handle = plugin = None
    prefix = None
    try:
        bed = testbed.up(3, base / "tb", progress=lambda _m: None,
                          image_paths=[tmp_path_factory.getbasetemp()])
        prefix = bed.prefix
        cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
        cfg.cluster_file = base / "tb" / "cluster.conf"
        cfg.schema_cache_dir = base / "cache"
        add_user(cfg.users_file, OPERATOR[0], Role.OPERATOR, OPERATOR[1])
        plugin = EnginePlugin()
        handle = serve(cfg, plugins=[plugin])
        yield handle, plugin, base, bed
    finally:
        if handle is not None:
            handle.stop()
        if plugin is not None and plugin.jobs is not None:
            plugin.jobs.wait_all(120)
        testbed.down(base / "tb", progress=lambda _m: None)
        os.environ.update(saved)
        if prefix:
            left = {n for n in netns() | links() if n.startswith(prefix)}
            assert not left, f"left behind: {left}"


def _conn(handle):
    import pywbem

    return pywbem.WBEMConnection(handle.url, OPERATOR, default_namespace="root/ediv",
                                 ca_certs=str(handle.config.cert_file), timeout=60)


_follow = follow_job


def _mof_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _pywbemcli(handle, base: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k not in (*_CA_ENV, "PYWBEMCLI_SERVER")}
    env["HOME"] = str(base)
    cmd = [str(exe), "-s", handle.url, "-u", OPERATOR[0], "-p", OPERATOR[1],
           "--ca-certs", str(handle.config.cert_file), "-d", "root/ediv", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=base)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _wbemcli(handle, base: Path, op: str, path: str, *args: str) -> str:
    exe = shutil.which("wbemcli")
    if exe is None:
        pytest.skip("sblim wbemcli is not installed (apt-get install sblim-wbemcli)")
    url = f"https://{OPERATOR[0]}:{OPERATOR[1]}@127.0.0.1:{handle.port}/{path}"
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}
    proc = subprocess.run([exe, op, "-cacert", str(handle.config.cert_file), url, *args],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "Exception" not in proc.stderr + proc.stdout, \
        proc.stderr + proc.stdout
    return proc.stdout


def test_profiles_are_discovered_with_pywbem(site):
    import pywbem

    handle, _plugin, _base, _bed = site
    server = pywbem.WBEMServer(_conn(handle))
    assert server.interop_ns == "interop" and server.brand == "ediv"
    (virt,) = server.get_selected_profiles("DMTF", "System Virtualization")
    hosts = server.get_central_instances(virt.path, "EDIV_HostSystem", "root/ediv")
    assert sorted(p.keybindings["Name"] for p in hosts) == ["h1", "h2", "h3"]
    (vs,) = server.get_selected_profiles("DMTF", "Virtual System")
    assert server.get_central_instances(vs.path, "EDIV_VirtualSystem", "root/ediv") == []


def test_scenario_lifecycle_through_wbem(site):
    import pywbem

    handle, plugin, base, bed = site
    conn = _conn(handle)
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    service_text = f'{service.classname}.' + ",".join(
        f'{k}="{v}"' for k, v in service.keybindings.items())

    # define with pywbemcli: the embedded instance as MOF text
    spec = (EXAMPLES / "simple6.xml").read_text()
    mof = f"instance of EDIV_ScenarioSettingData {{ ScenarioDefinition = {_mof_string(spec)}; }};"
    out = _pywbemcli(handle, base, "instance", "invokemethod", service_text, "DefineSystem",
                     "-p", f"SystemSettings={mof}")
    assert "ReturnValue=0" in out.replace(" ", "") and "simple6" in out
    scenario = pywbem.CIMInstanceName("EDIV_Scenario", {
        "CreationClassName": "EDIV_Scenario", "Name": "simple6"}, namespace="root/ediv")
    assert conn.GetInstance(scenario)["EnabledState"] == 3  # defined: Disabled
    assert len(conn.EnumerateInstances("EDIV_VirtualSystem")) == 6

    host_links = {h.netns: links(h.netns) for h in bed.hosts}

    # deploy with pywbemcli: RequestStateChange(2) starts a job
    out = _pywbemcli(handle, base, "instance", "invokemethod",
                     'EDIV_Scenario.CreationClassName="EDIV_Scenario",Name="simple6"',
                     "RequestStateChange", "-p", "RequestedState=2")
    assert "ReturnValue=4096" in out.replace(" ", "")
    job_id = re.search(r'ediv:job:(\d+)', out).group(1)
    job = pywbem.CIMInstanceName("EDIV_ConcreteJob", {"InstanceID": f"ediv:job:{job_id}"},
                                 namespace="root/ediv")
    done = _follow(conn, job)
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert done["PercentComplete"] == 100
    plan = json.loads(done["ResultData"])
    assert set(plan["allocation"]) == {"h1", "h2", "r1", "r2", "h3", "h4"}
    keys = {p["key"] for p in plugin.engine.store().parts("simple6")}
    vm_netns = {n for n in netns() if any(n.startswith(f"ediv-{k}-") for k in keys)}
    assert len(vm_netns) == 6  # one network namespace per container VM
    sc = conn.GetInstance(scenario)
    assert sc["EnabledState"] == 2 and sorted(sc["Hosts"]) == ["h1", "h2", "h3"]
    vms = conn.EnumerateInstances("EDIV_VirtualSystem")
    assert {v["HostName"] for v in vms} == {"h1", "h2", "h3"}
    assert all(v["EnabledState"] == 2 for v in vms)
    deps = conn.References(vms[0].path, ResultClass="EDIV_HostedDependency")
    assert len(deps) == 1 and deps[0]["Antecedent"]["Name"] == vms[0]["HostName"]
    nets = {n["ElementName"]: n for n in conn.EnumerateInstances("EDIV_VirtualNetwork")}
    assert nets["Net0"]["SegmentKind"] in ("vxlan", "vlan") or len(nets["Net0"]["Hosts"]) == 1
    jobs_of_scenario = conn.AssociatorNames(scenario, AssocClass="EDIV_AffectedJobElement")
    assert any(p["InstanceID"] == f"ediv:job:{job_id}" for p in jobs_of_scenario)

    # run the check sequence: every VM reaches its peers across hosts
    rv, out = conn.InvokeMethod("ExecuteSequence", service,
                                [("AffectedSystem", scenario), ("Sequence", "check")])
    assert rv == 4096
    done = _follow(conn, out["Job"])
    results = json.loads(done["ResultData"])
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert sorted(r["vm"] for r in results) == ["h1", "h2", "h3", "h4", "r1", "r2"]
    assert all(r["exit_code"] == 0 and "1 received" in r["output"] for r in results)
    rv, out = conn.InvokeMethod("GetErrors", out["Job"])
    assert rv == 0 and not out["Errors"]

    # one VM: stop with pywbem, start with pywbemcli, reset; the others keep running
    vm = pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": "simple6/h3"}, namespace="root/ediv")
    (caps,) = conn.Associators(vm, AssocClass="CIM_ElementCapabilities")
    assert sorted(caps["RequestedStatesSupported"]) == [2, 3, 4, 9, 10, 11]
    rv, out = conn.InvokeMethod("RequestStateChange", vm, [("RequestedState", pywbem.Uint16(3))])
    assert rv == 4096
    done = _follow(conn, out["Job"])
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert json.loads(done["ResultData"])["state"] == "stopped"
    assert conn.GetInstance(vm)["EnabledState"] == 3
    assert sum(v["EnabledState"] == 2 for v in conn.EnumerateInstances("EDIV_VirtualSystem")) == 5
    for state, expected in ((3, 0), (4, 0), (10, 5), (11, 5), (9, 5), (6, 4097)):
        rv, _out = conn.InvokeMethod("RequestStateChange", vm,
                                     [("RequestedState", pywbem.Uint16(state))])
        assert rv == expected, (state, rv)
    out = _pywbemcli(handle, base, "instance", "invokemethod",
                     'EDIV_VirtualSystem.CreationClassName="EDIV_VirtualSystem",'
                     'Name="simple6/h3"', "RequestStateChange", "-p", "RequestedState=2")
    assert "ReturnValue=4096" in out.replace(" ", "")
    job_id = re.search(r'ediv:job:(\d+)', out).group(1)
    done = _follow(conn, pywbem.CIMInstanceName(
        "EDIV_ConcreteJob", {"InstanceID": f"ediv:job:{job_id}"}, namespace="root/ediv"))
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert conn.GetInstance(vm)["EnabledState"] == 2
    rv, out = conn.InvokeMethod("RequestStateChange", vm, [("RequestedState", pywbem.Uint16(11))])
    assert rv == 4096 and _follow(conn, out["Job"])["JobState"] == 7
    rv, out = conn.InvokeMethod("ExecuteSequence", service,
                                [("AffectedSystem", scenario), ("Sequence", "check")])
    done = _follow(conn, out["Job"])
    assert done["JobState"] == 7, done["ErrorDescription"]

    check_pools_and_devices(conn, handle, base, vms)
    check_pause_resume_shutdown(conn, service, scenario, vm)

    # release with wbemcli (cm over HTTPS, CA file): the definition stays
    text = _wbemcli(handle, base, "cm",
                    'root/ediv:EDIV_Scenario.CreationClassName="EDIV_Scenario",'
                    'Name="simple6"', "RequestStateChange.RequestedState=3")
    assert "4096" in text
    jobs = sorted(conn.EnumerateInstances("EDIV_ConcreteJob"),
                  key=lambda j: int(j["InstanceID"].rpartition(":")[2]))
    assert jobs[-1]["Operation"] == "release"
    done = _follow(conn, jobs[-1].path)
    assert done["JobState"] == 7, done["ErrorDescription"]
    assert conn.GetInstance(scenario)["EnabledState"] == 3
    assert not netns() & vm_netns
    assert {h.netns: links(h.netns) for h in bed.hosts} == host_links
    assert all(v["HostName"] == "" for v in conn.EnumerateInstances("EDIV_VirtualSystem"))

    # destroy the definition
    rv, _out = conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", scenario)])
    assert rv == 0
    assert conn.EnumerateInstances("EDIV_Scenario") == []
    assert not (Path(handle.config.data_dir) / "scenarios" / "simple6").exists()


def _ping_h3_from_h2(conn, service, scenario) -> bool:
    """h2's check sequence pings h3 (198.18.2.10), through ExecuteSequence: did it answer?
    (The job fails when a VM's command exits non-zero.)"""
    rv, out = conn.InvokeMethod("ExecuteSequence", service, [
        ("AffectedSystem", scenario), ("Sequence", "check"), ("VirtualSystems", ["h2"])])
    assert rv == 4096
    done = _follow(conn, out["Job"])
    return done["JobState"] == 7


def _request(conn, vm, state: int) -> dict:
    import pywbem

    rv, out = conn.InvokeMethod("RequestStateChange", vm,
                                [("RequestedState", pywbem.Uint16(state))])
    assert rv == 4096, (state, rv)
    done = _follow(conn, out["Job"])
    assert done["JobState"] == 7, done["ErrorDescription"]
    return json.loads(done["ResultData"])


def check_pause_resume_shutdown(conn, service, scenario, vm) -> None:
    """9 freezes h3 (EnabledState 9, its devices too; h2's ping of it fails), 2 lets it run
    on (same process; the ping answers), 4 shuts it down gracefully, 2 boots it again."""
    assert _ping_h3_from_h2(conn, service, scenario)
    assert _request(conn, vm, 9)["state"] == "paused"
    inst = conn.GetInstance(vm)
    assert (inst["EnabledState"], inst["RequestedState"]) == (9, 9)
    assert {d["EnabledState"] for d in conn.Associators(vm, AssocClass="EDIV_SystemDevice")} \
        == {9}
    assert not _ping_h3_from_h2(conn, service, scenario)
    resumed = _request(conn, vm, 2)
    assert (resumed["action"], resumed["previous"], resumed["state"]) == \
        ("resume", "paused", "running")
    assert conn.GetInstance(vm)["EnabledState"] == 2
    assert _ping_h3_from_h2(conn, service, scenario)
    down = _request(conn, vm, 4)
    assert (down["action"], down["state"]) == ("shutdown", "stopped")
    assert conn.GetInstance(vm)["EnabledState"] == 3
    assert _request(conn, vm, 2)["state"] == "running"
    assert _ping_h3_from_h2(conn, service, scenario)


def test_uml_vm_pause_resume_shutdown_through_wbem(site, tmp_path_factory):
    """The same RequestStateChange 9 / 2 / 4 on a UML VM: paused, its peer's ping fails
    (EnabledState 9); resumed, it answers again; 4 halts it; 2 boots it again."""
    import pywbem

    from ediv.agent.rootfs import build_busybox_rootfs

    handle, _plugin, _base, _bed = site
    conn = _conn(handle)
    (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    # under the base temp dir: the testbed's agents accept images from there
    rootfs = build_busybox_rootfs(tmp_path_factory.mktemp("umlp") / "rootfs.img")
    disk = f'<filesystem type="cow">{rootfs}</filesystem><mem>64M</mem>'
    spec = ('<vnuml><global><version>1.8</version><simulation_name>umlp</simulation_name>'
            '<vm_mgmt type="none"/></global><net name="Lan" mode="virtual_bridge"/>'
            + "".join(f'<vm name="{v}" type="uml">{disk}<if id="1" net="Lan">'
                      f'<ipv4>198.18.9.{i}/24</ipv4></if><exec seq="check" type="verbatim">'
                      f'ping -c 1 -W 3 198.18.9.{3 - i}</exec></vm>'
                      for i, v in ((1, "u1"), (2, "u2")))
            + "</vnuml>")
    ssd = pywbem.CIMInstance("EDIV_ScenarioSettingData", {"ScenarioDefinition": spec})
    rv, _out = conn.InvokeMethod("DefineSystem", service, [("SystemSettings", ssd)])
    assert rv == 0
    scenario = pywbem.CIMInstanceName("EDIV_Scenario", {
        "CreationClassName": "EDIV_Scenario", "Name": "umlp"}, namespace="root/ediv")
    vm = pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": "umlp/u2"}, namespace="root/ediv")

    def u1_reaches_u2() -> bool:
        rv, out = conn.InvokeMethod("ExecuteSequence", service, [
            ("AffectedSystem", scenario), ("Sequence", "check"), ("VirtualSystems", ["u1"])])
        assert rv == 4096
        return _follow(conn, out["Job"])["JobState"] == 7

    try:
        rv, out = conn.InvokeMethod("RequestStateChange", scenario,
                                    [("RequestedState", pywbem.Uint16(2))])
        assert rv == 4096
        done = _follow(conn, out["Job"])
        assert done["JobState"] == 7, done["ErrorDescription"]
        assert conn.GetInstance(vm)["VirtualSystemType"] == "uml"
        assert u1_reaches_u2()
        assert _request(conn, vm, 9)["state"] == "paused"
        assert conn.GetInstance(vm)["EnabledState"] == 9
        assert not u1_reaches_u2()
        resumed = _request(conn, vm, 2)
        assert (resumed["action"], resumed["state"]) == ("resume", "running")
        assert u1_reaches_u2()
        down = _request(conn, vm, 4)
        assert (down["action"], down["state"]) == ("shutdown", "stopped")
        assert conn.GetInstance(vm)["EnabledState"] == 3
        assert _request(conn, vm, 2)["state"] == "running"
        assert u1_reaches_u2()
    finally:
        rv, out = conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", scenario)])
        if rv == 4096:
            _follow(conn, out["Job"])
    assert all(s["Name"] != "umlp" for s in conn.EnumerateInstances("EDIV_Scenario"))


def check_pools_and_devices(conn, handle, base: Path, vms) -> None:
    """Per host: Capacity from cluster.conf, Reserved from the VMs placed there; every VM's
    devices and their pools navigable with pywbemcli."""
    placed: dict[str, list[str]] = {}
    for v in vms:
        placed.setdefault(v["HostName"], []).append(v["Name"])
    for host in conn.EnumerateInstances("EDIV_HostSystem"):
        pools = {p.classname: p for p in conn.Associators(
            host.path, AssocClass="EDIV_HostedResourcePool")}
        mine = placed.get(host["Name"], [])
        cpu, mem = pools["EDIV_ProcessorPool"], pools["EDIV_MemoryPool"]
        assert cpu["Reserved"] == len(mine)
        assert cpu.get("Capacity") == (host.get("MaxVirtualSystems") or None)
        assert mem["Capacity"] == host["MemoryMB"]
        assert mem["Reserved"] == 64 * len(mine)  # simple6: no <mem>, 64 MB each
        rasds = conn.Associators(mem.path, AssocClass="EDIV_ResourceAllocationFromPool")
        assert sorted(r["InstanceID"].rpartition(":")[0][len("ediv:rasd:"):]
                      for r in rasds) == sorted(mine)
    for v in vms:
        text = f'EDIV_VirtualSystem.CreationClassName="EDIV_VirtualSystem",Name="{v["Name"]}"'
        out = _pywbemcli(handle, base, "instance", "associators", text, "--ac",
                         "EDIV_SystemDevice", "--no")
        assert "EDIV_Processor" in out and "EDIV_NetworkPort" in out, out
        port = (f'EDIV_NetworkPort.SystemCreationClassName="EDIV_VirtualSystem",'
                f'SystemName="{v["Name"]}",CreationClassName="EDIV_NetworkPort",DeviceID="if1"')
        out = _pywbemcli(handle, base, "instance", "associators", port, "--ac",
                         "EDIV_ElementAllocatedFromPool", "--no")
        assert f'ediv:pool:{v["HostName"]}:net' in out, out
    shrub = _pywbemcli(handle, base, "instance", "shrub",
                       f'EDIV_HostSystem.CreationClassName="EDIV_HostSystem",'
                       f'Name="{vms[0]["HostName"]}"')
    assert "EDIV_HostedResourcePool" in shrub


def test_cli_commands_through_the_server(site):
    """`ediv deploy/exec/status/release --server`: same outputs as direct mode."""
    handle, plugin, base, _bed = site
    admin = base / "pw"
    admin.write_text(OPERATOR[1] + "\n")
    opts = ["--server", handle.url, "--user", OPERATOR[0], "--password-file", str(admin),
            "--ca-cert", str(handle.config.cert_file)]
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}

    def ediv(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "ediv.client.cli", *args, *opts],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return proc

    proc = ediv("deploy", str(EXAMPLES / "simple6.xml"), "--json")
    status = json.loads(proc.stdout)
    assert status["name"] == "simple6" and status["state"] == "deployed"
    assert sorted(v["name"] for v in status["vms"]) == ["h1", "h2", "h3", "h4", "r1", "r2"]
    assert {v["host"] for v in status["vms"]} == {"h1", "h2", "h3"}
    keys = {p["key"] for p in plugin.engine.store().parts("simple6")}
    assert len({n for n in netns() if any(n.startswith(f"ediv-{k}-") for k in keys)}) == 6
    direct = subprocess.run([sys.executable, "-m", "ediv.client.cli", "status", "simple6",
                             "--json", "--state", str(handle.config.state_path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(direct.stdout) == status
    results = json.loads(ediv("exec", "simple6", "check", "--json").stdout)
    assert [set(r) for r in results] == [{"vm", "host", "exit_code", "output"}] * 6
    assert all(r["exit_code"] == 0 for r in results)
    assert "6/6 succeeded" in ediv("exec", "simple6", "check").stdout
    stop = json.loads(ediv("vm", "stop", "simple6", "h2", "--json").stdout)
    assert (stop["previous"], stop["state"], stop["action"]) == ("running", "stopped", "stop")
    assert {v["name"]: v["state"] for v in
            json.loads(ediv("status", "simple6", "--json").stdout)["vms"]}["h2"] == "stopped"
    refused = subprocess.run([sys.executable, "-m", "ediv.client.cli", "vm", "reboot", "simple6",
                              "h2", *opts], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 4, refused.stderr
    assert "already stopped" in ediv("vm", "stop", "simple6", "h2").stdout
    assert "stopped -> running" in ediv("vm", "start", "simple6", "h2").stdout
    assert ediv("release", "simple6").stdout.strip() == "simple6: released"
    assert "no scenarios" in ediv("status").stdout
    assert not {n for n in netns() if any(n.startswith(f"ediv-{k}-") for k in keys)}


MIXED = """<vnuml><global><version>1.8</version><simulation_name>mixed2</simulation_name>
<automac/><vm_mgmt type="none"/></global>
<net name="Lan" mode="virtual_bridge"/>
<vm name="a"><if id="1" net="Lan"><ipv4 mask="255.255.255.0">198.18.7.1</ipv4></if>
  <exec seq="mixed" type="verbatim">echo one</exec>
  <exec seq="mixed" type="verbatim">echo two; exit 3</exec></vm>
<vm name="b"><if id="1" net="Lan"><ipv4 mask="255.255.255.0">198.18.7.2</ipv4></if>
  <exec seq="mixed" type="verbatim">echo fine</exec></vm>
</vnuml>
"""
RULES = """<deployment_restrictions>
  <vm_deploy_at vm="a" host="h1"/><vm_deploy_at vm="b" host="h2"/>
</deployment_restrictions>
"""


def test_direct_and_server_mode_print_the_same(site, tmp_path):
    """One scenario on one testbed, read and run both ways: `status --json` and `exec` (text
    and JSON, one entry per VM, exit 1 when one VM failed) are the same through --server and
    direct mode; an unknown sequence is an error naming the scenario's sequences in both."""
    handle = site[0]
    (tmp_path / "pw").write_text(OPERATOR[1] + "\n")
    server = ["--server", handle.url, "--user", OPERATOR[0], "--password-file",
              str(tmp_path / "pw"), "--ca-cert", str(handle.config.cert_file)]
    direct = ["--state", str(handle.config.state_path)]
    env = {k: v for k, v in os.environ.items() if k not in _CA_ENV}
    (tmp_path / "mixed2.xml").write_text(MIXED)
    (tmp_path / "rules.xml").write_text(RULES)

    def ediv(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "ediv.client.cli", *args],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == expect, proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr
        return proc

    ediv("deploy", str(tmp_path / "mixed2.xml"), "-r", str(tmp_path / "rules.xml"), "--json",
         *server)
    try:
        both = [json.loads(ediv("status", "mixed2", "--json", *mode).stdout)
                for mode in (server, direct)]
        assert both[0] == both[1]
        assert {v["name"]: v["host"] for v in both[0]["vms"]} == {"a": "h1", "b": "h2"}

        runs = [json.loads(ediv("exec", "mixed2", "mixed", "--json", *mode, expect=1).stdout)
                for mode in (server, direct)]
        assert runs[0] == runs[1]
        by_vm = {r["vm"]: r for r in runs[0]}
        assert len(runs[0]) == 2 and set(by_vm) == {"a", "b"}
        assert by_vm["a"]["exit_code"] == 3 and by_vm["a"]["host"] == "h1"
        assert by_vm["a"]["output"].split() == ["one", "two"]
        assert (by_vm["b"]["exit_code"], by_vm["b"]["output"].strip()) == (0, "fine")
        texts = [ediv("exec", "mixed2", "mixed", *mode, expect=1).stdout
                 for mode in (server, direct)]
        assert texts[0] == texts[1] and "1/2 succeeded" in texts[0]
        assert "--- a on h1: exit 3" in texts[0]

        for mode in (server, direct):
            proc = ediv("exec", "mixed2", "nosuch", *mode, expect=1)
            assert "nosuch" in proc.stderr and "mixed" in proc.stderr
    finally:
        ediv("release", "mixed2", *server)
