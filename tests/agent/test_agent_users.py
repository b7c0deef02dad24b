"""VNUML <user> in container and UML VMs: account, groups, home, the same on both drivers.

Root only; the VMs have no interfaces beyond a bridge of their own (no traffic is sent).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from agent_helpers import agent_exec_command, unique_key

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, UML)")]

USERS = ('<user username="lab" group="staff"><group>wheel</group><group>netdev</group>'
         '<ssh_key>keys/lab.pub</ssh_key></user><user username="guest"/>')


ROOT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkaXZyb290a2V5 root@lab"
LAB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkaXZsYWJrZXk= lab@lab"
HOSTS = {"peer": "198.18.42.9", "other": "198.18.42.10"}  # deploy.json's <host_mapping/>


def scenario(key: str, vms: str) -> str:
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            '<ssh_key>keys/root.pub</ssh_key><vm_mgmt type="none"/><vm_defaults>'
            '<user username="ops"><group>wheel</group></user></vm_defaults></global>'
            f'<net name="N" mode="virtual_bridge"/>{vms}</vnuml>')


def vm(name: str, vtype: str, fs: str = "") -> str:
    return (f'<vm name="{name}" type="{vtype}">{fs}<if id="1" net="N">'
            f'<ipv4>198.18.42.{1 if vtype == "container" else 2}/24</ipv4></if>{USERS}</vm>')


CHECK = ("for u in lab guest ops; do id $u; done; ls -ld /home/lab | awk '{print $3\":\"$4}'; "
         "grep -c '^lab:' /etc/passwd; cat /root/.ssh/authorized_keys; "
         "cat /home/lab/.ssh/authorized_keys; grep -E ' (peer|other)$' /etc/hosts")


def check(out: str) -> None:
    lines = out.strip().splitlines()
    lab = lines[0]
    assert "(lab)" in lab and "gid=" in lab and "(staff)" in lab, out
    assert "(wheel)" in lab and "(netdev)" in lab, out
    assert "(guest)" in lines[1], out
    assert "(ops)" in lines[2] and "(wheel)" in lines[2], out  # from <vm_defaults>
    assert lines[3] == "lab:staff", out
    assert lines[4] == "1", out
    assert lines[5:] == [ROOT_KEY, LAB_KEY, "198.18.42.9 peer", "198.18.42.10 other"], out


def deploy(agent, tmp_path, key, xml):
    bundle = tmp_path / "bundle"
    (bundle / "files" / "keys").mkdir(parents=True)
    (bundle / "files" / "keys" / "root.pub").write_text(ROOT_KEY + "\n")
    (bundle / "files" / "keys" / "lab.pub").write_text(LAB_KEY + "\n")
    (bundle / "scenario.xml").write_text(xml)
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key,
                                                    "hosts": HOSTS}))
    return agent("deploy", "--bundle", str(bundle))


def test_users_in_container_vms(agent, snapshot, tmp_path):
    key = unique_key("us")
    before = snapshot(key)
    dep = deploy(agent, tmp_path, key, scenario(key, vm("c", "container")))
    assert dep.rc == 0, dep.events
    assert [e["vm"] for e in dep.of("users")] == ["c"]
    check(agent_exec_command(agent, key, ["c"], CHECK)["c"])
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/usr/bin/linux", os.X_OK) or shutil.which("mkfs.ext2") is None,
                    reason="needs user-mode-linux and e2fsprogs")
def test_users_in_uml_vms(agent, snapshot, tmp_path, rootfs_image):
    key = unique_key("uu")
    before = snapshot(key)
    fs = f'<filesystem type="cow">{rootfs_image}</filesystem><mem>64M</mem>'
    dep = deploy(agent, tmp_path, key, scenario(key, vm("u", "uml", fs)))
    assert dep.rc == 0, dep.events
    check(agent_exec_command(agent, key, ["u"], CHECK)["u"])
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before
