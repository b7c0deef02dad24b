"""Fixtures of the host-agent tests: root/UML checks, a busybox root fs, the agent CLI, and
snapshots of the host's kernel objects to prove that release leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from agent_helpers import Agent, wait_discarded


@pytest.fixture
def agent(tmp_path: Path, tmp_path_factory):
    """An agent with its own state dir; every scenario left in it is purged afterwards.

    Its config lets VMs use filesystems from this session's temp dirs (the images and root
    trees the tests build) as well as the default image roots."""
    from ediv.agent.config import DEFAULT_IMAGE_PATHS

    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"vm_image_paths": [*DEFAULT_IMAGE_PATHS,
                                                     str(tmp_path_factory.getbasetemp())]}))
    a = Agent(tmp_path / "state", config)
    yield a
    if a.state.exists():
        res = Agent(a.state, config)("purge")
        assert res.rc == 0, res.events


@pytest.fixture(scope="session")
def rootfs_image(tmp_path_factory) -> Path:
    """A busybox ext2 root filesystem, built once per test session."""
    if shutil.which("mkfs.ext2") is None and not os.path.exists("/sbin/mkfs.ext2"):
        pytest.skip("mkfs.ext2 missing (apt-get install e2fsprogs)")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static missing (apt-get install busybox-static)")
    from ediv.agent.rootfs import build_busybox_rootfs

    return build_busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs.img")


def host_snapshot(key: str, tmp: Path) -> dict[str, set[str]]:
    """The host objects a scenario could leave: namespaces, links, mounts, processes.

    Other people's tests may run on this machine at the same time, so the comparison is limited
    to objects that could be ours: names containing the key, mounts under the test's temp dir,
    processes whose environment carries the scenario marker or whose command line names the
    temp dir. Scenario dirs a release moved aside must be gone first (their background delete
    names the temp dir too).
    """
    from ediv.agent.release import TRASH_PREFIX

    for state in {p.parent for p in tmp.glob(f"*/{TRASH_PREFIX}*")}:
        assert wait_discarded(state) == [], f"release left files in {state}"
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout.split())
    links = {line.split()[0].split("@")[0] for line in subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout.splitlines()}
    mounts = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()}
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        marked = any(v.startswith(f"EDIV_HOST_KEY={key}@".encode()) for v in env.split(b"\0"))
        if marked or str(tmp).encode() in cmd:
            text = cmd.replace(b"\0", b" ").decode(errors="replace")[:80]
            procs.add(f"{pid} {text}")
    return {
        "netns": {n for n in netns if key in n},
        "links": {n for n in links if key in n},
        "mounts": {m for m in mounts if m.startswith(str(tmp))},
        "procs": procs,
    }


@pytest.fixture
def snapshot(tmp_path: Path):
    return lambda key: host_snapshot(key, tmp_path)
