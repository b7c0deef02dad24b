"""OVA and folder packages: member checks, descriptor lookup, manifests, streaming hashes."""

from __future__ import annotations

import hashlib
import io
import tarfile
import tracemalloc

import pytest

from ediv.errors import InputError
from ediv.ovf.inspect import inspect_package
from ediv.ovf.manifest import hash_stream, parse_manifest
from ediv.ovf.package import open_package
from tests import ovf_factory as f


@pytest.mark.parametrize("kind, what", [(tarfile.SYMTYPE, "symbolic link"),
                                        (tarfile.LNKTYPE, "hard link"),
                                        (tarfile.CHRTYPE, "device"),
                                        (tarfile.FIFOTYPE, "FIFO")])
def test_special_members_refused(tmp_path, kind, what):
    built = f.build_package(tmp_path)
    f.add_special_member(built.path, "extra", kind, "router.ovf")
    with pytest.raises(InputError, match=what):
        open_package(built.path)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/abs/x", "a/../../../etc/passwd",
                                  "C:/windows/x", "..\\x"])
def test_traversal_names_refused(tmp_path, name):
    path = f.write_ova(tmp_path / "t.ova", [("t.ovf", f.descriptor().encode()), (name, b"x")])
    with pytest.raises(InputError, match="path traversal"):
        open_package(path)


def test_absurd_member_size_refused(tmp_path):
    path = f.write_ova(tmp_path / "t.ova", [("t.ovf", f.descriptor().encode())])
    info = tarfile.TarInfo("huge.img")
    info.size = 2**20
    with tarfile.open(path, "a") as tar:
        tar.addfile(info, io.BytesIO(bytes(2**20)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header claims more than the file holds
    with pytest.raises(InputError, match=r"truncated|corrupt"):
        inspect_package(path)


def test_gzip_ova_and_subfolder_descriptor(tmp_path):
    disk = f.raw_disk(3000)
    ovf = f.descriptor(disk_href="d.img", disk_size=3000).encode()
    mf = f.manifest({"app.ovf": ovf, "d.img": disk})
    path = f.write_ova(tmp_path / "sub.ova", [("pkg/app.ovf", ovf), ("pkg/app.mf", mf),
                                              ("pkg/d.img", disk)], gzip=True)
    result = inspect_package(path)
    assert result.descriptor == "pkg/app.ovf"
    assert result.manifest.status == "ok"
    assert {c.name for c in result.manifest.files} == {"pkg/app.ovf", "pkg/d.img"}
    assert any("compressed tar" in w for w in result.warnings)


def test_descriptor_not_first_and_two_descriptors(tmp_path):
    ovf = f.descriptor().encode()
    path = f.write_ova(tmp_path / "o.ova", [("disk1.img", b"x"), ("a.ovf", ovf), ("b.ovf", ovf)])
    with open_package(path) as pkg:
        assert pkg.descriptor_name == "a.ovf"
        joined = " ".join(pkg.warnings)
        assert "not the first member" in joined and "2 .ovf members" in joined


def test_directory_package_and_missing_file(tmp_path):
    (tmp_path / "app.ovf").write_text(f.descriptor(disk_href="disk.img", disk_size=10))
    result = inspect_package(tmp_path)
    assert result.package_kind == "directory"
    assert result.manifest.status == "absent"
    assert any("referenced but not in the package" in w for w in result.warnings)


def test_directory_href_cannot_escape(tmp_path):
    pkg_dir = tmp_path / "pkg"
    pkg_dir.mkdir()
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"s")
    ovf = f.descriptor(disk_href="../secret.img", disk_size=1).encode()
    (pkg_dir / "a.ovf").write_bytes(ovf)
    (pkg_dir / "a.mf").write_bytes(f.manifest({"a.ovf": ovf, "../secret.img": b"s"}))
    result = inspect_package(pkg_dir / "a.ovf")
    assert result.manifest.status == "mismatch"  # the escaping entry is never read
    assert any("leaves the package" in d for d in result.manifest.details)


@pytest.mark.parametrize("line", [
    "SHA256(disk.img)= {d}", "SHA256 (disk.img) = {d}", "sha256(disk.img)={d}",
    "SHA256(disk.img)= {D}", "  SHA256 ( disk.img ) =  {d}  ", "SHA-256(disk.img)= {d}",
])
def test_manifest_spellings(line):
    digest = hashlib.sha256(b"abc").hexdigest()
    mf = parse_manifest((line.format(d=digest, D=digest.upper()) + "\r\n\r\n").encode(), "x.mf")
    assert not mf.errors
    assert [(e.algorithm, e.name, e.digest) for e in mf.entries] == [("SHA256", "disk.img",
                                                                      digest)]


@pytest.mark.parametrize("text, error", [
    ("garbage line", "not a digest line"),
    ("MD5(a)= " + "0" * 32, "unsupported digest algorithm"),
    ("SHA256(a)= abcd", "hex digits"),
    ("SHA1(a)= " + "0" * 40 + "\nSHA1(a)= " + "1" * 40, "different digests"),
    ("", "no digest lines"),
])
def test_manifest_invalid(text, error):
    assert any(error in e for e in parse_manifest(text.encode(), "x.mf").errors)


def test_invalid_manifest_fails_inspection(tmp_path):
    built = f.build_package(tmp_path)
    members = dict(built.members)
    members["router.mf"] += b"this is not a manifest line\n"
    f.write_ova(built.path, list(members.items()))
    result = inspect_package(built.path)
    assert result.manifest.status == "invalid" and result.failed


def test_unlisted_file_and_missing_file(tmp_path):
    built = f.build_package(tmp_path)
    members = dict(built.members)
    ovf = members["router.ovf"]
    members["router.mf"] = f.manifest({"router.ovf": ovf, "gone.img": b"x"})
    f.write_ova(built.path, list(members.items()))
    result = inspect_package(built.path)
    assert result.manifest.status == "mismatch"
    statuses = {c.name: c.status for c in result.manifest.files}
    assert statuses == {"router.ovf": "ok", "gone.img": "missing",
                        "router-disk1.img": "not-listed"}


def test_hash_stream_matches_hashlib():
    data = f.raw_disk(3 * 2**20 + 17)
    digests, size = hash_stream(io.BytesIO(data), ["SHA1", "SHA256"], chunk=2**20)
    assert size == len(data)
    assert digests == {"SHA1": hashlib.sha1(data).hexdigest(),
                       "SHA256": hashlib.sha256(data).hexdigest()}


def test_large_sparse_disk_hashed_with_flat_memory(tmp_path):
    """256 MiB sparse disk in a folder package: peak Python memory stays a few MiB."""
    size = 256 * 2**20
    disk = tmp_path / "big.img"
    with disk.open("wb") as fh:
        fh.truncate(size)
    ovf = f.descriptor(disk_href="big.img", disk_size=size).encode()
    (tmp_path / "big.ovf").write_bytes(ovf)
    zero = hashlib.sha256()
    block = bytes(2**20)
    for _ in range(256):
        zero.update(block)
    (tmp_path / "big.mf").write_text(f"SHA256(big.ovf)= {hashlib.sha256(ovf).hexdigest()}\n"
                                     f"SHA256(big.img)= {zero.hexdigest()}\n")
    del block
    tracemalloc.start()
    try:
        result = inspect_package(tmp_path / "big.ovf")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.manifest.status == "ok"
    print(f"peak {peak / 2**20:.2f} MiB")
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB disk"
