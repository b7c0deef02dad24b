"""The agent's own fault handling: the bundle fence (receive / release / a late deploy --key),
the lock taken before anything, the deadline of a verb and the heartbeat."""

from __future__ import annotations

import fcntl
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from agent_helpers import Agent, unique_key, wait_discarded

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the agent needs root")]


def tar_bundle(key: str) -> bytes:
    """A one-VM container bundle as the controller sends it (tar.gz)."""
    xml = (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
           '</global><net name="N" mode="virtual_bridge"/><vm name="v" type="container">'
           '<if id="1" net="N"><ipv4>198.18.9.1/24</ipv4></if></vm></vnuml>')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("scenario.xml", xml), ("deploy.json",
                                                   json.dumps({"scenario": key, "key": key}))):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tf.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def test_received_bundle_is_private_and_release_removes_it(agent):
    key = unique_key("fr")
    res = agent("receive", "--key", key, stdin=tar_bundle(key))
    assert res.rc == 0, res.events
    upload = agent.state / key / "upload.tar.gz"
    assert stat.S_IMODE(upload.stat().st_mode) == 0o600
    assert stat.S_IMODE(upload.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(agent.state.stat().st_mode) == 0o700
    assert agent("release", "--key", key).rc == 0
    assert not (agent.state / key).exists()


def test_deploy_after_release_is_fenced_and_builds_nothing(agent):
    """A late deploy (its agent resumed after the release) finds no bundle and refuses."""
    key = unique_key("ff")
    assert agent("receive", "--key", key, stdin=tar_bundle(key)).rc == 0
    assert agent("release", "--key", key).rc == 0
    late = agent("deploy", "--key", key)
    assert late.rc == 1 and "no bundle received" in late.of("error")[0]["message"]
    assert list(agent.state.iterdir()) == []  # not even its lock file
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"ediv-{key}")]


def test_deploy_key_deploys_the_received_bundle_then_drops_the_upload(agent):
    key = unique_key("fd")
    assert agent("receive", "--key", key, stdin=tar_bundle(key)).rc == 0
    res = agent("--heartbeat", "0.5", "--deadline", "120", "deploy", "--key", key)
    assert res.rc == 0, res.events
    assert res.result["key"] == key
    assert not (agent.state / key / "upload.tar.gz").exists()
    again = agent("receive", "--key", key, stdin=tar_bundle(key))
    assert again.rc == 1 and "already deployed" in again.of("error")[0]["message"]
    assert agent("release", "--key", key).rc == 0
    assert list(agent.state.iterdir()) == []


def test_release_frees_the_name_at_once_and_its_files_go_after(agent):
    """Release moves the scenario's files aside (deleted in the background): the same key
    deploys again right away, and nothing of either deploy stays behind."""
    key = unique_key("fn")
    for _ in range(2):
        assert agent("receive", "--key", key, stdin=tar_bundle(key)).rc == 0
        assert agent("deploy", "--key", key).rc == 0
        # the bare agent, without the helper's wait for the background delete
        p = subprocess.run(agent.argv("release", "--key", key), capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=300, check=False)
        assert p.returncode == 0, p.stderr
        assert not (agent.state / key).exists()
    assert wait_discarded(agent.state) == []
    assert list(agent.state.iterdir()) == []


def test_purge_deletes_files_an_interrupted_release_left(agent):
    agent.state.mkdir(mode=0o700)
    left = agent.state / ".released-zz0000-0123abcd"
    (left / "vms" / "v").mkdir(parents=True)
    (left / "vms" / "v" / "init.log").write_text("x")
    assert agent("purge").rc == 0
    assert list(agent.state.iterdir()) == []


def test_release_waits_for_the_lock_within_its_deadline(agent):
    """A release of a scenario whose lock another agent holds waits, and gives up with a clear
    error at its deadline (instead of hanging or racing the holder)."""
    key = unique_key("fl")
    (agent.state / key).mkdir(parents=True)
    fd = os.open(agent.state / key / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = agent("--deadline", "1.5", "release", "--key", key, timeout=60)
    finally:
        os.close(fd)
    assert res.rc == 1
    assert "deadline of 1.5 s passed" in res.of("error")[0]["message"]
    assert "Traceback" not in res.stderr
    assert agent("release", "--key", key).rc == 0  # lock free: it goes


def test_heartbeat_lines_while_a_verb_waits(agent):
    key = unique_key("fh")
    (agent.state / key).mkdir(parents=True)
    fd = os.open(agent.state / key / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = agent("--heartbeat", "0.3", "--deadline", "1.5", "release", "--key", key,
                    timeout=60)
    finally:
        os.close(fd)
    assert len(res.of("alive")) >= 2, res.events


def test_bad_deadline_is_a_usage_error(tmp_path):
    p = subprocess.run(Agent(tmp_path / "s").argv("--deadline", "soon", "probe"),
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "not a number of seconds" in p.stderr
    assert not Path(tmp_path / "s").exists()
