"""``ediv ovf export``: a scenario as an OVF 2.0 package, verified by ``inspect`` and
imported again with the same VMs, memory, nets and disk bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ediv.client import cli as cli_mod
from ediv.ovf.importer import materialize, open_appliance
from ediv.ovf.inspect import inspect_package
from ediv.scenario import load_scenario
from ediv.state import StateStore
from tests import ovf_factory as f

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")

SCENARIO = """<vnuml>
  <global><version>1.8</version><simulation_name>tut</simulation_name></global>
  <net name="Net0" mode="virtual_bridge"/>
  <net name="Net1" mode="virtual_bridge"/>
  <vm name="r1" type="uml">
    <filesystem type="cow">{image}</filesystem>
    <mem>96M</mem>
    <if id="1" net="Net0"><mac>02:fd:00:00:00:01</mac><ipv4>198.18.1.1/24</ipv4></if>
    <if id="2" net="Net1"/>
  </vm>
  <vm name="r2" type="uml">
    <filesystem type="cow">{image}</filesystem>
    <mem>64M</mem>
    <if id="1" net="Net1"/>
  </vm>
  <vm name="c1" type="container">
    <mem>32M</mem>
    <if id="1" net="Net0"/>
  </vm>
</vnuml>
"""


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture
def scenario(tmp_path) -> Path:
    image = f.ext2_image(tmp_path / "rootfs.img")
    path = tmp_path / "tut.xml"
    path.write_text(SCENARIO.format(image=image))
    return path


def test_export_inspect_import_round_trip(cli, tmp_path, scenario):
    ova = tmp_path / "tut.ova"
    r = CliRunner().invoke(cli, ["ovf", "export", str(scenario), "-o", str(ova)])
    assert r.exit_code == 0, r.output
    with tarfile.open(ova) as tar:
        names = tar.getnames()
    assert names == ["tut.ovf", "tut.mf", "tut-disk1.vmdk"]  # shared image stored once

    r = CliRunner().invoke(cli, ["ovf", "inspect", str(ova), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["ovf_version"] == "2.0"
    assert data["manifest"]["status"] == "ok"
    assert [(s["name"], s["memory_mb"], [n["network"] for n in s["nics"]])
            for s in data["systems"]] == [("r1", 96, ["Net0", "Net1"]), ("r2", 64, ["Net1"]),
                                          ("c1", 32, ["Net0"])]
    assert data["networks"] == ["Net0", "Net1"]

    appliance = open_appliance(ova)
    materialize(appliance, tmp_path / "back")
    original, _ = load_scenario(scenario)
    assert [(v.name, v.type, v.mem, [(i.id, i.net) for i in v.interfaces])
            for v in appliance.vms] == \
        [(v.name, v.type, v.mem, [(i.id, i.net) for i in v.interfaces]) for v in original.vms]
    assert appliance.vms[0].interfaces[0].mac == "02:fd:00:00:00:01"
    r1, r2, c1 = appliance.vms
    assert r1.filesystem.path == r2.filesystem.path  # one image, shared again
    assert c1.filesystem is None
    assert subprocess.run(["cmp", original.vms[0].filesystem.path,
                           r1.filesystem.path]).returncode == 0


def test_signed_export_verifies(cli, tmp_path, scenario):
    signer = f.self_signed("ediv exporter")
    key = tmp_path / "key.pem"
    key.write_bytes(signer.key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    cert = tmp_path / "cert.pem"
    cert.write_bytes(signer.cert_pem)
    ova = tmp_path / "signed.ova"
    r = CliRunner().invoke(cli, ["ovf", "export", str(scenario), "-o", str(ova), "--sign",
                                 str(key), "--cert", str(cert), "--disk-format", "raw"])
    assert r.exit_code == 0, r.output
    with tarfile.open(ova) as tar:
        assert tar.getnames() == ["signed.ovf", "signed.mf", "signed.cert", "signed-disk1.img"]
    result = inspect_package(ova, trust=cert)
    assert (result.manifest.status, result.signature.status) == ("ok", "ok")
    assert result.envelope.disks[0].format == f.RAW
    # a package signed by someone not trusted is refused on import
    other = tmp_path / "other.pem"
    other.write_bytes(f.self_signed("someone else").cert_pem)
    assert inspect_package(ova, trust=other).signature.status == "untrusted"


def test_key_and_certificate_must_match(cli, tmp_path, scenario):
    a, b = f.self_signed("a"), f.self_signed("b")
    key = tmp_path / "key.pem"
    key.write_bytes(a.key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    cert = tmp_path / "cert.pem"
    cert.write_bytes(b.cert_pem)
    ova = tmp_path / "x.ova"
    r = CliRunner().invoke(cli, ["ovf", "export", str(scenario), "-o", str(ova), "--sign",
                                 str(key), "--cert", str(cert)])
    assert r.exit_code == 1
    assert "does not belong to the signing key" in r.output
    assert not ova.exists()


def test_export_by_name_from_the_state_store(cli, tmp_path, scenario):
    state = tmp_path / "state.db"
    store = StateStore(state)
    try:
        store.create_scenario("tut", scenario.read_text(), basedir=str(tmp_path),
                              algorithm=None, state="defined")
    finally:
        store.close()
    ova = tmp_path / "byname.ova"
    r = CliRunner().invoke(cli, ["ovf", "export", "tut", "--state", str(state), "-o", str(ova)])
    assert r.exit_code == 0, r.output
    assert [s.id for s in inspect_package(ova).envelope.systems()] == ["r1", "r2", "c1"]
    r = CliRunner().invoke(cli, ["ovf", "export", "nope", "--state", str(state), "-o",
                                 str(tmp_path / "n.ova")])
    assert r.exit_code == 1 and "nor a scenario of that name" in r.output
