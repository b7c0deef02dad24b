"""An OVF appliance imported through the WBEM server boots on a testbed host that never saw the
client's files: ``ediv ovf import --server`` (no --image-dir) uploads the disk into the
server's image store, the VM names ``image:sha256:HEX``, and the server's deploy ships the
image to the host by digest, where UML boots it. Release leaves nothing but the host's image
store, which keeps the image."""

from __future__ import annotations

import contextlib
import os
import subprocess
from functools import partial
from pathlib import Path

from ediv import testbed
from ediv.images.digest import file_digest, hex_of
from ediv.images.store import ImageStore
from tests import ovf_factory as f
from tests.conftest import EDIV, OVF_UML_BOOT, follow_job, state_entries

pytestmark = OVF_UML_BOOT

OPERATOR = ("otto", "o-pass")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
LAB = """<vnuml><global><version>1.8</version><simulation_name>srvboot</simulation_name>
<automac/><vm_mgmt type="none"/></global>
<net name="lan" mode="virtual_bridge"/>
<vm name="pc1" type="container"><if id="1" net="lan"><ipv4>198.18.11.2/24</ipv4></if></vm>
</vnuml>"""


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


_follow = partial(follow_job, timeout=600.0, interval=0.5)


def _state_change(conn, scenario, state: int):
    import pywbem

    rv, out = conn.InvokeMethod("RequestStateChange", scenario,
                                [("RequestedState", pywbem.Uint16(state))])
    if rv == 4096:
        done = _follow(conn, out["Job"])
        assert done["JobState"] == 7, done["ErrorDescription"]
    else:
        assert rv == 0, (rv, out)


def test_appliance_imported_through_the_server_boots_on_a_host(tmp_path, monkeypatch):
    import pywbem

    from ediv.agent.rootfs import build_busybox_rootfs
    from ediv.provider.auth import Role, add_user
    from ediv.provider.config import load_config
    from ediv.provider.engine_plugin import EnginePlugin
    from ediv.provider.server import serve

    for k in _CA_ENV:
        monkeypatch.delenv(k, raising=False)
    server_store = ImageStore(tmp_path / "server-images")
    monkeypatch.setenv("EDIV_IMAGES", str(server_store.root))  # the server's controller store
    (tmp_path / "client").mkdir()
    rootfs = build_busybox_rootfs(tmp_path / "client" / "rootfs.img")
    digest = file_digest(rootfs)
    built = f.build_appliance(tmp_path / "client", rootfs, stem="fw", fmt="vmdk", mem_mb=64,
                              networks=("lan",), system_id="fw1", properties={})

    bed_dir = tmp_path / "bed"
    bed = testbed.up(1, bed_dir, progress=lambda _m: None)
    (host,) = bed.hosts
    base = tmp_path / "server"
    cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
    cfg.cluster_file = bed.cluster_conf
    cfg.schema_cache_dir = base / "cache"
    add_user(cfg.users_file, OPERATOR[0], Role.OPERATOR, OPERATOR[1])
    plugin = EnginePlugin()
    handle = serve(cfg, plugins=[plugin])
    conn = pywbem.WBEMConnection(handle.url, OPERATOR, default_namespace="root/ediv",
                                 ca_certs=str(handle.config.cert_file), timeout=120)
    scenario = pywbem.CIMInstanceName("EDIV_Scenario", {
        "CreationClassName": "EDIV_Scenario", "Name": "srvboot"}, namespace="root/ediv")
    deployed = False
    try:
        (service,) = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
        settings = pywbem.CIMInstance("EDIV_ScenarioSettingData",
                                      properties={"ScenarioDefinition": LAB})
        assert conn.InvokeMethod("DefineSystem", service,
                                 [("SystemSettings", settings)])[0] == 0
        pw = tmp_path / "pw"
        pw.write_text(OPERATOR[1] + "\n")
        r = subprocess.run([*EDIV, "ovf", "import", str(built.path), "--scenario", "srvboot",
                            "--net", "lan=lan", "--server", handle.url, "--user", OPERATOR[0],
                            "--password-file", str(pw), "--ca-cert", str(cfg.cert_file)],
                           capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if k != "EDIV_IMAGES"})
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"uploaded {digest}" in r.stderr
        assert [m.digest for m in server_store.list()] == [digest]

        host_blob = Path(testbed.host_image_store(bed, host)) / "blobs" / "sha256" / \
            hex_of(digest)
        assert not host_blob.exists()
        _state_change(conn, scenario, 2)  # deploy: the image stage ships the blob
        deployed = True
        assert host_blob.is_file()
        assert subprocess.run(["cmp", str(rootfs), str(host_blob)]).returncode == 0
        vms = {v["ElementName"]: v for v in conn.EnumerateInstances("EDIV_VirtualSystem")
               if v["Name"].startswith("srvboot/")}
        assert vms["fw1"]["EnabledState"] == 2, vms["fw1"]
        # the VM runs the shipped image: its /bin/sh is busybox (the host's is not)
        out = subprocess.run([*EDIV, "console", "--state", str(cfg.state_path), "-c",
                              str(bed.cluster_conf), "srvboot", "fw1", "--", "readlink",
                              "/bin/sh"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "/bin/busybox", out
        _state_change(conn, scenario, 3)  # release, the definition kept
        deployed = False
        assert state_entries(host.state_dir) == []
        assert host_blob.is_file()  # the host's store keeps the image for the next deploy
    finally:
        if deployed:
            with contextlib.suppress(Exception):  # cleaning up after a failure
                _state_change(conn, scenario, 3)
        handle.stop()
        plugin.jobs.wait_all(120)
        testbed.down(bed_dir, progress=lambda _m: None)
    assert not [n for n in _netns() if n.startswith(bed.prefix)]
