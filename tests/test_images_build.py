"""``ediv image build`` for real: mmdebstrap from this machine's apt sources (network to the
Debian mirror), an ext4 image in the store, booted as a UML VM by the agent and mounted as a
container's overlay lower layer.

The build takes minutes, so it is done once and kept (``tests/image_cache.py``: an image
store outside the repository, names derived from everything that shapes a build), so a later
run, or a later CI step, reuses it and a changed build rebuilds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ediv.images.build import mounts_below
from ediv.images.digest import file_digest
from ediv.images.sources import sources_text
from ediv.images.store import ImageStore
from tests.agent.agent_helpers import Agent, unique_key
from tests.image_cache import build_cached, cached, mirror_error

UML_KERNEL = "/usr/bin/linux"
EDIV = [sys.executable, "-m", "ediv.client.cli"]
PACKAGES = ["iproute2"]
SUITE = "bookworm"

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mmdebstrap root mode, UML, mounts)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None,
                       reason="mmdebstrap missing (apt-get install mmdebstrap)"),
]


def mirror_reachable_or_skip() -> None:
    """The build needs the Debian mirror of this machine's apt sources; without it (an
    offline machine) the build tests skip and say why."""
    why = mirror_error(SUITE)
    if why:
        pytest.skip(why)


@pytest.fixture(scope="session")
def debian_image() -> tuple[ImageStore, str]:
    """(store, name) of a minbase + iproute2 image, built through the CLI unless cached."""
    if cached(PACKAGES, SUITE) is None:
        mirror_reachable_or_skip()
    return build_cached(PACKAGES, SUITE, stale_prefix="test-")


def test_build_progress_manifest_and_digest(debian_image):
    store, name = debian_image
    m = store.resolve(name)
    blob = store.blob_path(m.digest)
    assert (m.suite, m.packages, m.format, m.origin) == (SUITE, PACKAGES, "raw", "build")
    assert m.size == blob.stat().st_size == m.extra["fs_size"]
    assert file_digest(blob) == m.digest
    assert (blob.stat().st_mode & 0o777) == 0o600
    assert (store.root.stat().st_mode & 0o777) == 0o700
    assert list(store.tmp.iterdir()) == []  # the build directory is gone
    # the build showed its phases while it ran (saved from the build that made the cache)
    progress = (store.root / "logs" / f"{name}.log").read_text()
    for phase in ("running apt-get update", "installing remaining packages",
                  "ediv: creating ext4 image", "ediv: stored"):
        assert phase in progress, phase
    blkid = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(blob)],
                           capture_output=True, text=True)
    assert blkid.stdout.strip() == "ext4"
    # the image was built from this machine's apt sources
    assert m.extra["sources"] == sources_text(SUITE)


def _debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True,
                          text=True, check=True).stdout


def test_image_holds_a_shell_and_ip(debian_image):
    store, name = debian_image
    blob = store.path(name)
    # merged /usr: /bin and /sbin are links into /usr
    assert "Type: symlink" in _debugfs(blob, "stat /bin")
    assert "Type: regular" in _debugfs(blob, "stat /usr/bin/dash")
    assert "Type: regular" in _debugfs(blob, "stat /usr/bin/ip")
    assert "Type: symlink" in _debugfs(blob, "stat /usr/sbin/ip")
    assert _debugfs(blob, "cat /etc/fstab").startswith("# ediv")
    no_systemd = subprocess.run(["debugfs", "-R", "stat /usr/lib/systemd/systemd", str(blob)],
                                capture_output=True, text=True)
    assert "File not found" in no_systemd.stderr  # ediv's init boots it, not systemd


def test_image_is_a_container_overlay_lower_layer(debian_image, tmp_path):
    """Loop-mounted read-only, under an overlay in a private mount namespace: the shell and
    ip of the image run, writes land in the upper dir, the image stays as it was."""
    store, name = debian_image
    blob = store.path(name)
    dirs = {d: tmp_path / d for d in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir()
    script = (f"set -e; mount -o loop,ro {blob} {dirs['lower']}; "
              f"mount -t overlay ov -o lowerdir={dirs['lower']},upperdir={dirs['upper']},"
              f"workdir={dirs['work']} {dirs['merged']}; "
              f"chroot {dirs['merged']} /bin/sh -c "
              "'test -x /sbin/ip && /sbin/ip -V && echo hi > /root/mark && cat /etc/hostname'")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "iproute2" in r.stdout and r.stdout.strip().endswith("ediv")
    assert (dirs["upper"] / "root" / "mark").read_text() == "hi\n"
    assert not any(str(tmp_path) in line for line in Path("/proc/mounts").read_text().splitlines())
    assert store.verify(name)


@pytest.mark.skipif(not os.access(UML_KERNEL, os.X_OK),
                    reason=f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
def test_uml_vm_boots_the_image_and_runs_ip(debian_image, tmp_path):
    store, name = debian_image
    blob = store.path(name)
    key = unique_key("im")
    xml = (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
           '<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
           f'<vm name="r" type="uml"><filesystem type="cow">{blob}</filesystem><mem>96M</mem>'
           '<if id="1" net="N"><ipv4>198.18.33.1/24</ipv4></if>'
           '<exec seq="show" type="verbatim">ip -br addr</exec>'
           '<exec seq="show" type="verbatim">cat /etc/debian_version</exec></vm></vnuml>')
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "scenario.xml").write_text(xml)
    (bundle / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    config = tmp_path / "agent.json"  # the test's image store is an allowed image root
    config.write_text(json.dumps({"vm_image_paths": [f"{store.root}/"]}))
    agent = Agent(tmp_path / "state", config)
    try:
        dep = agent("deploy", "--bundle", str(bundle))
        assert dep.rc == 0, dep.events
        res = agent("exec", "show", "--key", key)
        assert res.rc == 0, res.events
        ip, version = res.result["results"]
        assert ip["exit_code"] == 0 and re.search(r"^eth1 +\S+ +198\.18\.33\.1/24", ip["output"],
                                                  re.M), ip
        assert re.fullmatch(r"12\.\d+", version["output"].strip()), version  # bookworm's
    finally:
        rel = agent("release", "--key", key)
        assert rel.rc == 0, rel.events
    assert store.verify(name)  # copy-on-write: the stored image was never written


def test_build_of_a_missing_package_fails_cleanly(tmp_path):
    """A clear error naming the package; no image, no manifest, no build directory left."""
    mirror_reachable_or_skip()
    store = ImageStore(tmp_path / "store")
    r = subprocess.run([*EDIV, "image", "build", "bad", "--packages", "ediv-no-such-package",
                        "--store", str(store.root)], capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 1
    assert "mmdebstrap failed" in r.stderr and "ediv-no-such-package" in r.stderr, r.stderr
    assert store.list() == [] and store.digests() == set()
    assert list(store.tmp.iterdir()) == []
    assert not mounts_below(tmp_path)
