"""UML boot configuration failures name the command that failed.

Root only; the VM's one interface is on a bridge of its own (no traffic is sent).
"""

from __future__ import annotations

import json
import os

import pytest
from agent_helpers import unique_key

pytestmark = [
    pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, UML)"),
    pytest.mark.skipif(not os.access("/usr/bin/linux", os.X_OK), reason="needs user-mode-linux"),
]


def test_failing_boot_command_is_named(agent, snapshot, tmp_path, rootfs_image):
    key = unique_key("ub")
    before = snapshot(key)
    bundle = tmp_path / "bundle"
    (bundle / "files").mkdir(parents=True)
    # the gateway is on no interface of the VM: "ip route add" fails inside the guest
    (bundle / "scenario.xml").write_text(
        f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
        '<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
        f'<vm name="u" type="uml"><filesystem type="cow">{rootfs_image}</filesystem>'
        '<mem>64M</mem><if id="1" net="N"><ipv4>198.18.43.1/24</ipv4></if>'
        '<route type="ipv4" gw="198.18.44.1">198.18.45.0/24</route></vm></vnuml>')
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    dep = agent("deploy", "--bundle", str(bundle))
    assert dep.rc == 1, dep.events
    message = dep.result["message"]
    assert "boot configuration failed" in message
    assert "ip route add 198.18.45.0/24 via 198.18.44.1" in message, message
    assert snapshot(key) == before


def test_boots_are_bounded_by_the_slots(tmp_path, tmp_path_factory, snapshot, rootfs_image):
    """With ``uml_boot_slots = 1`` a VM starts booting only once the one before it is up
    (the events alternate), every VM ends up running, and the idle runner (napping with
    ``read -t`` on a FIFO) still picks up jobs."""
    from agent_helpers import Agent

    from ediv.agent.config import DEFAULT_IMAGE_PATHS

    key = unique_key("uq")
    before = snapshot(key)
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"uml_boot_slots": 1, "vm_image_paths": [
        *DEFAULT_IMAGE_PATHS, str(tmp_path_factory.getbasetemp())]}))
    agent = Agent(tmp_path / "state", config)
    bundle = tmp_path / "bundle"
    (bundle / "files").mkdir(parents=True)
    vms = "".join(
        f'<vm name="u{i}" type="uml"><filesystem type="cow">{rootfs_image}</filesystem>'
        f'<mem>64M</mem><if id="1" net="N"><ipv4>198.18.46.{i + 1}/24</ipv4></if>'
        '<exec seq="hello" type="verbatim">echo hi from $(hostname)</exec></vm>'
        for i in range(3))
    (bundle / "scenario.xml").write_text(
        f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
        f'<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>{vms}</vnuml>')
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    try:
        dep = agent("deploy", "--bundle", str(bundle))
        assert dep.rc == 0, dep.events
        order = [(e["vm"], e["state"]) for e in dep.of("vm")]
        assert order == [(f"u{i}", s) for i in range(3) for s in ("booting", "running")]
        ex = agent("exec", "hello", "--key", key)
        assert ex.rc == 0, ex.events
        outputs = sorted(r["output"].strip() for r in ex.result["results"])
        assert outputs == [f"hi from u{i}" for i in range(3)]
    finally:
        rel = agent("release", "--key", key)
        assert rel.rc == 0, rel.events
    assert snapshot(key) == before
