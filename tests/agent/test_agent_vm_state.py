"""``ediv-host vm NAME start|stop|reboot|reset`` against the real kernel.

A stopped VM keeps its interfaces and disk; starting it brings back its addresses and routes,
what was written in it, and runs its ``on_boot`` sequence again. Root only; addresses from
198.18.0.0/15 on bridges these tests create.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from agent_helpers import agent_exec_command, unique_key

UML_KERNEL = "/usr/bin/linux"
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")]

TWO_VMS = """<?xml version="1.0" encoding="UTF-8"?>
<vnuml>
  <global>
    <version>1.8</version>
    <simulation_name>{name}</simulation_name>
    <vm_mgmt type="none"/>
  </global>
  <net name="Lan" mode="virtual_bridge"/>
  <vm name="a" type="{a_type}">{a_fs}
    <if id="1" net="Lan"><ipv4>198.18.{o}.1/24</ipv4></if>
    <exec seq="on_boot" type="verbatim">echo boot &gt;&gt; /ediv-boots</exec>
  </vm>
  <vm name="b" type="container">
    <if id="1" net="Lan"><ipv4>198.18.{o}.2/24</ipv4></if>
    <exec seq="ping_a" type="verbatim">ping -c1 -W3 198.18.{o}.1</exec>
  </vm>
</vnuml>
"""


def deploy_two(agent, tmp_path: Path, key: str, a_type: str, image: Path | None = None) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "files").mkdir(parents=True)
    fs = f'\n    <filesystem type="cow">{image}</filesystem><mem>64M</mem>' if image else ""
    octet = 20 + int.from_bytes(os.urandom(1), "big") % 200
    (bundle / "scenario.xml").write_text(TWO_VMS.format(name=key, a_type=a_type, a_fs=fs,
                                                        o=octet))
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    dep = agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 0, dep.events


def vm_status(agent, key: str) -> dict[str, dict]:
    res = agent("status", "--key", key)
    return {v["name"]: v for v in res.result["scenarios"][0]["vms"]}


def ping_a(agent, key: str) -> int:
    res = agent("exec", "ping_a", "--key", key)
    return res.result["results"][0]["exit_code"]


def check_cycle(agent, snapshot, tmp_path: Path, a_type: str, image: Path | None) -> None:
    key = unique_key("vs")
    before = snapshot(key)
    deploy_two(agent, tmp_path, key, a_type, image)
    assert agent_exec_command(agent, key, ["a"], "cat /ediv-boots")["a"] == "boot\n"
    agent_exec_command(agent, key, ["a"], "echo kept > /ediv-note")
    pid0 = vm_status(agent, key)["a"]["pid"]
    assert ping_a(agent, key) == 0

    stop = agent("vm", "--key", key, "a", "stop")
    assert stop.rc == 0, stop.events
    assert (stop.result["previous"], stop.result["state"]) == ("running", "stopped")
    assert not stop.of("warning"), "the VM was killed instead of halting: " + str(stop.events)
    assert [v["state"] for v in vm_status(agent, key).values()] == ["stopped", "running"]
    assert ping_a(agent, key) != 0
    refused = agent("exec", "on_boot", "--key", key)  # the stopped VM's own result says so
    entries = {r["vm"]: r for r in refused.result.get("results", [])}
    assert refused.rc != 0 and "not running" in (entries.get("a") or {}).get("error", ""), \
        refused.events
    assert entries["a"]["exit_code"] is None
    again = agent("vm", "--key", key, "a", "stop")  # idempotent
    assert again.rc == 0 and again.result["previous"] == "stopped"
    wrong = agent("vm", "--key", key, "a", "reboot")
    assert wrong.rc == 4 and "start it" in wrong.result["message"], wrong.events

    start = agent("vm", "--key", key, "a", "start")
    assert start.rc == 0, start.events
    assert start.result["state"] == "running"
    assert ping_a(agent, key) == 0  # addresses are configured again
    out = agent_exec_command(agent, key, ["a"], "cat /ediv-note /ediv-boots")["a"]
    assert out == "kept\nboot\nboot\n"  # the disk survived; on_boot ran again

    pids = {pid0}
    for action in ("reboot", "reset"):
        res = agent("vm", "--key", key, "a", action)
        assert res.rc == 0 and res.result["state"] == "running", res.events
        pid = vm_status(agent, key)["a"]["pid"]
        assert pid not in pids
        pids.add(pid)
        assert ping_a(agent, key) == 0

    unknown = agent("vm", "--key", key, "zz", "start")
    assert unknown.rc == 1 and "no VM named 'zz'" in unknown.result["message"]

    rel = agent("release", "--key", key)
    assert rel.rc == 0, rel.events
    assert snapshot(key) == before


def test_container_stop_start_reboot_reset(agent, snapshot, tmp_path):
    check_cycle(agent, snapshot, tmp_path, "container", None)


@pytest.mark.skipif(not os.access(UML_KERNEL, os.X_OK),
                    reason=f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
def test_uml_stop_start_reboot_reset(agent, snapshot, tmp_path, rootfs_image):
    check_cycle(agent, snapshot, tmp_path, "uml", rootfs_image)


def check_pause_resume_shutdown(agent, snapshot, tmp_path: Path, a_type: str,
                                image: Path | None) -> None:
    """pause freezes the VM (it stops answering ping, status says paused), resume lets it
    run on (same process, answers again), shutdown halts it without a kill; a paused VM is
    also released cleanly."""
    key = unique_key("vp")
    before = snapshot(key)
    deploy_two(agent, tmp_path, key, a_type, image)
    pid0 = vm_status(agent, key)["a"]["pid"]
    assert ping_a(agent, key) == 0
    wrong = agent("vm", "--key", key, "b", "resume")  # running: nothing to do
    assert wrong.rc == 0 and wrong.result["state"] == "running", wrong.events

    paused = agent("vm", "--key", key, "a", "pause")
    assert paused.rc == 0, paused.events
    assert (paused.result["previous"], paused.result["state"]) == ("running", "paused")
    assert vm_status(agent, key)["a"]["state"] == "paused"
    assert ping_a(agent, key) != 0
    again = agent("vm", "--key", key, "a", "pause")
    assert again.rc == 0 and again.result["previous"] == "paused"
    frozen = agent("exec", "on_boot", "--key", key)  # refused at once, not held till a deadline
    entries = {r["vm"]: r for r in frozen.result.get("results", [])}
    assert frozen.rc != 0 and "paused" in (entries.get("a") or {}).get("error", ""), \
        frozen.events

    resumed = agent("vm", "--key", key, "a", "resume")
    assert resumed.rc == 0 and resumed.result["state"] == "running", resumed.events
    assert vm_status(agent, key)["a"] == {**vm_status(agent, key)["a"], "pid": pid0,
                                          "state": "running"}
    assert ping_a(agent, key) == 0

    assert agent("vm", "--key", key, "a", "pause").rc == 0
    start = agent("vm", "--key", key, "a", "start")  # start of a paused VM resumes it
    assert start.rc == 0 and start.result["previous"] == "paused", start.events
    assert vm_status(agent, key)["a"]["pid"] == pid0 and ping_a(agent, key) == 0

    down = agent("vm", "--key", key, "a", "shutdown")
    assert down.rc == 0 and down.result["state"] == "stopped", down.events
    assert not down.of("warning"), down.events
    assert ping_a(agent, key) != 0
    refused = agent("vm", "--key", key, "a", "pause")
    assert refused.rc == 4 and "start it" in refused.result["message"], refused.events

    assert agent("vm", "--key", key, "a", "start").rc == 0
    assert agent("vm", "--key", key, "a", "pause").rc == 0
    rel = agent("release", "--key", key)  # a paused VM goes like a running one
    assert rel.rc == 0, rel.events
    assert snapshot(key) == before


def test_container_pause_resume_shutdown(agent, snapshot, tmp_path):
    check_pause_resume_shutdown(agent, snapshot, tmp_path, "container", None)


@pytest.mark.skipif(not os.access(UML_KERNEL, os.X_OK),
                    reason=f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
def test_uml_pause_resume_shutdown(agent, snapshot, tmp_path, rootfs_image):
    check_pause_resume_shutdown(agent, snapshot, tmp_path, "uml", rootfs_image)
