"""The routing lab of the README, for real: an FRR image built with ``ediv image build``
(cached between runs and CI steps, tests/image_cache.py), examples/ospf-ring.xml deployed
unchanged across a 3-host testbed once as UML VMs and once as container VMs (the hosts'
vm_type decides), every OSPF adjacency Full, a ping across the ring, and a release that
leaves nothing but the image in the stores."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ediv import testbed
from ediv.images.digest import hex_of
from ediv.images.store import ImageStore
from tests.conftest import EXAMPLES, state_entries
from tests.image_cache import FRR_PACKAGES, build_cached, cached, mirror_error

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (testbed, image build, VMs)"),
    pytest.mark.skipif(not Path(testbed.SSHD).exists(), reason="openssh-server not installed"),
]

EDIV = [sys.executable, "-m", "ediv.client.cli"]
SCENARIO = EXAMPLES / "ospf-ring.xml"
ROUTERS = [f"r{n}" for n in range(1, 6)]
CONVERGE_WITHIN = 180.0  # seconds; FRR's timers in the lab are hello 1 s, dead 4 s
ROUTES_WITHIN = 60.0  # from all adjacencies Full to r1 reaching r3's and r4's router ids
UML_KERNEL = "/usr/bin/linux"


@pytest.fixture(scope="module")
def frr_image() -> Path:
    """The FRR image's file in the test cache (built through the CLI unless cached)."""
    if cached(FRR_PACKAGES) is None:
        if shutil.which("mmdebstrap") is None:
            pytest.skip("mmdebstrap missing (apt-get install mmdebstrap)")
        why = mirror_error()
        if why:
            pytest.skip(why)
    store, name = build_cached(FRR_PACKAGES, stale_prefix="test-")
    return store.path(name)


@pytest.fixture(scope="module")
def lab(frr_image, tmp_path_factory):
    """A 3-host testbed, and the controller's image store holding the FRR image under the
    name the example uses (``ospf-frr``)."""
    d = tmp_path_factory.mktemp("ospf")
    store = ImageStore(d / "images")
    m = store.import_file(frr_image, "ospf-frr")
    tb = testbed.up(3, d / "bed", progress=lambda _m: None)
    try:
        yield tb, store, m.digest, d
    finally:
        testbed.down(d / "bed", progress=lambda _m: None)


def _cluster_with(tb, vm_type: str, d: Path) -> Path:
    text = Path(tb.cluster_conf).read_text()
    path = d / f"cluster-{vm_type}.conf"
    path.write_text(re.sub(r"(?m)^vm_type = \w+$", f"vm_type = {vm_type}", text))
    return path


def _ediv(store: ImageStore, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*EDIV, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "EDIV_IMAGES": str(store.root)})


def _full_neighbors(output: str) -> int:
    return len(re.findall(r"^198\.18\.51\.\d+\s+\d+\s+Full/", output, re.M))


def _wait_converged(store: ImageStore, state: str) -> dict[str, str]:
    """Poll ``exec neighbors`` until every router has both its neighbors Full (bounded)."""
    deadline = time.monotonic() + CONVERGE_WITHIN
    last: dict[str, str] = {}
    while True:
        r = _ediv(store, "exec", "ospf-ring", "neighbors", "--state", state, "--json",
                  timeout=300)
        if r.stdout.strip():
            last = {x["vm"]: x["output"] for x in json.loads(r.stdout)}
        if sorted(last) == ROUTERS and all(_full_neighbors(o) == 2 for o in last.values()):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"OSPF did not converge in {CONVERGE_WITHIN:.0f}s:\n"
                        + "\n".join(f"{v}: {o}" for v, o in sorted(last.items())))
        time.sleep(2)


def _netns(tb) -> set[str]:
    """The VM namespaces of this testbed's agents (``ediv-<key>-<host id>-N``; other tests
    on the machine may have theirs)."""
    from ediv.agent.naming import b36

    ids = {b36(os.stat(f"/run/netns/{h.netns}").st_ino % 36**5) for h in tb.hosts}
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if n.startswith("ediv-") and n.split("-")[2:3]
            and n.split("-")[2] in ids}


def _loops_of(path: Path) -> str:
    return subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True,
                          check=False).stdout.strip()


@pytest.mark.parametrize("vm_type", ["uml", "container"])
def test_ospf_ring_converges_and_pings(lab, vm_type):
    tb, store, digest, d = lab
    if vm_type == "uml" and not os.access(UML_KERNEL, os.X_OK):
        pytest.skip(f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
    cluster = _cluster_with(tb, vm_type, d)
    state = str(d / f"state-{vm_type}.db")
    before = _netns(tb)
    dep = _ediv(store, "deploy", str(SCENARIO), "-c", str(cluster), "--state", state)
    try:
        assert dep.returncode == 0, dep.stderr[-3000:]
        # the image went to each host once (whichever test ran first), by digest
        steps = re.findall(r"host (h\d) image ospf-frr [0-9a-f]{12}: (uploaded|present)",
                           dep.stderr)
        assert sorted(h for h, _ in steps) == [h.name for h in tb.hosts], dep.stderr[-3000:]
        status = json.loads(_ediv(store, "status", "ospf-ring", "--state", state,
                                  "--json").stdout)
        vms = status["vms"]
        assert {v["type"] for v in vms} == {vm_type}, vms
        assert len({v["host"] for v in vms}) == 3, vms  # the ring spans the three hosts

        neighbors = _wait_converged(store, state)
        assert sum(_full_neighbors(o) for o in neighbors.values()) == 10  # 5 links, 2 ends
        # Full adjacencies come before the routes: SPF runs and zebra installs them a moment
        # later (seconds on a loaded machine), so the ping is retried, bounded
        deadline = time.monotonic() + ROUTES_WITHIN
        while True:
            check = _ediv(store, "exec", "ospf-ring", "check", "--state", state, "--json")
            (r1,) = json.loads(check.stdout)
            if r1["exit_code"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert r1["exit_code"] == 0, r1
        assert re.search(r"64 bytes from 198\.18\.51\.3: icmp_seq=1", r1["output"]), r1

        # FRR runs in the VM's own kernel under UML, the host's in a container
        con = _ediv(store, "console", "ospf-ring", "r3", "--state", state, "--",
                    "sh", "-c", "uname -r; vtysh -c 'show ip ospf neighbor'", timeout=120)
        assert con.returncode == 0, con.stderr
        kernel = con.stdout.splitlines()[0].strip()
        assert (kernel != os.uname().release) == (vm_type == "uml"), kernel
        assert _full_neighbors(con.stdout) == 2, con.stdout
    finally:
        rel = _ediv(store, "release", "ospf-ring", "--state", state)
    assert rel.returncode == 0, rel.stderr
    # nothing left: namespaces, agent state, links on the hosts, loop devices
    assert _netns(tb) == before == set()
    for h in tb.hosts:
        assert state_entries(h.state_dir) == [], h.name
        links = subprocess.run(["ip", "-n", h.netns, "-br", "link"], capture_output=True,
                               text=True).stdout.split("\n")
        assert {x.split()[0].split("@")[0] for x in links if x.strip()} == {"lo", "eth0"}
        blob = Path(testbed.host_image_store(tb, h)) / "blobs" / "sha256" / hex_of(digest)
        assert blob.is_file(), h.name  # the host's image store keeps the image
        assert _loops_of(blob) == ""
    assert store.verify("ospf-frr")  # and so does the controller's, unchanged
