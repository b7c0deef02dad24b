"""Disks are read out of a package once: hashed while they are copied (the manifest check of
a boot disk is deferred to that copy), written sparse (zero blocks become holes), 0600, and a
raw disk is renamed into place rather than copied again."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.convert import SPARSE_BLOCK, extract_file
from ediv.ovf.envelope import FileRef
from ediv.ovf.importer import materialize, open_appliance
from ediv.ovf.package import open_package
from tests import ovf_factory as f


def patterned(path: Path) -> bytes:
    """Data, a long zero run, 5 bytes of data at an odd offset, a trailing zero run whose
    length is not a multiple of the sparse block."""
    data = (f.raw_disk(100_000, seed=3) + bytes(6 * SPARSE_BLOCK) + b"\x01\x02\x03\x04\x05"
            + bytes(5 * SPARSE_BLOCK + 123))
    path.write_bytes(data)
    return data


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_raw_disk_is_copied_sparse_private_and_exact(tmp_path):
    data = patterned(tmp_path / "orig.img")
    built = f.build_appliance(tmp_path, tmp_path / "orig.img", fmt="raw")
    appliance = open_appliance(built.path, defer_disks=True)
    assert {x.name: x.status for x in appliance.inspection.manifest.files} == {
        "router.ovf": "ok", "router-disk1.img": "deferred"}
    materialize(appliance, tmp_path / "out")
    image = tmp_path / "out" / "router1.img"
    assert image.read_bytes() == data
    assert os.stat(image).st_mode & 0o777 == 0o600
    # the zero runs are holes (where the filesystem has them: tmpfs and ext4 do)
    assert allocated(image) < len(data) - 4 * SPARSE_BLOCK
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["router1.img",
                                                                     "router1.ovfenv"]


def test_deferred_digest_still_refuses_a_tampered_disk(tmp_path):
    patterned(tmp_path / "orig.img")
    built = f.build_appliance(tmp_path, tmp_path / "orig.img", fmt="raw", tamper_disk=True)
    cli_mod._register()
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(cli_mod.cli, ["ovf", "convert", str(built.path), "-o",
                                    str(out / "lab.xml")])
    assert r.exit_code == 1
    assert ("package refused, nothing imported: manifest mismatch: router-disk1.img: "
            "SHA256 digest mismatch") in r.stderr
    assert list(out.iterdir()) == []  # nothing written, no staging folder left
    # without deferral the same package is refused before any copy
    with pytest.raises(InputError, match=r"manifest mismatch: router-disk1\.img"):
        open_appliance(built.path)


def test_gzip_file_is_hashed_as_stored_and_written_plain(tmp_path):
    data = patterned(tmp_path / "orig.img")
    stored = gzip.compress(data)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "x.ovf").write_text(f.descriptor(disk_href="disk.img.gz"))
    (tmp_path / "pkg" / "disk.img.gz").write_bytes(stored)
    with open_package(tmp_path / "pkg" / "x.ovf") as pkg:
        got = extract_file(pkg, FileRef("file1", "disk.img.gz", compression="gzip"),
                           tmp_path / "plain.img", ("SHA256", "SHA512"))
    assert got.digests == {"SHA256:disk.img.gz": hashlib.sha256(stored).hexdigest(),
                           "SHA512:disk.img.gz": hashlib.sha512(stored).hexdigest()}
    assert got.size == len(data) and (tmp_path / "plain.img").read_bytes() == data


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)")
def test_vmdk_converts_to_a_sparse_raw(tmp_path):
    data = patterned(tmp_path / "orig.img")
    built = f.build_appliance(tmp_path, tmp_path / "orig.img", fmt="vmdk")
    appliance = open_appliance(built.path, defer_disks=True)
    materialize(appliance, tmp_path / "out")
    image = tmp_path / "out" / "router1.img"
    got = image.read_bytes()  # VMDK sizes are whole sectors: padded with zeros
    assert got[:len(data)] == data and got[len(data):] == bytes(-len(data) % 512)
    assert allocated(image) < len(data) - 4 * SPARSE_BLOCK
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []
