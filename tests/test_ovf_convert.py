"""``ediv ovf convert`` and ``ediv.ovf.convert``: real disks (ext2 in streamOptimized VMDK,
qcow2, raw) made with mkfs.ext2 and qemu-img, converted back byte for byte; bad packages
rejected before anything is written."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.convert import detect_format, format_from_uri, to_raw
from ediv.ovf.environment import read_environment
from ediv.ovf.importer import materialize, open_appliance
from ediv.scenario import load_scenario
from tests import ovf_factory as f

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture(scope="module")
def ext2(tmp_path_factory) -> Path:
    return f.ext2_image(tmp_path_factory.mktemp("img") / "orig.img",
                        {"etc/motd": "appliance disk\n", "bin/hello": "#!/bin/sh\necho hi\n"})


def cmp(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("fmt", ["vmdk", "qcow2", "raw"])
def test_disk_converts_back_byte_identical(tmp_path, ext2, fmt):
    built = f.build_appliance(tmp_path, ext2, fmt=fmt)
    appliance = open_appliance(built.path)
    materialize(appliance, tmp_path / "out")
    (vm,) = appliance.vms
    image = Path(vm.filesystem.path)
    assert image == tmp_path / "out" / "router1.img" and vm.filesystem.type == "cow"
    assert cmp(ext2, image), f"{fmt} disk did not convert back to the original ext2 image"
    assert [w for w in appliance.warnings if "not signed" not in w] == []
    assert image.stat().st_mode & 0o777 == 0o600  # disk images are private


def test_cli_convert_writes_scenario_disk_and_environment(cli, tmp_path, ext2):
    signer = f.self_signed()
    built = f.build_appliance(tmp_path, ext2, sign_with=signer,
                              properties={"hostname": "fw1", "dns": "198.18.0.53"})
    out = tmp_path / "out" / "fw.xml"
    out.parent.mkdir()
    r = CliRunner().invoke(cli, ["ovf", "convert", str(built.path), "--net", "lan=Net0",
                                 "--trust", str(built.trust), "-o", str(out)])
    assert r.exit_code == 0, r.output
    scenario, _ = load_scenario(out, deployable=True)
    assert [n.name for n in scenario.nets] == ["mgmt", "Net0"]
    (vm,) = scenario.vms
    assert (vm.name, vm.type, vm.mem) == ("router1", "uml", "256M")
    assert [(i.id, i.net) for i in vm.interfaces] == [(1, "mgmt"), (2, "Net0")]
    assert cmp(ext2, Path(vm.filesystem.path))
    (tree,) = vm.filetrees
    assert (tree.root, tree.seq) == ("/", "on_boot")
    assert listing(Path(tree.source)) == ["ovf-env.xml"]
    vm_id, props = read_environment((Path(tree.source) / "ovf-env.xml").read_bytes())
    assert vm_id == "router1"
    assert props == {"hostname": "fw1", "dns": "198.18.0.53"}


def test_cli_convert_vms_only(cli, tmp_path, ext2):
    built = f.build_appliance(tmp_path, ext2, fmt="qcow2")
    out = tmp_path / "vms.xml"
    r = CliRunner().invoke(cli, ["ovf", "convert", str(built.path), "--vms-only",
                                 "--type", "uml", "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith('<vm name="router1" type="uml">') and "<vnuml>" not in text
    assert (tmp_path / "router1.img").is_file()


def test_container_type_uses_no_disk(tmp_path, ext2):
    built = f.build_appliance(tmp_path, ext2)
    appliance = open_appliance(built.path, vm_type="container")
    materialize(appliance, tmp_path / "out")
    (vm,) = appliance.vms
    assert vm.type == "container" and vm.filesystem is None
    assert listing(tmp_path / "out") == ["router1.ovfenv", "router1.ovfenv/ovf-env.xml"]
    assert any("do not use the appliance's disk" in w for w in appliance.warnings)


BAD = {
    "tampered disk": ({"tamper_disk": True}, "manifest mismatch"),
    "tampered descriptor": ({"tamper_descriptor": True}, "manifest mismatch"),
    "wrong signature": ({"wrong_signature": True, "sign": "good"}, "signature invalid"),
    "expired certificate": ({"sign": "expired"}, "signature expired"),
    "untrusted signer": ({"sign": "untrusted"}, "signature untrusted"),
}


def bad_package(tmp_path: Path, ext2: Path, case: str) -> tuple[Path, Path | None]:
    opts, _ = BAD[case]
    opts = dict(opts)
    sign = opts.pop("sign", None)
    signer = {"good": f.self_signed(), "expired": f.self_signed(expired=True),
              "untrusted": f.self_signed()}.get(sign)
    built = f.build_appliance(tmp_path, ext2, sign_with=signer, **opts)
    trust = built.trust
    if sign == "untrusted":
        trust.write_bytes(f.self_signed("Someone Else").cert_pem)
    return built.path, trust


@pytest.mark.parametrize("case", list(BAD))
def test_bad_package_converts_nothing(cli, tmp_path, ext2, case):
    pkg, trust = bad_package(tmp_path, ext2, case)
    out = tmp_path / "out"
    out.mkdir()
    args = ["ovf", "convert", str(pkg), "-o", str(out / "s.xml")]
    if case == "untrusted signer":  # refused only when the policy requires a signature
        args.append("--require-signature")
    r = CliRunner().invoke(cli, args + (["--trust", str(trust)] if trust else []))
    assert r.exit_code == 1, r.output
    assert "package refused, nothing imported" in r.output
    assert BAD[case][1] in r.output
    assert listing(out) == []


def test_untrusted_signer_converts_with_a_warning(cli, tmp_path, ext2):
    pkg, trust = bad_package(tmp_path, ext2, "untrusted signer")
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(cli, ["ovf", "convert", str(pkg), "-o", str(out / "s.xml"),
                                 "--trust", str(trust)])
    assert r.exit_code == 0, r.output
    assert "warning: signature untrusted" in r.output and "self-signed" in r.output
    assert (out / "router1.img").is_file()


def test_path_traversal_member_is_refused(cli, tmp_path, ext2):
    built = f.build_appliance(tmp_path, ext2, extra_members=[("../../etc/evil", b"x")])
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(cli, ["ovf", "convert", str(built.path), "-o", str(out / "s.xml")])
    assert r.exit_code == 1
    assert "path traversal" in r.output
    assert listing(out) == []


def test_qcow2_with_backing_file_is_refused(tmp_path, ext2):
    """A disk that makes qemu-img read a file of this machine never gets converted."""
    secret = tmp_path / "secret.raw"
    shutil.copyfile(ext2, secret)
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret),
                    str(evil)], check=True)
    with pytest.raises(InputError, match="backing file"):
        to_raw(evil, tmp_path / "out.img")
    assert not (tmp_path / "out.img").exists()


def test_vmdk_text_descriptor_is_refused(tmp_path):
    desc = tmp_path / "d.vmdk"
    desc.write_text('# Disk DescriptorFile\nversion=1\nRW 2048 FLAT "/etc/shadow" 0\n')
    assert detect_format(desc) == "vmdk-descriptor"
    with pytest.raises(InputError, match="refers to other files"):
        to_raw(desc, tmp_path / "out.img")


def test_gzip_compressed_disk_file(tmp_path, ext2):
    """ovf:compression="gzip": the stored (compressed) bytes are what the manifest lists."""
    vmdk = f.disk_as(ext2, "vmdk", tmp_path / "d.vmdk")
    stored = gzip.compress(vmdk.read_bytes())
    ovf = f.appliance_descriptor(disk_href="d.vmdk", disk_size=len(stored)).replace(
        'ovf:href="d.vmdk"', 'ovf:href="d.vmdk" ovf:compression="gzip"').encode()
    mf = f.manifest({"a.ovf": ovf, "d.vmdk": stored})
    pkg = f.write_ova(tmp_path / "a.ova", [("a.ovf", ovf), ("a.mf", mf), ("d.vmdk", stored)])
    appliance = open_appliance(pkg)
    materialize(appliance, tmp_path / "out")
    assert cmp(ext2, Path(appliance.vms[0].filesystem.path))


def test_disk_changed_after_verification_is_refused(tmp_path, ext2):
    """The copy is hashed again: a package swapped between check and use is caught."""
    built = f.build_appliance(tmp_path, ext2, fmt="raw")
    appliance = open_appliance(built.path)
    f.build_appliance(tmp_path, ext2, fmt="raw", tamper_disk=True)  # same path, new bytes
    with pytest.raises(InputError, match="changed while it was being imported"):
        materialize(appliance, tmp_path / "out")
    assert listing(tmp_path / "out") == []


def test_existing_files_are_not_overwritten(tmp_path, ext2):
    built = f.build_appliance(tmp_path, ext2, fmt="raw")
    out = tmp_path / "out"
    out.mkdir()
    (out / "router1.img").write_bytes(b"mine")
    with pytest.raises(InputError, match="refusing to overwrite"):
        materialize(open_appliance(built.path), out)
    assert (out / "router1.img").read_bytes() == b"mine"
    assert listing(out) == ["router1.img"]


@pytest.mark.parametrize("uri, fmt", [
    (f.VMDK_STREAM, "vmdk"), (f.QCOW2, "qcow2"), (f.RAW, "raw"),
    ("http://technet.microsoft.com/en-us/library/bb676673.aspx", "vpc"), (None, None)])
def test_format_uris(uri, fmt):
    assert format_from_uri(uri) == fmt


def test_declared_format_disagreeing_with_the_file_is_a_warning(tmp_path, ext2):
    qcow = f.disk_as(ext2, "qcow2", tmp_path / "d.qcow2")
    warnings: list[str] = []
    assert to_raw(qcow, tmp_path / "out.img", f.VMDK_STREAM, warnings) == "qcow2"
    assert cmp(ext2, tmp_path / "out.img")
    assert warnings and "converted as qcow2" in warnings[0]


def test_big_disk_is_streamed(tmp_path):
    """A 64 MiB raw disk goes through without being read whole (hash checked on the way)."""
    raw = tmp_path / "big.img"
    with raw.open("wb") as out:
        for i in range(64):
            out.write(hashlib.sha256(bytes([i])).digest() * 32768)
    built = f.build_appliance(tmp_path, raw, fmt="raw")
    appliance = open_appliance(built.path)
    materialize(appliance, tmp_path / "out")
    assert cmp(raw, Path(appliance.vms[0].filesystem.path))


def test_corpus_vmdk_converts(corpus, tmp_path):
    """A third-party streamOptimized VMDK (COT's test package) becomes a raw image of the
    disk's capacity."""
    pkg = corpus / "ovf/cot/input.ovf"
    if not (corpus / "ovf/cot/input.vmdk").is_file():
        pytest.skip(f"corpus file {pkg.parent / 'input.vmdk'} not found")
    appliance = open_appliance(pkg)
    materialize(appliance, tmp_path / "out")
    (vm,) = appliance.vms
    image = Path(vm.filesystem.path)
    assert detect_format(image) == "raw"
    assert image.stat().st_size == appliance.envelope.disks[0].capacity_bytes


def test_corpus_truncated_vmdk_is_a_clear_error(cli, corpus, tmp_path):
    pkg = corpus / "ovf/govmomi/vapi-testdata/ttylinux-pc_i486-16.1.ova"
    if not pkg.is_file():
        pytest.skip(f"corpus file {pkg} not found")
    r = CliRunner().invoke(cli, ["ovf", "convert", str(pkg), "-o", str(tmp_path / "s.xml")])
    assert r.exit_code == 1
    assert "disk ttylinux-pc_i486-16.1-disk1.vmdk: reading the vmdk header failed" in r.output
    assert listing(tmp_path) == []
