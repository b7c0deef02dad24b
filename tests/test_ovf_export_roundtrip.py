"""``ediv ovf export``: by name while the scenario is deployed (its images locked the way
UML's ubd driver locks them), and a round trip that keeps ProductSection properties, net
types, interface ids and addresses and the VM order (an ediv section marked
``ovf:required="false"`` plus standard sections)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from ediv.client import cli as cli_mod
from ediv.ovf.environment import environment_xml, read_environment
from ediv.ovf.importer import materialize, open_appliance
from ediv.ovf.inspect import inspect_package
from ediv.ovf.translate import to_scenario
from ediv.scenario import load_scenario
from ediv.state import StateStore
from tests import ovf_factory as f

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")

SCENARIO = """<vnuml>
  <global><version>1.8</version><simulation_name>rt</simulation_name></global>
  <net name="Net0" mode="virtual_bridge"/>
  <net name="link" mode="uml_switch" type="ppp"/>
  <vm name="r1" type="uml" order="2">
    <filesystem type="cow">{image}</filesystem>
    <mem>96M</mem>
    <if id="1" net="Net0"><ipv4>198.18.1.1/24</ipv4><ipv6>2001:db8::1/64</ipv6></if>
    <if id="3" net="link"><ipv4 mask="255.255.255.252">198.18.2.1</ipv4></if>
    <filetree seq="on_boot" root="/">{env}</filetree>
  </vm>
  <vm name="r2" type="uml" order="1">
    <filesystem type="direct">{image2}</filesystem>
    <mem>64M</mem>
    <if id="1" net="link"><ipv4>198.18.2.2/30</ipv4></if>
  </vm>
</vnuml>
"""
# what the UML ubd driver does to an image it opens: a whole-file POSIX lock (F_SETLK),
# exclusive when it writes to it; held until the "VM" is told to stop
LOCKER = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture
def scenario(tmp_path) -> Path:
    image = f.ext2_image(tmp_path / "rootfs.img")
    image2 = f.ext2_image(tmp_path / "rootfs2.img", {"etc/hostname": "r2\n"})
    env = tmp_path / "r1.ovfenv"
    env.mkdir()
    (env / "ovf-env.xml").write_bytes(environment_xml("r1", [("hostname", "edge1"),
                                                              ("vendor.role", "core")]))
    path = tmp_path / "rt.xml"
    path.write_text(SCENARIO.format(image=image, image2=image2, env=env))
    return path


def run(cli, *args):
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, ["ovf", *map(str, args)])


def test_export_by_name_of_a_deployed_scenario_with_locked_images(cli, tmp_path, scenario):
    state = tmp_path / "state.db"
    store = StateStore(state)
    try:
        store.create_scenario("rt", scenario.read_text(), basedir=str(tmp_path),
                              algorithm=None, state="deployed")
    finally:
        store.close()
    lockers = [subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / name)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for name in ("rootfs.img", "rootfs2.img")]
    try:
        for p in lockers:
            assert p.stdout.readline().strip() == "locked"
        # the lock is real: qemu-img, as ediv used to run it, cannot open the image
        plain = subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk",
                                str(tmp_path / "rootfs.img"), str(tmp_path / "x.vmdk")],
                               capture_output=True, text=True)
        assert plain.returncode != 0 and "lock" in plain.stderr
        r = run(cli, "export", "rt", "--state", state, "-o", tmp_path / "rt.ova")
        assert r.exit_code == 0, r.output + r.stderr
        assert ("warning: vm r2: its image " + str(tmp_path / "rootfs2.img")
                + " is in use by the running VM (filesystem type direct)") in r.stderr
    finally:
        for p in lockers:
            p.communicate("")
    result = inspect_package(tmp_path / "rt.ova")
    assert result.manifest.status == "ok"
    back = open_appliance(tmp_path / "rt.ova")
    materialize(back, tmp_path / "back")
    assert subprocess.run(["cmp", str(tmp_path / "rootfs2.img"),
                           back.vms[1].filesystem.path]).returncode == 0


def test_round_trip_keeps_properties_net_types_addresses_and_order(cli, tmp_path, scenario):
    ova = tmp_path / "rt.ova"
    r = run(cli, "export", scenario, "-o", ova)
    assert r.exit_code == 0, r.output + r.stderr
    # other OVF consumers may skip the ediv section: it says so, and ediv reports nothing
    with tarfile.open(ova) as tar:
        root = etree.fromstring(tar.extractfile("rt.ovf").read())
    (section,) = root.iter("{urn:x-ediv:ovf:1}ScenarioSection")
    assert section.get("{http://schemas.dmtf.org/ovf/envelope/2}required") == "false"
    result = inspect_package(ova)
    assert result.envelope.unknown_required == [] and result.to_json()["refusals"] == []
    assert [p["key"] for p in result.to_json()["properties"]] == ["hostname", "vendor.role"]

    out = tmp_path / "back" / "rt.xml"
    out.parent.mkdir()
    r = run(cli, "convert", ova, "-o", out)
    assert r.exit_code == 0, r.stderr
    back, _ = load_scenario(out)
    original, _ = load_scenario(scenario)
    assert [(n.name, n.type) for n in back.nets] == [("Net0", "lan"), ("link", "ppp")]
    assert {n.name: n.mode for n in back.nets}["link"] == "uml_switch"

    def shape(s):
        return [(v.name, v.order, v.mem,
                 [(i.id, i.net, [(a.family, a.address, a.mask) for a in i.addresses])
                  for i in v.interfaces]) for v in s.vms]

    assert shape(back) == shape(original)
    env_dir = Path(back.vm("r1").filetrees[0].source)
    assert read_environment((env_dir / "ovf-env.xml").read_bytes()) == (
        "r1", {"hostname": "edge1", "vendor.role": "core"})


def test_packages_without_the_section_translate_as_before(tmp_path):
    (tmp_path / "x.ovf").write_text(f.descriptor(networks=("a", "b")))
    appliance = open_appliance(tmp_path / "x.ovf", vm_type="container")
    scenario = to_scenario(appliance.vms, "x", envelope=appliance.envelope)
    assert [(n.name, n.type, n.mode) for n in scenario.nets] == [
        ("a", "lan", "virtual_bridge"), ("b", "lan", "virtual_bridge")]
    assert [(i.id, i.addresses) for i in appliance.vms[0].interfaces] == [(1, []), (2, [])]
