"""One agent process per host and command (issue 16): on a real 2-host testbed, every agent
start is logged by a wrapper in front of the real agent (the cluster file's ``agent``), so the
tests count Python starts on the hosts as they happen. A deploy is one ``session`` per host
(probe, receive and deploy in it); exec, vm and release are one each; a host whose agent has
no session mode (an older agent) still deploys with one-shot verbs. The session's requests
cannot change the agent's own options (state dir, config) nor run ``console``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ediv import testbed
from tests.conftest import EDIV, TESTBED, state_entries

pytestmark = [*TESTBED, pytest.mark.slow]


class Bed:
    """A 2-host testbed whose agents are started through a logging wrapper; ``old_agent``:
    the wrapper refuses ``session`` as an agent without it would (argparse, exit 2)."""

    def __init__(self, tb: testbed.Testbed, d: Path):
        self.tb, self.dir = tb, d
        self.log = d / "starts.log"
        self.old_flag = d / "old-agent"
        lines = []
        for line in tb.cluster_conf.read_text().splitlines():
            host = next((h for h in tb.hosts if line.startswith("agent = ")
                         and h.state_dir in line), None)
            if host is not None:
                real = line.removeprefix("agent = ")
                wrapper = d / f"agent-{host.name}.sh"
                wrapper.write_text(
                    "#!/bin/sh\n"
                    f'echo "{host.name} $*" >> {self.log}\n'
                    f'case " $* " in *" session "*) if [ -e {self.old_flag} ]; then '
                    "echo \"ediv-host: error: argument verb: invalid choice: 'session'\" >&2; "
                    "exit 2; fi;; esac\n"
                    f'exec {real} "$@"\n')
                wrapper.chmod(0o700)
                line = f"agent = {wrapper}"
            lines.append(line)
        self.cluster = d / "cluster.conf"
        self.cluster.write_text("\n".join(lines) + "\n")

    def starts(self) -> list[str]:
        """``host verb`` of every agent start since the last call."""
        if not self.log.exists():
            return []
        text = self.log.read_text()
        self.log.unlink()
        out = []
        for line in text.splitlines():
            host, *argv = line.split()
            verb = next(a for a in argv if not a.startswith("-") and not _is_value(argv, a))
            out.append(f"{host} {verb}")
        return sorted(out)


def _is_value(argv: list[str], a: str) -> bool:
    i = argv.index(a)
    return i > 0 and argv[i - 1] in ("--heartbeat", "--deadline", "--state-dir", "--config")


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    tb = testbed.up(2, d / "bed", progress=lambda _m: None)
    try:
        yield Bed(tb, d)
    finally:
        testbed.down(d / "bed", progress=lambda _m: None)


def scenario(path: Path, name: str) -> Path:
    """Four containers on one net that spans both hosts (round robin: two on each)."""
    vms = "".join(
        f'<vm name="v{i}" type="container"><if id="1" net="N"><ipv4 mask="255.255.255.0">'
        f"198.18.9.{i}</ipv4></if>"
        '<exec seq="check" type="verbatim">ping -c 1 -W 3 198.18.9.1</exec></vm>'
        for i in range(1, 5))
    path.write_text(
        f"<vnuml><global><version>1.8</version><simulation_name>{name}</simulation_name>"
        '<automac/><vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
        f"{vms}</vnuml>")
    return path


def cli(bed: Bed, state: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([*EDIV, *args, "--state", str(state)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"ediv {' '.join(args)}: {r.stderr}"
    return r


def test_deploy_exec_vm_release_start_one_agent_per_host(bed, tmp_path):
    state = tmp_path / "state.db"
    sc = scenario(tmp_path / "s.xml", "sess")
    bed.starts()
    r = cli(bed, state, "deploy", str(sc), "-c", str(bed.cluster), "-a", "RoundRobin")
    assert bed.starts() == ["h1 session", "h2 session"]  # probe, receive, deploy: one agent
    # the progress is what it was: each host probed, uploaded, its VMs running
    for h in ("h1", "h2"):
        for what in ("probing", "up", "uploading"):
            assert f"host {h} {what}" in r.stdout + r.stderr
    checks = json.loads(cli(bed, state, "exec", "sess", "check", "--json").stdout)
    assert [c["exit_code"] for c in checks] == [0, 0, 0, 0], checks
    assert bed.starts() == ["h1 session", "h2 session"]
    cli(bed, state, "vm", "stop", "sess", "v2")
    cli(bed, state, "vm", "start", "sess", "v2")
    assert len(bed.starts()) == 2  # one agent for each command, on v2's host
    cli(bed, state, "release", "sess")
    assert bed.starts() == ["h1 session", "h2 session"]
    assert [state_entries(h.state_dir) for h in bed.tb.hosts] == [[], []]


def test_a_host_without_session_mode_deploys_with_one_shot_verbs(bed, tmp_path):
    state = tmp_path / "state.db"
    sc = scenario(tmp_path / "o.xml", "old")
    bed.old_flag.touch()
    try:
        bed.starts()
        cli(bed, state, "deploy", str(sc), "-c", str(bed.cluster), "-a", "RoundRobin")
        starts = bed.starts()
        for h in ("h1", "h2"):  # the session refused, then the three verbs of before
            assert [s for s in starts if s.startswith(h)] == [
                f"{h} deploy", f"{h} probe", f"{h} receive", f"{h} session"], starts
        checks = json.loads(cli(bed, state, "exec", "old", "check", "--json").stdout)
        assert [c["exit_code"] for c in checks] == [0, 0, 0, 0], checks
    finally:
        bed.old_flag.unlink(missing_ok=True)
        cli(bed, state, "release", "old")
    assert [state_entries(h.state_dir) for h in bed.tb.hosts] == [[], []]


def test_session_requests_keep_the_agents_own_options(bed, tmp_path):
    """A request naming --state-dir or --config, or the console verb, is refused; the
    session's own state dir is used (a receive lands there, and nowhere else)."""
    host = bed.tb.hosts[0]
    other = tmp_path / "elsewhere"
    other.mkdir(mode=0o700)
    reqs = [
        {"verb": "status", "args": ["--state-dir", str(other)]},
        {"verb": "status", "args": ["--config", str(tmp_path / "x.json")]},
        {"verb": "console", "args": ["v1"]},
    ]
    for req in reqs:
        out = _session(host, [json.dumps(req).encode() + b"\n"])
        assert out[-1] == {"event": "done", "status": 1}, out
        assert out[-2]["event"] == "error", out
    out = _session(host, [json.dumps({"verb": "receive", "args": ["--key", "zz9"],
                                      "bytes": 4}).encode() + b"\nabcd",
                          json.dumps({"verb": "release", "args": ["--key", "zz9"]}).encode()
                          + b"\n"])
    assert [e["event"] for e in out] == ["session", "result", "done", "result", "done"], out
    assert out[1]["bytes"] == 4 and out[3]["released"][0]["existed"] is True, out
    assert list(other.iterdir()) == []


def _session(host, chunks: list[bytes]) -> list[dict]:
    """Run ``ediv-host session`` as the host's sshd would (in its netns, its state dir)."""
    p = subprocess.run(["ip", "netns", "exec", host.netns, sys.executable, "-m",
                        "ediv.agent.main", "--state-dir", host.state_dir, "session"],
                       input=b"".join(chunks), capture_output=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]
