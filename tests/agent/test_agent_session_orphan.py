"""A session agent whose controller is gone (nobody reads its stdout: a real pipe whose
reader closed) stops within a few heartbeats even while its VMs run a long command: a
deploy in its on_boot rolls back (lock freed, nothing left), an exec kills the running
command and ends, a release carries on. One VM (the command waited for in the main thread)
and two (in the thread pool, whose held section kept the stop away until the commands
ended: the orphan agents of the fault tests)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from agent_helpers import Agent, deploy_bundle, unique_key, wait_discarded

from tests.conftest import wait_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the agent needs root")]

HOLD = "sleep 600"  # far longer than any test: only the agent's stop can end it
HANG = 120  # bound for a hang only (the agent stops within a few 0.3 s heartbeats)


def xml(key: str, vms: int, on_boot: bool) -> str:
    boot = f'<exec seq="on_boot" type="verbatim">{HOLD}</exec>' if on_boot else ""
    body = "".join(
        f'<vm name="v{i}" type="container"><if id="1" net="N"><ipv4>198.18.9.{i}/24</ipv4>'
        f'</if><exec seq="hold" type="verbatim">{HOLD}</exec>'
        f'<exec seq="hold" type="verbatim">touch /tmp/second-command-ran</exec>{boot}</vm>'
        for i in range(1, vms + 1))
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            f'</global><net name="N" mode="virtual_bridge"/>{body}</vnuml>')


def bundle(key: str, text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("scenario.xml", text),
                           ("deploy.json", json.dumps({"scenario": key, "key": key}))):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tf.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def request(verb: str, *args: str, data: bytes = b"") -> bytes:
    line = {"verb": verb, "args": list(args), **({"bytes": len(data)} if data else {})}
    return json.dumps(line).encode() + b"\n" + data


def vm_pids(state: Path, key: str) -> list[int]:
    st = json.loads((state / key / "state.json").read_text())
    return [v["runtime"]["pid"] for v in st["vms"].values()]


def holds(state: Path, key: str) -> list[int]:
    """The ``sleep 600`` processes running inside the scenario's VMs (their PID namespaces)."""
    spaces = set()
    for pid in vm_pids(state, key):
        with contextlib.suppress(OSError):
            spaces.add(os.readlink(f"/proc/{pid}/ns/pid"))
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if (cmd.read_bytes() == HOLD.replace(" ", "\0").encode() + b"\0"
                    and os.readlink(cmd.parent / "ns/pid") in spaces):
                out.append(int(cmd.parent.name))
        except OSError:
            continue
    return out


class Session:
    """``ediv-host --heartbeat 0.3 session`` on real pipes, as sshd runs it for the
    controller; ``reader_gone()`` closes the read end of its stdout (the controller
    killed: its stdin stays open, so only the heartbeat can notice)."""

    def __init__(self, agent: Agent, tmp: Path):
        self.err = open(tmp / "session.err", "wb")  # noqa: SIM115 (closed in end())
        self.proc = subprocess.Popen(agent.argv("--heartbeat", "0.3", "session"),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def reader_gone(self) -> None:
        self.proc.stdout.close()

    def wait_end(self) -> int:
        try:
            return self.proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            raise AssertionError("the agent whose reader is gone is still running") from None

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.err.close()


@pytest.mark.parametrize("vms", [1, 2])
def test_deploy_in_a_long_on_boot_rolls_back_when_its_reader_is_gone(agent, snapshot,
                                                                     tmp_path, vms):
    key = unique_key("oo")
    before = snapshot(key)
    s = Session(agent, tmp_path)
    try:
        data = bundle(key, xml(key, vms, on_boot=True))
        s.send(request("receive", "--key", key, data=data) + request("deploy", "--key", key))
        wait_for(lambda: (agent.state / key / "state.json").exists() and
                 len(holds(agent.state, key)) == vms, HANG, "the on_boot commands", s.proc)
        s.reader_gone()
        s.wait_end()
    finally:
        s.end()
    assert wait_discarded(agent.state) == []
    assert not (agent.state / key).exists()  # rolled back, lock and all
    assert snapshot(key) == before


@pytest.mark.parametrize("vms", [1, 2])
def test_exec_of_a_long_command_is_killed_when_its_reader_is_gone(agent, snapshot,
                                                                  tmp_path, vms):
    key = unique_key("ox")
    res = deploy_bundle(agent, tmp_path, key, xml(key, vms, on_boot=False))
    assert res.rc == 0, res.events
    s = Session(agent, tmp_path)
    try:
        s.send(request("exec", "hold", "--key", key))
        running = wait_for(lambda: len(holds(agent.state, key)) == vms and
                           holds(agent.state, key), HANG, "the exec's commands", s.proc)
        s.reader_gone()
        s.wait_end()
    finally:
        s.end()
    # the commands were killed, not left running in the VMs; the next one never started
    assert [p for p in running if Path(f"/proc/{p}").exists()] == []
    for pid in vm_pids(agent.state, key):
        assert not Path(f"/proc/{pid}/root/tmp/second-command-ran").exists()
    # the scenario is as deployed, its lock free: release takes it at once
    before = {p: Path(f"/proc/{p}").exists() for p in vm_pids(agent.state, key)}
    assert all(before.values()), "the VMs themselves must stay"
    assert agent("--deadline", "60", "release", "--key", key).rc == 0
    assert snapshot(key)["netns"] == set()


def test_release_carries_on_when_its_reader_is_gone(agent, tmp_path):
    """A release waiting for the scenario's lock when its reader goes: once the lock is
    given back it still removes the scenario (a half-released one would be worse)."""
    key = unique_key("or")
    res = deploy_bundle(agent, tmp_path, key, xml(key, 1, on_boot=False))
    assert res.rc == 0, res.events
    fd = os.open(agent.state / key / "lock", os.O_RDWR)
    s = Session(agent, tmp_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        s.send(request("release", "--key", key))
        # the main thread waits for the lock, the heartbeat thread beats; once it finds the
        # pipe broken, the heartbeat ends (leaving the main thread alone), and no stop came
        assert json.loads(s.proc.stdout.readline())["event"] == "session"
        wait_for(lambda: _threads(s.proc.pid) == 2, HANG, "the heartbeat thread", s.proc)
        s.reader_gone()
        wait_for(lambda: _threads(s.proc.pid) == 1, HANG, "the heartbeat to see the broken pipe",
                 s.proc)
        assert s.proc.poll() is None, "the release was stopped"
        os.close(fd)
        fd = -1
        s.wait_end()
    finally:
        if fd >= 0:
            os.close(fd)
        s.end()
    assert wait_discarded(agent.state) == []
    assert not (agent.state / key).exists()


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").glob("*")))
