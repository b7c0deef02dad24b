"""Disk files of packages: no host file gets through, DSP0243 chunking and compression, caps.

Every package is built here; the "secret" a hostile image points at is a file this test
creates in its own temp dir (qemu-img create with data_file zeroes its target).
"""

from __future__ import annotations

import gzip
import subprocess
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf import limits
from ediv.ovf.importer import materialize, open_appliance
from tests import ovf_factory as f

MARKER = b"EDIV-TEST-SECRET-7f3a9c"


@pytest.fixture(scope="module")
def cli():
    from ediv.client import ovf_cmd

    ovf_cmd.register(cli_mod.cli)
    return cli_mod.cli


@pytest.fixture(scope="module")
def ext2(tmp_path_factory) -> Path:
    return f.ext2_image(tmp_path_factory.mktemp("img") / "root.ext2",
                        {"etc/motd": "chunked appliance\n"})


def convert(cli, pkg: Path, out: Path, *extra: str):
    out.mkdir(exist_ok=True)
    return CliRunner().invoke(cli, ["ovf", "convert", str(pkg), "-o", str(out / "s.xml"),
                                    *extra])


def tree_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


# -- item 1: images naming host files --------------------------------------------------------
def test_qcow2_external_data_file_is_refused_and_the_secret_never_leaks(cli, tmp_path):
    secret_dir = tmp_path / "host"
    secret_dir.mkdir()
    secret = secret_dir / "secret.bin"
    evil = secret_dir / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={secret}", str(evil), "1M")
    with secret.open("r+b") as fh:  # the "host file" the image reads its clusters from
        fh.write(MARKER * 64)
    built = f.build_stored(tmp_path, evil.read_bytes(), fmt="qcow2")
    out = tmp_path / "out"
    r = convert(cli, built.path, out)
    assert r.exit_code == 1, r.output
    assert "external data file" in r.output and "refused" in r.output
    assert "Traceback" not in r.output
    assert list(out.iterdir()) == []
    assert MARKER not in r.output.encode() and MARKER not in tree_bytes(out)
    # the temp copies are gone too: nothing of the package is left beside the output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ediv")] == []
    # inspect reads the member in place, and refuses it too (exit 1: not a usable package)
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(built.path)])
    assert r.exit_code == 1 and "external data file" in r.output, r.output
    assert MARKER not in r.output.encode()


def test_inspect_reads_disks_in_place_in_a_folder_package(cli, tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "1M")
    folder = tmp_path / "pkg"
    folder.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
             str(folder / "router-disk1.qcow2"))
    (folder / "router.ovf").write_text(f.appliance_descriptor(
        disk_href="router-disk1.qcow2", fmt="qcow2",
        disk_size=(folder / "router-disk1.qcow2").stat().st_size))
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(folder)])
    assert r.exit_code == 1 and "backing file" in r.output, r.output


def test_inspect_accepts_good_disks_in_place(cli, tmp_path, ext2):
    for fmt in ("vmdk", "qcow2"):
        (tmp_path / fmt).mkdir()
        built = f.build_appliance(tmp_path / fmt, ext2, fmt=fmt)
        r = CliRunner().invoke(cli, ["ovf", "inspect", str(built.path)])
        assert r.exit_code == 0, r.output
        assert "header" not in r.output and "refused" not in r.output


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])  # vmdk: parentFileNameHint
def test_backing_file_refused_through_a_package(cli, tmp_path, fmt):
    base = tmp_path / f"base.{fmt}"
    qemu_img("create", "-q", "-f", fmt, str(base), "1M")
    child = tmp_path / f"child.{fmt}"
    qemu_img("create", "-q", "-f", fmt, "-F", fmt, "-b", str(base), str(child))
    built = f.build_stored(tmp_path, child.read_bytes(), fmt=fmt)
    r = convert(cli, built.path, tmp_path / "out")
    assert r.exit_code == 1 and f"the {fmt} disk names a backing file" in r.output


def test_virtual_size_beyond_the_cap_is_refused(cli, tmp_path):
    """A few hundred bytes of qcow2 header claiming 2 TiB never become a 2 TiB image."""
    big = tmp_path / "big.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(big), "2T")
    built = f.build_stored(tmp_path, big.read_bytes(), fmt="qcow2")
    r = convert(cli, built.path, tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert "virtual size of 2199023255552 bytes" in r.output and "disk_bytes" in r.output


def test_disk_cap_is_configurable(cli, tmp_path, ext2):
    built = f.build_appliance(tmp_path, ext2, fmt="qcow2")
    r = convert(cli, built.path, tmp_path / "small", "--limit", "disk_bytes=64K")
    assert r.exit_code == 1 and "more than the limit of 65536" in r.output
    r = convert(cli, built.path, tmp_path / "ok", "--limit", "disk_bytes=1G")
    assert r.exit_code == 0, r.output
    image = tmp_path / "ok" / "router1.img"
    assert image.read_bytes() == ext2.read_bytes()
    assert image.stat().st_mode & 0o777 == 0o600


# -- item 4: chunks and compression, as DSP0243 orders them --------------------------------
def _roundtrip(tmp_path: Path, ext2: Path, **kwargs) -> Path:
    stored = ext2.read_bytes()
    if kwargs.get("compression") == "gzip":
        stored = gzip.compress(stored)
    built = f.build_stored(tmp_path, stored, capacity_bytes=ext2.stat().st_size, **kwargs)
    appliance = open_appliance(built.path)
    materialize(appliance, tmp_path / "out")
    return Path(appliance.vms[0].filesystem.path)


@pytest.mark.parametrize("kwargs", [
    {"chunk_size": 4 * 2**20},  # one chunk: href.000000000 only
    {"chunk_size": 100_000},  # many chunks, the last one short
    {"compression": "gzip"},
    {"compression": "gzip", "chunk_size": 3000},  # compressed, then cut: join, then gunzip
], ids=["single-chunk", "many-chunks", "gzip", "gzip-then-chunked"])
def test_chunked_and_compressed_files(tmp_path, ext2, kwargs):
    image = _roundtrip(tmp_path, ext2, **kwargs)
    assert image.read_bytes() == ext2.read_bytes()


def test_gzip_then_chunked_through_the_cli(cli, tmp_path, ext2):
    stored = gzip.compress(ext2.read_bytes())
    built = f.build_stored(tmp_path, stored, compression="gzip", chunk_size=200,
                           capacity_bytes=ext2.stat().st_size)
    assert sum(1 for n in built.members if ".img.0" in n) > 2
    r = convert(cli, built.path, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "router1.img").read_bytes() == ext2.read_bytes()


def test_missing_chunk_is_one_clear_error(tmp_path, ext2):
    built = f.build_stored(tmp_path, ext2.read_bytes(), chunk_size=100_000, drop_chunks=(1,),
                           with_manifest=False)
    appliance = open_appliance(built.path)
    with pytest.raises(InputError, match="chunk 000000001 is missing"):
        materialize(appliance, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_chunk_of_the_wrong_size_is_refused(tmp_path, ext2):
    built = f.build_stored(tmp_path, ext2.read_bytes(), chunk_size=100_000)
    members = dict(built.members)
    ovf = next(n for n in members if n.endswith(".ovf"))
    members[ovf] = members[ovf].replace(b'ovf:chunkSize="100000"', b'ovf:chunkSize="90000"')
    del members["router.mf"]
    f.write_ova(built.path, list(members.items()))
    appliance = open_appliance(built.path)
    with pytest.raises(InputError, match=r"holds 100000 bytes; every chunk but the last"):
        materialize(appliance, tmp_path / "out")


@pytest.mark.parametrize("damage", ["flipped", "truncated", "not-gzip"])
def test_corrupt_gzip_stream_is_one_clear_error(cli, tmp_path, ext2, damage):
    stored = gzip.compress(ext2.read_bytes())
    if damage == "flipped":
        mid = len(stored) // 2
        stored = stored[:mid] + bytes([stored[mid] ^ 0x55]) * 16 + stored[mid + 16:]
    elif damage == "truncated":
        stored = stored[: len(stored) // 2]
    else:
        stored = b"plain bytes, not gzip" * 10
    built = f.build_stored(tmp_path, stored, compression="gzip", chunk_size=5000)
    r = convert(cli, built.path, tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert "corrupt gzip stream" in r.output
    assert "Traceback" not in r.output and "Aborted" not in r.output
    assert list((tmp_path / "out").iterdir()) == []


def _zeros_gzip(path: Path, mib: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(2**20)
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(z.compress(block))
        fh.write(z.flush())
    return path.read_bytes()


def test_gzip_bomb_is_refused(cli, tmp_path):
    """0.5 MB of gzip that would expand to 512 MiB stops at the ratio cap."""
    bomb = _zeros_gzip(tmp_path / "bomb.gz", 512)
    assert len(bomb) < 2**20
    built = f.build_stored(tmp_path, bomb, compression="gzip")
    out = tmp_path / "out"
    r = convert(cli, built.path, out)
    assert r.exit_code == 1, r.output
    assert "decompression bomb" in r.output and "ratio" in r.output
    assert list(out.iterdir()) == []


def test_expanded_size_cap_is_absolute(tmp_path):
    stored = _zeros_gzip(tmp_path / "z.gz", 4)
    built = f.build_stored(tmp_path, stored, compression="gzip")
    appliance = open_appliance(built.path)
    limits.use(limits.Limits(max_expanded_bytes=2**20))
    try:
        with pytest.raises(InputError, match="expands to more than 1048576 bytes"):
            materialize(appliance, tmp_path / "out")
    finally:
        limits.use(None)


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv(limits.LIMITS_VAR, "disk_bytes=2G, nics=8,ratio=50")
    got = limits.active()
    assert (got.max_disk_bytes, got.max_nics, got.max_ratio) == (2 * 2**30, 8, 50)
    monkeypatch.setenv(limits.LIMITS_VAR, "bogus=1")
    with pytest.raises(InputError, match="KEY one of disk_bytes"):
        limits.active()

