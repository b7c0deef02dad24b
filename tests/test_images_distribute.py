"""Image distribution before a deploy, on a real 3-host testbed (namespaces, sshd, agents):
``image:NAME`` filesystems are shipped by digest over the controller's SSH connections into
each host's own image store, once; a second deploy sends nothing; a corrupted upload is
refused by the digest the host computes, before anything is built."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ediv import testbed
from ediv.agent.rootfs import build_busybox_rootfs
from ediv.images.digest import hex_of
from ediv.images.store import ImageStore
from ediv.state import StateStore
from tests.conftest import EDIV, TESTBED, state_entries

pytestmark = [*TESTBED, pytest.mark.slow]



@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb") / "bed"
    tb = testbed.up(3, d, progress=lambda _m: None)
    try:
        yield tb
    finally:
        testbed.down(d, progress=lambda _m: None)
        assert not [n for n in _netns() if n.startswith(tb.prefix)]


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _vm_netns(tb) -> set[str]:
    """The VM namespaces of this testbed's agents (``ediv-<key>-<host id>-N``)."""
    from ediv.agent.naming import b36

    ids = {b36(os.stat(f"/run/netns/{h.netns}").st_ino % 36**5) for h in tb.hosts}
    return {n for n in _netns() if n.startswith("ediv-") and n.split("-")[2:3]
            and n.split("-")[2] in ids}


def _run(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDIV, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "EDIV_IMAGES": str(store)})


def _scenario(path: Path, name: str) -> Path:
    vms = "".join(
        f'<vm name="v{i}"><filesystem type="cow">image:lab</filesystem>'
        f'<if id="1" net="N"><ipv4 mask="255.255.255.0">198.18.60.{i}</ipv4></if>'
        f'<exec seq="show" type="verbatim">readlink /bin/sh; ping -c 1 -W 3 198.18.60.'
        f'{i % 3 + 1} >/dev/null &amp;&amp; echo reached</exec></vm>' for i in (1, 2, 3))
    path.write_text(f"<vnuml><global><version>1.8</version><simulation_name>{name}"
                    '</simulation_name><automac/><vm_mgmt type="none"/></global>'
                    f'<net name="N" mode="virtual_bridge"/>{vms}</vnuml>')
    return path


def _host_blob(bed, host, digest: str) -> Path:
    return Path(testbed.host_image_store(bed, host)) / "blobs" / "sha256" / hex_of(digest)


def _image_lines(stderr: str) -> dict[str, list[str]]:
    """host -> the steps its image progress lines showed (present, uploading, uploaded)."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"host (\S+) image lab [0-9a-f]{12}: (\w+)", stderr):
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


@pytest.fixture
def lab_store(tmp_path) -> tuple[Path, str]:
    """The controller's image store with a busybox image named ``lab``."""
    store = ImageStore(tmp_path / "images")
    img = build_busybox_rootfs(tmp_path / "lab.img", size_mb=24)
    m = store.import_file(img, "lab")
    return store.root, m.digest


def test_each_host_gets_the_image_once(bed, lab_store, tmp_path):
    store, digest = lab_store
    xml = _scenario(tmp_path / "ship.xml", "ship")
    state = str(tmp_path / "state.db")
    cluster = str(bed.cluster_conf)
    for h in bed.hosts:
        assert not _host_blob(bed, h, digest).exists()
    r = _run(store, "deploy", str(xml), "-c", cluster, "--state", state)
    try:
        assert r.returncode == 0, r.stderr
        steps = _image_lines(r.stderr)
        # one upload per host, shown while it ran, then the host had it
        assert sorted(steps) == [h.name for h in bed.hosts], r.stderr
        for h in bed.hosts:
            assert steps[h.name].count("uploaded") == 1 and "present" not in steps[h.name]
            blob = _host_blob(bed, h, digest)
            assert blob.is_file() and (blob.stat().st_mode & 0o777) == 0o600
            manifest = json.loads((blob.parents[2] / "manifests" / "lab.json").read_text())
            assert manifest["digest"] == digest and manifest["origin"] == "upload"
        # the VMs run the shipped image (its busybox), as container VMs on every host
        out = subprocess.run([*EDIV, "exec", "ship", "show", "--state", state, "--json"],
                             capture_output=True, text=True, timeout=300)
        results = json.loads(out.stdout)
        assert {x["host"] for x in results} == {h.name for h in bed.hosts}
        assert all(x["output"].split() == ["/bin/busybox", "reached"] for x in results), results
        assert len(_vm_netns(bed)) == 3
    finally:
        rel = _run(store, "release", "ship", "--state", state)
    assert rel.returncode == 0, rel.stderr
    # released: nothing left on the hosts but the image stores, which keep the image
    assert _vm_netns(bed) == set()
    for h in bed.hosts:
        assert state_entries(h.state_dir) == []
        assert _host_blob(bed, h, digest).is_file()

    again = _run(store, "deploy", str(xml), "-c", cluster, "--state", state)
    try:
        assert again.returncode == 0, again.stderr
        steps = _image_lines(again.stderr)
        assert steps == {h.name: ["present"] for h in bed.hosts}, again.stderr
        assert "nothing sent" in again.stderr
    finally:
        rel = _run(store, "release", "ship", "--state", state)
    assert rel.returncode == 0, rel.stderr


def test_a_corrupted_upload_is_refused(bed, lab_store, tmp_path):
    """The controller's copy went bad after its digest was taken (bit rot, a tampered file):
    each host computes the digest of what it received, refuses it, installs nothing, and
    the deploy fails before any host builds anything."""
    store, digest = lab_store
    blob = ImageStore(store).blob_path(digest)
    with open(blob, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"corrupted!")
    xml = _scenario(tmp_path / "bad.xml", "bad")
    state = tmp_path / "state.db"
    r = _run(store, "deploy", str(xml), "-c", str(bed.cluster_conf), "--state", str(state))
    assert r.returncode != 0
    assert "refused: the host computed sha256:" in r.stderr and digest in r.stderr, r.stderr
    assert "nothing was built" in r.stderr
    for h in bed.hosts:
        assert not _host_blob(bed, h, digest).exists()
        tmp = Path(testbed.host_image_store(bed, h)) / "tmp"
        assert not list(tmp.glob("*.partial")) if tmp.is_dir() else True
        assert state_entries(h.state_dir) == []
    assert _vm_netns(bed) == set()
    s = StateStore(state)
    try:
        assert s.scenarios() == [] and s.segments() == []
    finally:
        s.close()
