"""Container VMs over a <filesystem> image file: one read-only loop mount per host, shared by
every VM (of every scenario) using the image, as the overlay lower layer; the last release
unmounts it. Real VMs, real loop devices."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from agent_helpers import agent_exec_command, deploy_bundle, unique_key

from ediv.agent.drivers import imagemount

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(__import__("os").geteuid() != 0,
                                 reason="needs root (namespaces, loop mounts)")]


def _xml(key: str, image: Path, vms: list[str], fs_type: str = "cow") -> str:
    body = "".join(
        f'<vm name="{v}" type="container"><filesystem type="{fs_type}">{image}</filesystem>'
        f'<if id="1" net="N"><ipv4>198.18.40.{i + 1}/24</ipv4></if></vm>'
        for i, v in enumerate(vms))
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            f'<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>{body}</vnuml>')


_deploy = deploy_bundle


def _mounts_of(point: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4] == str(point)]


def _loops_of(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_image_file_is_one_shared_read_only_lower(agent, rootfs_image, tmp_path, snapshot):
    image = tmp_path / "lab.img"  # a copy of its own: the loop device count is this test's
    image.write_bytes(rootfs_image.read_bytes())
    before = _sha(image)
    k1, k2 = unique_key("il"), unique_key("im")
    point = imagemount.mount_point(agent.state, image)
    try:
        r1 = _deploy(agent, tmp_path, k1, _xml(k1, image, ["a", "b"]))
        assert r1.rc == 0, r1.events
        r2 = _deploy(agent, tmp_path, k2, _xml(k2, image, ["c"]))
        assert r2.rc == 0, r2.events
        # one read-only mount of one read-only loop device, for both scenarios' three VMs
        (mnt,) = _mounts_of(point)
        assert " ro," in f" {mnt.split()[5]}," and "nodev" in mnt and "nosuid" in mnt, mnt
        assert len(_loops_of(image).splitlines()) == 1
        assert imagemount.users(agent.state, image) == {k1, k2}
        # the VMs run the image's busybox; writes go to each VM's own upper layer
        out = agent_exec_command(agent, k1, ["a", "b"],
                                 "readlink /bin/sh; echo $(hostname) > /root/mine; cat /root/mine")
        assert out["a"].split() == ["/bin/busybox", "a"], out
        assert out["b"].split() == ["/bin/busybox", "b"], out
        out = agent_exec_command(agent, k2, ["c"], "cat /root/mine 2>&1; ls /root")
        assert "No such file" in out["c"], out  # a's write is not in c's root
        # VM root changes its root as it likes (the overlay's upper); the image stays as it was
        out = agent_exec_command(agent, k1, ["a"], "rm /bin/busybox.x 2>/dev/null; "
                                 "echo x > /bin/newfile && rm -f /etc/hostname && echo done")
        assert out["a"].strip() == "done", out
        # a VM rebooted comes back over the same shared mount, with its own writes
        res = agent("vm", "--key", k1, "a", "reboot")
        assert res.rc == 0 and res.result["state"] == "running", res.events
        out = agent_exec_command(agent, k1, ["a"], "cat /root/mine /bin/newfile")
        assert out["a"].split() == ["a", "x"], out
        assert len(_mounts_of(point)) == 1 and len(_loops_of(image).splitlines()) == 1
        # the first release keeps the mount for the other scenario
        assert agent("release", "--key", k1).rc == 0
        assert len(_mounts_of(point)) == 1 and imagemount.users(agent.state, image) == {k2}
        out = agent_exec_command(agent, k2, ["c"], "echo alive")
        assert out["c"].strip() == "alive"
        # the last one unmounts it and frees the loop device
        assert agent("release", "--key", k2).rc == 0
        assert _mounts_of(point) == [] and _loops_of(image) == ""
        assert not point.parent.exists()
        assert _sha(image) == before  # never written
        assert snapshot(k1) == snapshot(k2) == {"netns": set(), "links": set(), "mounts": set(),
                                                "procs": set()}
    finally:
        agent("release", "--key", k1)
        agent("release", "--key", k2)


def test_purge_drops_references_of_lost_scenarios(agent, rootfs_image, tmp_path):
    """A reference whose scenario directory is gone (a crash that lost it) is dropped by
    purge, and the image unmounted."""
    image = tmp_path / "lost.img"
    image.write_bytes(rootfs_image.read_bytes())
    point = imagemount.acquire(agent.state, image, "lostkey1")
    try:
        assert len(_mounts_of(point)) == 1
        assert agent("purge").rc == 0
        assert _mounts_of(point) == [] and _loops_of(image) == ""
    finally:
        imagemount.release(agent.state, imagemount.image_id(image), "lostkey1")


def test_images_that_cannot_be_a_lower_layer_are_refused(agent, rootfs_image, tmp_path,
                                                         tmp_path_factory):
    key, key2 = unique_key("iq"), unique_key("ir")
    qcow = tmp_path / "disk.qcow2"
    qcow.write_bytes(b"QFI\xfb" + bytes(4096))
    res = _deploy(agent, tmp_path, key, _xml(key, qcow, ["a"]))
    assert res.rc != 0 and "qcow2 image" in json.dumps(res.events), res.events
    # outside the agent's vm_image_paths (its config allows the test session's temp dirs)
    outside = Path("/var/tmp") / f"ediv-test-{key}.img"
    try:
        outside.write_bytes(rootfs_image.read_bytes())
        res = _deploy(agent, tmp_path, key2, _xml(key2, outside, ["a"]))
        assert res.rc != 0 and "outside the allowed image roots" in json.dumps(res.events)
        assert _loops_of(outside) == ""
    finally:
        outside.unlink(missing_ok=True)
