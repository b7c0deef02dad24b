"""``<vm appliance="pkg.ova">``: validate, plan and split fill the VM from the verified
package; the scenario's own elements win; a bad package is an error at the VM's line and
nothing is imported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.appliance import CACHE_VAR, TRUST_VAR
from ediv.ovf.environment import read_environment
from ediv.scenario import load_scenario
from tests import ovf_factory as f

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")

SCENARIO = """<vnuml>
  <global><version>1.8</version><simulation_name>aplab</simulation_name></global>
  <net name="lan" mode="virtual_bridge"/>
  <net name="wan" mode="virtual_bridge"/>
  <vm name="fw" appliance="{pkg}">
    <if id="2" net="wan"><ipv4>198.18.7.1/24</ipv4></if>
  </vm>
  <vm name="fw2" appliance="{pkg}" type="uml"><mem>32M</mem></vm>
  <vm name="pc" type="container"><if id="1" net="lan"/></vm>
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
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_VAR, str(folder))
    monkeypatch.delenv(TRUST_VAR, raising=False)
    return folder


def write_lab(folder: Path, pkg: str = "router.ova") -> Path:
    path = folder / "lab.xml"
    path.write_text(SCENARIO.format(pkg=pkg))
    return path


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() \
        else []


def test_vms_are_filled_from_the_package(tmp_path, ext2, cache):
    f.build_appliance(tmp_path, ext2, networks=("lan", "dmz"),
                      properties={"hostname": "fw", "policy": "drop"})
    scenario, warnings = load_scenario(write_lab(tmp_path), deployable=True)
    fw, fw2 = scenario.vm("fw"), scenario.vm("fw2")
    assert (fw.type, fw.mem) == ("uml", "256M")  # from the package
    assert fw2.mem == "32M"  # the scenario's own <mem> wins
    # NIC 1 (lan) from the package, the scenario's <if id="2"> replaces NIC 2 (dmz)
    assert [(i.id, i.net, [a.address for a in i.addresses]) for i in fw.interfaces] == \
        [(1, "lan", []), (2, "wan", ["198.18.7.1/24"])]
    assert [(i.id, i.net) for i in fw2.interfaces] == [(1, "lan")]
    assert any("NIC 2 is on network 'dmz'" in d.message for d in warnings)
    assert fw.filesystem.path == fw2.filesystem.path  # converted once, in the cache
    assert Path(fw.filesystem.path).is_relative_to(cache)
    assert subprocess.run(["cmp", str(ext2), fw.filesystem.path]).returncode == 0
    envs = {vm.name: read_environment((Path(vm.filetrees[0].source) / "ovf-env.xml")
                                      .read_bytes()) for vm in (fw, fw2)}
    assert envs == {"fw": ("fw", {"hostname": "fw", "policy": "drop"}),
                    "fw2": ("fw2", {"hostname": "fw", "policy": "drop"})}
    assert fw.appliance == str(tmp_path / "router.ova")


def test_plan_and_split_use_the_appliance(cli, tmp_path, ext2, cache):
    f.build_appliance(tmp_path, ext2, networks=("lan", "wan"))
    lab = write_lab(tmp_path)
    r = CliRunner().invoke(cli, ["plan", str(lab), "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output[r.output.index("{"):])
    assert set(plan["allocation"]) == {"fw", "fw2", "pc"}
    r = CliRunner().invoke(cli, ["split", str(lab), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    parts = [load_scenario(p)[0] for p in sorted((tmp_path / "out").glob("*.xml"))]
    fw = next(vm for part in parts for vm in part.vms if vm.name == "fw")
    assert fw.filesystem is not None and Path(fw.filesystem.path).is_relative_to(cache)
    assert [(i.id, i.net) for i in fw.interfaces] == [(1, "lan"), (2, "wan")]


@pytest.mark.parametrize("case, opts, message", [
    ("tampered disk", {"tamper_disk": True}, "manifest mismatch"),
    ("expired certificate", {"sign_with": "expired"}, "signature expired"),
    ("path traversal", {"extra_members": [("../x", b"x")]}, "path traversal"),
])
def test_bad_appliance_is_an_error_and_imports_nothing(cli, tmp_path, ext2, cache, case, opts,
                                                       message, monkeypatch):
    opts = dict(opts)
    if "sign_with" in opts:
        opts["sign_with"] = f.self_signed(expired=True)
    built = f.build_appliance(tmp_path, ext2, **opts)
    if built.trust:
        monkeypatch.setenv(TRUST_VAR, str(built.trust))
    lab = write_lab(tmp_path)
    r = CliRunner().invoke(cli, ["validate", str(lab)])
    assert r.exit_code == 1
    expected = "member '../x'" if case == "path traversal" else \
        "package refused, nothing imported"
    assert f"lab.xml:5: vm 'fw': appliance router.ova: {expected}" in r.output
    assert message in r.output
    assert files(cache) == []


def test_missing_package(tmp_path, cache):
    lab = write_lab(tmp_path, "nowhere.ova")
    with pytest.raises(InputError, match=re.escape("lab.xml:5: vm 'fw': appliance nowhere.ova: "
                                                   "cannot read: No such file")):
        load_scenario(lab)


def test_scenario_without_appliances_does_not_touch_the_cache(tmp_path, cache):
    path = tmp_path / "plain.xml"
    path.write_text(SCENARIO.replace(' appliance="{pkg}"', ""))
    load_scenario(path)
    assert not cache.exists()
