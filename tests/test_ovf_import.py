"""``ediv ovf import PKG --scenario FILE``: VMs added to a scenario file after verification;
a bad package or a clash leaves the file and its folder exactly as they were."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.importer import import_into_scenario
from ediv.scenario import load_scenario
from tests import ovf_factory as f

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")

SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<!-- a lab: keep this comment -->
<vnuml>
  <global>
    <version>1.8</version>
    <simulation_name>lab</simulation_name>
  </global>
  <net name="Net0" mode="virtual_bridge"/>
  <vm name="pc1" type="container">
    <if id="1" net="Net0"><ipv4>198.18.3.2/24</ipv4></if>
  </vm>
</vnuml>
"""


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture(scope="module")
def ext2(tmp_path_factory) -> Path:
    return f.ext2_image(tmp_path_factory.mktemp("img") / "orig.img")


@pytest.fixture
def lab(tmp_path) -> Path:
    folder = tmp_path / "lab"
    folder.mkdir()
    path = folder / "lab.xml"
    path.write_text(SCENARIO)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_import_adds_vms_and_nets_keeps_comments_and_backup(cli, tmp_path, ext2, lab):
    signer = f.self_signed()
    built = f.build_appliance(tmp_path, ext2, sign_with=signer)
    r = CliRunner().invoke(cli, ["ovf", "import", str(built.path), "--scenario", str(lab),
                                 "--net", "lan=Net0", "--trust", str(built.trust)])
    assert r.exit_code == 0, r.output
    assert "added VMs router1 and nets mgmt" in r.output
    text = lab.read_text()
    assert "<!-- a lab: keep this comment -->" in text
    assert (lab.parent / "lab.xml.bak").read_text() == SCENARIO
    scenario, _ = load_scenario(lab, deployable=True)
    assert [n.name for n in scenario.nets] == ["Net0", "mgmt"]
    assert [v.name for v in scenario.vms] == ["pc1", "router1"]
    vm = scenario.vm("router1")
    assert (vm.type, vm.mem) == ("uml", "256M")
    assert [(i.id, i.net) for i in vm.interfaces] == [(1, "mgmt"), (2, "Net0")]
    assert Path(vm.filesystem.path) == lab.parent / "router1.img"
    assert subprocess.run(["cmp", str(ext2), vm.filesystem.path]).returncode == 0
    assert vm.filetrees[0].source == str(lab.parent / "router1.ovfenv")


def test_name_clash_changes_nothing(tmp_path, ext2, lab):
    built = f.build_appliance(tmp_path, ext2, system_id="pc1")
    before = snapshot(lab.parent)
    with pytest.raises(InputError, match="already has VMs named pc1"):
        import_into_scenario(built.path, lab)
    assert snapshot(lab.parent) == before


@pytest.mark.parametrize("case, opts", [
    ("tampered disk", {"tamper_disk": True}),
    ("tampered descriptor", {"tamper_descriptor": True}),
    ("wrong signature", {"wrong_signature": True, "sign_with": "good"}),
    ("expired certificate", {"sign_with": "expired"}),
    ("path traversal", {"extra_members": [("../evil.sh", b"#!/bin/sh\n")]}),
])
def test_bad_package_imports_nothing(cli, tmp_path, ext2, lab, case, opts):
    opts = dict(opts)
    if "sign_with" in opts:
        opts["sign_with"] = f.self_signed(expired=opts["sign_with"] == "expired")
    built = f.build_appliance(tmp_path, ext2, **opts)
    before = snapshot(lab.parent)
    args = ["ovf", "import", str(built.path), "--scenario", str(lab)]
    r = CliRunner().invoke(cli, args + (["--trust", str(built.trust)] if built.trust else []))
    assert r.exit_code == 1, r.output
    expected = {"tampered disk": "manifest mismatch: router-disk1.vmdk: SHA256 digest mismatch",
                "tampered descriptor": "manifest mismatch: router.ovf: SHA256 digest mismatch",
                "wrong signature": "signature invalid",
                "expired certificate": "signature expired",
                "path traversal": "path traversal"}[case]
    assert expected in r.output
    assert snapshot(lab.parent) == before, "the scenario folder changed"


def test_invalid_result_changes_nothing(tmp_path, ext2, lab):
    """A package whose VM would break the scenario (a net name VNUML refuses) is refused
    before anything is written."""
    built = f.build_appliance(tmp_path, ext2)
    before = snapshot(lab.parent)
    with pytest.raises(InputError):
        import_into_scenario(built.path, lab, net_map={"lan": "bad/name"})
    assert snapshot(lab.parent) == before
