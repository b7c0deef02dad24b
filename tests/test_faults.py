"""Fault suite on a real 2-host testbed: kill -9 of the CLI (the controller), of an agent and
of sshd at early / mid / exec points, a link down mid-deploy, the SIGSTOP race of a late
agent. After each fault, release (or cleanup) must leave nothing (namespaces, links and
VXLANs, processes, agent state-dir files, uploaded bundles, store rows), a dead host must make
the step fail (bounded by the cluster's ``host_timeout``, here a few seconds) with a rollback,
and a redeploy must work. The module prints ``faults: N tried, M clean``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from ediv import testbed
from ediv.state import StateStore
from tests.conftest import EDIV, TESTBED, state_entries, wait_for
from tests.test_controller import agent_processes, host_ids, host_links, netns_list, ours

pytestmark = [*TESTBED, pytest.mark.slow]

BIN = str(Path(sys.executable).parent)
HOST_TIMEOUT = 10  # seconds of silence after which the controller gives a host up
# the long commands (on_boot, the "hold" exec) the faults land in: far longer than any test,
# so a fault never comes after they ended; the agents' stop or the test itself ends them
HOLD = 600
# a deploy's on_boot that ends when the test says so (open_gate), or after HOLD seconds
GATE = "/tmp/ediv-test-go"
GATED = (f"i=0; while [ ! -e {GATE} ] && [ $i -lt {HOLD * 10} ]; do sleep 0.1; "
         "i=$((i+1)); done")
TALLY = {"tried": [], "clean": []}


# ---------------------------------------------------------------- testbed and helpers

@pytest.fixture(scope="module")
def bed(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("faults")
    tb = testbed.up(2, d / "bed", progress=lambda _m: None)
    try:
        yield _FaultBed(tb, d)
    finally:
        testbed.down(d / "bed", progress=lambda _m: None)
        print_tally(request)


def print_tally(request, label: str = "faults") -> None:
    """The suite's figure: faults tried, and how many left nothing behind."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    dirty = sorted(set(TALLY["tried"]) - set(TALLY["clean"]))
    line = (f"{label}: {len(TALLY['tried'])} tried, {len(TALLY['clean'])} clean"
            + (f" (not clean: {', '.join(dirty)})" if dirty else ""))
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)


# between sshd and h2's session agent: passes the requests on, but stops the (idle) agent
# with SIGSTOP just before it gets the deploy request: an agent stopped before its lock
_STOP_BEFORE_DEPLOY = r"""
import json, os, signal, subprocess, sys
pid_file, argv = sys.argv[1], sys.argv[2:]
agent = subprocess.Popen(argv, stdin=subprocess.PIPE)
src = sys.stdin.buffer
while line := src.readline():
    req = json.loads(line)
    if req.get("verb") == "deploy" and not os.path.exists(pid_file):
        os.kill(agent.pid, signal.SIGSTOP)
        with open(pid_file + ".part", "w") as f:
            f.write(str(agent.pid))
        os.replace(pid_file + ".part", pid_file)
    try:
        agent.stdin.write(line + src.read(req.get("bytes", 0)))
        agent.stdin.flush()
    except BrokenPipeError:
        break
agent.stdin.close()
sys.exit(agent.wait())
"""


class _FaultBed:
    """The testbed plus a cluster file with a short ``host_timeout`` and, for h2, an agent
    wrapper that, when a flag file exists, stops the agent (SIGSTOP) before it gets its
    ``deploy``: an agent stopped before it could take its lock. ``stop_flag``: h2's session
    agent is stopped before its deploy request; ``oneshot_flag`` too: h2's agent refuses
    ``session`` (an agent without session mode) and the one-shot ``deploy`` stops itself."""

    def __init__(self, tb: testbed.Testbed, d: Path):
        self.tb = tb
        self.dir = d
        self.stop_flag = d / "stop-next-deploy"
        self.oneshot_flag = d / "no-session"
        self.stopped_pid = d / "stopped.pid"
        text = tb.cluster_conf.read_text()
        h2 = tb.hosts[1]
        real = f"{sys.executable} -m ediv.agent.main --state-dir {h2.state_dir}"
        stopper = d / "stop-before-deploy.py"
        stopper.write_text(_STOP_BEFORE_DEPLOY)
        wrapper = d / "agent-h2.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'case " $* " in *" session "*) if [ -e {self.oneshot_flag} ]; then '
            "echo \"ediv-host: error: argument verb: invalid choice: 'session'\" >&2; exit 2; "
            f"elif [ -e {self.stop_flag} ]; then rm -f {self.stop_flag}; "
            f'exec {sys.executable} {stopper} {self.stopped_pid} {real} "$@"; fi;; '
            f'*" deploy "*) if [ -e {self.stop_flag} ]; then '
            f"rm -f {self.stop_flag}; echo $$ > {self.stopped_pid}; kill -STOP $$; fi;; esac\n"
            f'exec {real} "$@"\n')
        wrapper.chmod(0o700)
        lines = []
        for line in text.splitlines():
            if line.startswith("agent = ") and h2.state_dir in line:
                line = f"agent = {wrapper}"
            lines.append(line)
            if line == "[cluster]":
                lines.append(f"host_timeout = {HOST_TIMEOUT}")
        self.cluster = d / "cluster.conf"
        self.cluster.write_text("\n".join(lines) + "\n")

    @property
    def hosts(self):
        return self.tb.hosts

    def sshd_pid(self, host) -> int:
        return int((Path(self.tb.dir) / host.name / "sshd.pid").read_text())

    def restart_sshd(self, host) -> None:
        """Start the host's sshd again (as ``testbed.up`` did) after a kill -9 of it."""
        d = Path(self.tb.dir) / host.name
        (d / "sshd.pid").unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "exec", host.netns, "unshare", "--uts", "--", "sh", "-c",
                        'hostname "$1" && exec "$2" -f "$3" -E "$4"', "sh",
                        f"{self.tb.prefix}-{host.name}", testbed.SSHD, str(d / "sshd_config"),
                        str(d / "sshd.log")], check=True)
        wait_for(lambda: (d / "sshd.pid").exists() and (d / "sshd.pid").read_text().strip(),
                 10, "sshd restarted")
        host.sshd_pid = self.sshd_pid(host)


def scenario(path: Path, name: str, on_boot: float | str = 0) -> Path:
    """Three containers on one net spanning both hosts (a VXLAN): a, c on h1 and b on h2;
    ``on_boot`` seconds of sleep (or that command) at the end of the deploy (everything built
    by then); the ``hold`` sequence sleeps HOLD seconds."""
    cmd = escape(on_boot) if isinstance(on_boot, str) else f"sleep {on_boot:g}"
    boot = (f'<exec seq="on_boot" type="verbatim">{cmd}</exec>' if on_boot else "")
    vms = "".join(
        f'<vm name="{vm}" type="container"><if id="1" net="N"><ipv4 mask="255.255.255.0">'
        f"198.18.7.{i}</ipv4></if>"
        '<exec seq="check" type="verbatim">ping -c 1 -W 2 198.18.7.2</exec>'
        f'<exec seq="hold" type="verbatim">sleep {HOLD}</exec>'
        f"{boot}</vm>" for i, vm in enumerate(("a", "b", "c"), start=1))
    path.write_text(
        f"<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>"
        '<automac/><vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
        f"{vms}</vnuml>")
    return path


def agent_pids(host, verb: str | None = None) -> list[int]:
    """Agent processes of ``host`` (matched by its state dir), running ``verb`` if given
    (the controller runs its verbs in one ``session`` agent per host and command)."""
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmd.read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        # the agent itself (not the stopper in front of one)
        agent = text[1:3] == ["-m", "ediv.agent.main"] or text[1:2] == [f"{BIN}/ediv-host"]
        if agent and host.state_dir in text and (verb is None or verb in text):
            out.append(int(cmd.parent.name))
    return out


def parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            data = stat.read_text()
        except OSError:
            continue
        out[int(stat.parent.name)] = int(data[data.rfind(")") + 2:].split()[1])
    return out


def no_agents_left(bed) -> None:
    """Wait until the last command's agents have exited (a deploy's session agent ends just
    after the command, with its VMs still its children: not an exec agent)."""
    wait_for(lambda: not any(agent_pids(h) for h in bed.hosts), 30, "the agents to exit")


def exec_agents(host) -> list[int]:
    """``host``'s agents running commands in VMs (an exec: they have child processes)."""
    busy = set(parents().values())
    return [pid for pid in agent_pids(host) if pid in busy]


def session_sshds(bed: _FaultBed, host) -> list[int]:
    """The per-connection sshd processes of ``host``: below its listener, the monitor and
    the child that carries the connection (killing the monitor alone leaves the connection
    up until the child next needs it: a live agent session would go on talking)."""
    tree = parents()
    below, found = {bed.sshd_pid(host)}, True
    while found:
        found = False
        for pid, parent in tree.items():
            if parent in below and pid not in below:
                below.add(pid)
                found = True
    out = []
    for pid in below - {bed.sshd_pid(host)}:
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("sshd"):
                out.append(pid)
        except OSError:
            continue
    return out


def key_dir(host, name: str) -> Path | None:
    """The agent's state dir of the (only) scenario key on ``host``, once it exists."""
    dirs = [p for p in Path(host.state_dir).iterdir() if not p.name.startswith(".")]
    return dirs[0] if dirs else None


class Env:
    def __init__(self, bed: _FaultBed, tmp: Path):
        self.bed = bed
        self.tmp = tmp
        self.state = tmp / "state.db"

    def cli(self, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([*EDIV, *args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"ediv {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
        return r

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*EDIV, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def deploy_args(self, sc: Path) -> list[str]:
        return ["deploy", str(sc), "-c", str(self.bed.cluster), "--state", str(self.state),
                "-a", "RoundRobin"]

    def status(self, name: str) -> dict:
        return json.loads(self.cli("status", name, "--state", str(self.state), "--json").stdout)

    def release(self, name: str) -> subprocess.CompletedProcess:
        return self.cli("release", name, "--state", str(self.state), "-c", str(self.bed.cluster))

    def cleanup(self) -> subprocess.CompletedProcess:
        return self.cli("cleanup", "-c", str(self.bed.cluster), "--state", str(self.state),
                        "--yes")

    def leftovers(self) -> list[str]:
        """Everything of ours still there; [] when the testbed is as clean as new."""
        bed, left = self.bed, []
        spaces = ours(bed.tb, netns_list()) - {h.netns for h in bed.hosts}
        if spaces:
            left.append(f"netns {sorted(spaces)}")
        for host in bed.hosts:
            links = host_links(host.netns) - {"lo", "eth0"}
            if links:
                left.append(f"links on {host.name}: {sorted(links)}")
            files = state_entries(host.state_dir)
            if files:
                left.append(f"state files on {host.name}: {files}")
            if agent_pids(host):
                left.append(f"agents on {host.name}: {agent_pids(host)}")
        procs = agent_processes(host_ids(bed.tb))
        if procs:
            left.append(f"VM processes {procs}")
        if self.state.exists():
            store = StateStore(self.state)
            try:
                rows = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                        for t in ("scenarios", "parts", "vms", "segments")}
                running = store.db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state='running'").fetchone()[0]
            finally:
                store.close()
            if any(rows.values()) or running:
                left.append(f"store rows {rows}, running jobs {running}")
        return left

    def settle(self, timeout: float = 30) -> list[str]:
        """Leftovers once orphaned agents finished what they do (rolling back, refusing)."""
        end = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not left or time.monotonic() > end:
                return left
            time.sleep(0.2)


@pytest.fixture
def env(bed, tmp_path, request):
    """Per fault: counted as tried, and as clean when nothing is left once it was handled
    (the tests' release/cleanup, orphaned agents given a moment to finish rolling back).
    Whatever is left is purged for the next test. Each test's own deploys, and
    ``test_zz_redeploy_after_the_faults``, show that deploying again works."""
    e = Env(bed, tmp_path)
    name = request.node.name
    TALLY["tried"].append(name)
    yield e
    try:
        left = e.settle()
        assert left == [], f"left after the fault was handled: {left}"
        TALLY["clean"].append(name)
    finally:
        if bed.stopped_pid.exists():  # never leave a stopped agent behind
            pid = int(bed.stopped_pid.read_text())
            bed.stopped_pid.unlink()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        bed.stop_flag.unlink(missing_ok=True)
        bed.oneshot_flag.unlink(missing_ok=True)
        for host in bed.hosts:
            subprocess.run(["ip", "link", "set", host.veth, "up"], check=False)
            try:
                os.kill(bed.sshd_pid(host), 0)
            except (ProcessLookupError, FileNotFoundError, ValueError):
                bed.restart_sshd(host)
        if e.leftovers():
            e.cli("cleanup", "-c", str(bed.cluster), "--state", str(e.state), "--yes",
                  check=False)


def kill9(pids: list[int]) -> None:
    assert pids, "nothing to kill"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def h2_built(env: Env) -> bool:
    """h2's part is built (state.json written): the deploy is in its on_boot sequence."""
    d = key_dir(env.bed.hosts[1], "")
    return bool(d and (d / "state.json").exists())


def h2_received(env: Env) -> bool:
    d = key_dir(env.bed.hosts[1], "")
    return bool(d and ((d / "upload.tar.gz").exists() or (d / "journal.jsonl").exists()))


def vm_inits(host) -> list[int]:
    """The host's VM inits, as its agent recorded them (state.json of its scenario)."""
    d = key_dir(host, "")
    try:
        state = json.loads((d / "state.json").read_text()) if d else {}
    except (OSError, ValueError):
        return []
    return [v["runtime"]["pid"] for v in state.get("vms", {}).values()]


def holds(host) -> list[int]:
    """The ``sleep HOLD`` commands running in the host's VMs (in their PID namespaces)."""
    spaces = set()
    for pid in vm_inits(host):
        with contextlib.suppress(OSError):
            spaces.add(os.readlink(f"/proc/{pid}/ns/pid"))
    argv = f"sleep\0{HOLD}\0".encode()
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmd.read_bytes() == argv and os.readlink(cmd.parent / "ns/pid") in spaces:
                out.append(int(cmd.parent.name))
        except OSError:
            continue
    return out


def end_holds(host) -> None:
    """The test ends the host's hold commands itself (the host's controller side is alive
    and waits for them): they exit killed."""
    for pid in wait_for(lambda: holds(host), 30, f"the hold commands on {host.name}"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def open_gate(env: Env) -> None:
    """Let every VM's GATED on_boot end: the gate file in each VM's own /tmp."""
    for host in env.bed.hosts:
        for pid in vm_inits(host):
            Path(f"/proc/{pid}/root{GATE}").touch()


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


# ---------------------------------------------------------------- the controller (CLI) killed

@pytest.mark.parametrize("point", ["early", "mid"])
def test_cli_killed_during_deploy(env, point):
    sc = scenario(env.tmp / "k.xml", "kcli", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    wait_for(lambda: h2_received(env) if point == "early" else h2_built(env), 90, point, proc)
    proc.kill()
    proc.wait(timeout=10)
    if point == "mid":  # both hosts in their on_boot: the orphaned agents roll back alone
        wait_for(lambda: not any(agent_pids(h) or key_dir(h, "") for h in env.bed.hosts),
                 60, "the orphaned agents to roll back and end")
    status = env.status("kcli")
    assert status["state"] == "interrupted", status
    env.release("kcli")


def test_cli_killed_during_exec(env):
    sc = scenario(env.tmp / "x.xml", "kexec")
    env.cli(*env.deploy_args(sc))
    no_agents_left(env.bed)
    proc = env.start("exec", "kexec", "hold", "--state", str(env.state))
    for host in env.bed.hosts:
        wait_for(lambda h=host: len(holds(h)) == len(vm_inits(h)), 30,
                 f"the hold commands on {host.name}", proc)
    proc.kill()
    proc.wait(timeout=10)
    # the orphaned agents stop their commands (not left running in the VMs) and end
    wait_for(lambda: not any(holds(h) or agent_pids(h) for h in env.bed.hosts), 60,
             "the orphaned exec agents to kill their commands and end")
    assert env.status("kexec")["state"] == "deployed"
    env.release("kexec")


# ---------------------------------------------------------------- an agent killed

@pytest.mark.parametrize("point", ["early", "mid"])
def test_agent_killed_during_deploy_rolls_back(env, point):
    sc = scenario(env.tmp / "a.xml", "kagent", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    h2 = env.bed.hosts[1]
    # the deploy's agent on h2 (its session: probe, receive, deploy) once the bundle is there
    wait_for(lambda: h2_received(env) if point == "early" else h2_built(env), 90, point, proc)
    kill9(agent_pids(h2))
    rc, err = finish(proc)
    assert rc == 1 and "h2" in err and "rolled back" in err, err
    assert "Traceback" not in err


def test_agent_killed_during_exec(env):
    sc = scenario(env.tmp / "ax.xml", "kagentx")
    env.cli(*env.deploy_args(sc))
    no_agents_left(env.bed)
    proc = env.start("exec", "kagentx", "hold", "--state", str(env.state), "--json")
    kill9(wait_for(lambda: exec_agents(env.bed.hosts[1]), 30, "the exec agent"))
    end_holds(env.bed.hosts[0])  # h1's exec, which the controller still waits for
    out, _err = proc.communicate(timeout=60)
    results = json.loads(out)
    lost = [r for r in results if r["host"] == "h2"]
    assert lost and all(r["exit_code"] is None for r in lost), results
    env.release("kagentx")


# ---------------------------------------------------------------- sshd killed

@pytest.mark.parametrize("point", ["early", "mid"])
def test_sshd_session_killed_during_deploy_rolls_back(env, point):
    sc = scenario(env.tmp / "s.xml", "ksshd", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    wait_for(lambda: h2_received(env) if point == "early" else h2_built(env), 90, point, proc)
    kill9(session_sshds(env.bed, env.bed.hosts[1]))
    rc, err = finish(proc)
    assert rc == 1 and "h2" in err and "rolled back" in err, err


def test_sshd_killed_outright_mid_deploy_then_release(env):
    """h2's sshd dies (listener and sessions): the deploy fails, rollback cannot reach h2 and
    says so; once sshd is back, release removes what h2 still has."""
    sc = scenario(env.tmp / "so.xml", "ksshd2", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    h2 = env.bed.hosts[1]
    wait_for(lambda: h2_built(env), 90, "h2 built", proc)
    kill9([env.bed.sshd_pid(h2), *session_sshds(env.bed, h2)])
    rc, err = finish(proc)
    assert rc == 1 and "rollback could not reach: h2" in err, err
    assert env.status("ksshd2")["state"] == "failed"
    env.bed.restart_sshd(h2)
    env.release("ksshd2")


def test_sshd_session_killed_during_exec(env):
    sc = scenario(env.tmp / "sx.xml", "ksshdx")
    env.cli(*env.deploy_args(sc))
    no_agents_left(env.bed)
    proc = env.start("exec", "ksshdx", "hold", "--state", str(env.state), "--json")
    h1, h2 = env.bed.hosts
    wait_for(lambda: holds(h2), 30, "the hold command on h2", proc)
    kill9(session_sshds(env.bed, h2))
    # h2's agent, its reader gone, kills its command and ends
    wait_for(lambda: not holds(h2) and not agent_pids(h2), 60,
             "h2's orphaned exec agent to kill its command and end")
    end_holds(h1)  # h1's exec, which the controller still waits for
    out, _err = proc.communicate(timeout=60)
    lost = [r for r in json.loads(out) if r["host"] == "h2"]
    assert lost and all(r["exit_code"] is None for r in lost), out
    env.release("ksshdx")


# ---------------------------------------------------------------- link down

def test_link_down_mid_deploy_fails_within_bound_and_rolls_back(env):
    """h2's link to the switch goes down with its part built: the controller gives it up
    after host_timeout (not after the agent's 1,800 s deadline), rolls h1 back and says h2
    could not be reached; with the link back, release removes h2's part."""
    sc = scenario(env.tmp / "l.xml", "klink", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    h2 = env.bed.hosts[1]
    wait_for(lambda: h2_built(env), 90, "h2 built", proc)
    subprocess.run(["ip", "link", "set", h2.veth, "down"], check=True)  # the testbed's veth
    try:
        rc, err = finish(proc, timeout=120)
    finally:
        subprocess.run(["ip", "link", "set", h2.veth, "up"], check=True)
    assert rc == 1, err
    assert f"silent for {HOST_TIMEOUT} s" in err and "rollback could not reach: h2" in err, err
    assert env.status("klink")["state"] == "failed"
    env.release("klink")


# ---------------------------------------------------------------- the SIGSTOP race

@pytest.mark.parametrize("mode", ["session", "one-shot"])
@pytest.mark.parametrize("controller", ["alive", "killed"])
def test_agent_stopped_before_its_lock_builds_nothing_late(env, controller, mode):
    """h2's deploy agent is stopped before it takes its lock (its session agent before it
    reads the deploy request, or a one-shot deploy agent as it starts). Controller alive: h2
    stays silent, the deploy fails within host_timeout and rolls back. Controller killed:
    release runs while the agent is stopped. Either way the agent, resumed, finds its bundle
    gone and builds nothing: no orphan scenario."""
    if mode == "one-shot":
        env.bed.oneshot_flag.touch()
    env.bed.stop_flag.touch()
    sc = scenario(env.tmp / "r.xml", "krace")
    proc = env.start(*env.deploy_args(sc))
    pid = int(wait_for(lambda: env.bed.stopped_pid.exists()
                       and env.bed.stopped_pid.read_text().strip(), 60, "the stopped agent"))
    if controller == "alive":
        rc, err = finish(proc)
        assert rc == 1 and "h2" in err and "rolled back" in err, err
    else:  # killed at once, before it gives h2 up (h1 may be built or half way)
        proc.kill()
        proc.wait(timeout=10)
        assert env.status("krace")["state"] == "interrupted"
        assert "released" in env.release("krace").stdout
    env.bed.stopped_pid.unlink()
    env.bed.oneshot_flag.unlink(missing_ok=True)
    os.kill(pid, signal.SIGCONT)
    # the resumed agent (the wrapper execs it, same pid) refuses and exits: nothing on h2
    wait_for(lambda: not Path(f"/proc/{pid}").exists() and not agent_pids(env.bed.hosts[1]),
             30, "the late agent to exit")
    assert env.leftovers() == []


def test_release_during_deploy_is_refused_not_orphaned(env):
    """A second process releasing a scenario a live controller is deploying is refused (the
    scenario's lock), rather than racing it."""
    sc = scenario(env.tmp / "b.xml", "kbusy", on_boot=GATED)
    proc = env.start(*env.deploy_args(sc))
    wait_for(lambda: h2_built(env) and vm_inits(env.bed.hosts[0]), 90, "both hosts built",
             proc)
    r = env.cli("release", "kbusy", "--state", str(env.state), check=False)
    assert r.returncode == 1 and "being changed" in r.stderr, r.stderr
    open_gate(env)  # the deploy's on_boot ends now, not before
    rc, err = finish(proc)
    assert rc == 0, err
    env.release("kbusy")


def test_cleanup_after_cli_killed(env):
    sc = scenario(env.tmp / "c.xml", "kclean", on_boot=HOLD)
    proc = env.start(*env.deploy_args(sc))
    wait_for(lambda: h2_built(env), 90, "h2 built", proc)
    proc.kill()
    proc.wait(timeout=10)
    assert "kclean" in env.cleanup().stdout



def test_zz_redeploy_after_the_faults(bed, tmp_path):
    """After every fault above: a fresh deploy works, its VMs reach each other across the
    hosts (VXLAN), and its release leaves nothing."""
    e = Env(bed, tmp_path)
    sc = scenario(tmp_path / "again.xml", "again")
    e.cli(*e.deploy_args(sc))
    checks = json.loads(e.cli("exec", "again", "check", "--state", str(e.state),
                              "--json").stdout)
    assert [r["exit_code"] for r in checks] == [0, 0, 0], checks
    e.release("again")
    assert e.settle(5) == []
