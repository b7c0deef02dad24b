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
