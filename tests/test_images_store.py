"""The image store without network: import, list, inspect, rm, digests, permissions, atomic
publication, concurrent writers; the apt-sources reader; the pure parts of shipping."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv.errors import EdivError
from ediv.images import ship
from ediv.images.build import BuildSpec, auto_size, mmdebstrap_argv, parse_packages, parse_size
from ediv.images.digest import file_digest, normalize
from ediv.images.sources import parse_deb822, parse_one_line, sources_text
from ediv.images.store import ImageNotFound, ImageStore


def run_cli(*args: str, env: dict[str, str] | None = None):
    """``ediv image ARGS`` in this process (the command group with its error handling)."""
    from ediv.client import cli as cli_mod
    from ediv.client import image_cmd

    image_cmd.register(cli_mod.cli)
    return CliRunner(mix_stderr=False).invoke(cli_mod.cli, ["image", *args], env=env)


def make_image(path: Path, seed: bytes, hole_mb: int = 0) -> Path:
    """A small file standing in for an image: some data, optionally a hole, more data."""
    with open(path, "wb") as f:
        f.write(seed * 5000)
        f.seek(hole_mb << 20, os.SEEK_CUR)
        f.write(b"end" + seed)
    return path


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def test_import_stores_by_digest_private_and_leaves_the_source(store, tmp_path):
    src = make_image(tmp_path / "a.img", b"alpha", hole_mb=8)
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    m = store.import_file(src, "alpha", suite="bookworm")
    assert m.digest == sha(src) == file_digest(src)
    assert (m.name, m.format, m.size, m.suite, m.origin) == (
        "alpha", "raw", src.stat().st_size, "bookworm", "import")
    assert m.created.endswith("Z")
    blob = store.path("alpha")
    assert blob == store.root / "blobs" / "sha256" / m.digest.removeprefix("sha256:")
    assert blob.read_bytes() == src.read_bytes()
    assert blob.stat().st_blocks * 512 < 2 << 20  # the 8 MiB hole stayed a hole
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before
    for d in (store.root, store.blobs, store.manifests, store.tmp):
        assert mode(d) == 0o700, d
    assert mode(blob) == 0o600
    assert mode(store.manifests / "alpha.json") == 0o600
    assert json.loads((store.manifests / "alpha.json").read_text())["digest"] == m.digest
    assert list(store.tmp.iterdir()) == []


def test_resolve_by_name_full_and_short_digest(store, tmp_path):
    m = store.import_file(make_image(tmp_path / "a.img", b"a"), "a")
    hexd = m.digest.removeprefix("sha256:")
    for ref in ("a", m.digest, hexd, hexd[:6], "sha256:" + hexd[:10], hexd[:8].upper()):
        assert store.resolve(ref).name == "a", ref
    for ref in (hexd[:5], "zzzzzzzz", "b"):
        with pytest.raises(ImageNotFound):
            store.resolve(ref)


def test_one_blob_for_two_names_removed_with_the_last(store, tmp_path):
    src = make_image(tmp_path / "a.img", b"same")
    m1 = store.import_file(src, "one")
    m2 = store.import_file(src, "two")
    assert m1.digest == m2.digest and store.digests() == {m1.digest}
    assert [m.name for m in store.list()] == ["one", "two"]
    store.remove("one")
    assert store.path("two").exists()
    store.remove("two")
    assert store.digests() == set() and store.list() == []


def test_rm_by_digest_removes_every_name(store, tmp_path):
    src = make_image(tmp_path / "a.img", b"same")
    other = store.import_file(make_image(tmp_path / "b.img", b"other"), "other")
    m = store.import_file(src, "one")
    store.import_file(src, "two")
    removed = store.remove(m.digest[7:19])
    assert sorted(r.name for r in removed) == ["one", "two"]
    assert store.digests() == {other.digest}
    with pytest.raises(ImageNotFound):
        store.remove("one")


def test_reimport_under_a_name_drops_the_unused_old_blob(store, tmp_path):
    old = store.import_file(make_image(tmp_path / "a.img", b"old"), "img")
    new = store.import_file(make_image(tmp_path / "b.img", b"new"), "img")
    assert old.digest != new.digest
    assert store.digests() == {new.digest}
    assert store.resolve("img").digest == new.digest


def test_qcow2_detected_and_format_mismatch_refused(store, tmp_path):
    if not shutil.which("qemu-img"):
        pytest.skip("qemu-img missing (apt-get install qemu-utils)")
    q = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "64M"], check=True)
    assert store.import_file(q, "q").format == "qcow2"
    with pytest.raises(EdivError, match="is a qcow2 image, not raw"):
        store.import_file(q, "q2", fmt="raw")
    assert store.get("q2") is None


def test_bad_names_refused_and_nothing_written(store, tmp_path):
    src = make_image(tmp_path / "a.img", b"x")
    for bad in ("../evil", "a/b", ".hidden", "", "x" * 65, "sp ace"):
        with pytest.raises(EdivError, match="bad image name"):
            store.import_file(src, bad)
    assert store.list() == [] and store.digests() == set()


def test_failed_copy_leaves_no_blob_manifest_or_temp(store, tmp_path):
    src = make_image(tmp_path / "a.img", b"y" * 400)  # 2 MB: more than one chunk

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_file(src, "y", progress=interrupt)
    assert store.list() == [] and store.digests() == set()
    assert list(store.tmp.iterdir()) == []


def test_verify_detects_a_changed_blob(store, tmp_path):
    m = store.import_file(make_image(tmp_path / "a.img", b"v"), "v")
    assert store.verify("v")
    blob = store.path("v")
    with open(blob, "r+b") as f:
        f.write(b"X")
    assert not store.verify(m.digest)
    r = run_cli("inspect", "v", "--verify", "--store", str(store.root))
    assert r.exit_code == 2 and "verified:  False" in r.stdout


def _import_many(root: str, src: str, name: str, n: int) -> None:
    store = ImageStore(root)
    for _ in range(n):
        store.import_file(src, name)


def test_concurrent_writers_and_readers_see_whole_files(store, tmp_path):
    """Four processes import into one store at once (two fight over one name) while this
    one reads: every manifest read parses and names a complete blob."""
    srcs = [make_image(tmp_path / f"{i}.img", bytes([65 + i]) * 300, hole_mb=1)
            for i in range(3)]
    digests = {sha(s) for s in srcs}
    ctx = multiprocessing.get_context("fork")
    jobs = [ctx.Process(target=_import_many, args=(str(store.root), str(s), name, 8))
            for s, name in [(srcs[0], "shared"), (srcs[1], "shared"), (srcs[2], "own"),
                            (srcs[0], "zero")]]
    for j in jobs:
        j.start()
    seen = 0
    while any(j.is_alive() for j in jobs):
        for p in store.manifests.glob("*.json"):  # raw reads: a torn file would not parse
            try:
                text = p.read_text()
            except FileNotFoundError:
                continue
            assert json.loads(text)["digest"] in digests
            seen += 1
    for j in jobs:
        j.join()
        assert j.exitcode == 0
    assert {m.name for m in store.list()} == {"shared", "own", "zero"}
    for m in store.list():
        assert file_digest(store.blob_path(m.digest)) == m.digest
    # nothing orphaned, nothing half-written left behind
    assert store.digests() == {m.digest for m in store.list()}
    assert list(store.tmp.iterdir()) == []
    assert seen > 0


def test_cli_import_list_inspect_rm(tmp_path):
    root = tmp_path / "cli-store"
    src = make_image(tmp_path / "r.img", b"router")

    def ediv(*args: str):
        return run_cli(*args, env={"EDIV_IMAGES": str(root)})

    r = ediv("import", str(src), "--name", "router", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["digest"] == sha(src) and Path(data["path"]).read_bytes() == src.read_bytes()
    listing = ediv("list")
    assert "router" in listing.stdout and data["digest"][7:19] in listing.stdout
    assert [m["name"] for m in json.loads(ediv("list", "--json").stdout)] == ["router"]
    shown = json.loads(ediv("inspect", data["digest"][7:15], "--json").stdout)
    assert shown["name"] == "router" and shown["path"] == data["path"]
    missing = ediv("inspect", "nope")
    assert missing.exit_code == 1 and "no image 'nope'" in missing.stderr
    # --store wins over the environment
    other = tmp_path / "other"
    assert "no images" in ediv("list", "--store", str(other)).stderr
    assert ediv("rm", "router").exit_code == 0
    assert json.loads(ediv("list", "--json").stdout) == []
    assert not Path(data["path"]).exists()


# -- apt sources ----------------------------------------------------------------------------
DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://example.invalid/debian
Suites: bookworm
Components: main
"""


def test_host_sources_turned_to_the_image_suite(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(DEB822)
    (apt / "sources.list.d" / "vendor.list").write_text(
        "deb [signed-by=/k.gpg arch=amd64] https://vendor.example/apt stable main\n")
    (apt / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://other.example/debian bookworm main\n")
    same = sources_text("bookworm", apt_dir=apt, codename="bookworm")
    assert parse_deb822(same) == [s for s in parse_deb822(DEB822)]
    newer = parse_deb822(sources_text("trixie", apt_dir=apt, codename="bookworm"))
    assert [(s.uris, s.suites, s.components) for s in newer] == [
        (["http://deb.debian.org/debian"], ["trixie", "trixie-updates"], ["main"]),
        (["http://deb.debian.org/debian-security"], ["trixie-security"], ["main", "contrib"])]
    assert newer[0].options == {"Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    assert "vendor.example" not in same and "example.invalid" not in same
    with pytest.raises(EdivError, match="no Debian apt source for bullseye"):
        sources_text("bookworm", apt_dir=apt, codename="bullseye")
    mirror = sources_text("bookworm", mirror="http://mirror.example/debian", apt_dir=apt)
    assert parse_deb822(mirror)[0].uris == ["http://mirror.example/debian"]


def test_one_line_sources():
    got = parse_one_line("# c\ndeb [arch=amd64,i386 signed-by=/a.gpg] http://m/debian bookworm "
                         "main non-free\ndeb-src http://m/debian bookworm main\n"
                         "deb http://m/debian bookworm-updates main # tail\n")
    assert [(s.uris, s.suites, s.components, s.options) for s in got] == [
        (["http://m/debian"], ["bookworm"], ["main", "non-free"],
         {"Architectures": "amd64 i386", "Signed-By": "/a.gpg"}),
        (["http://m/debian"], ["bookworm-updates"], ["main"], {})]


# -- build parameters -----------------------------------------------------------------------
def test_build_parameters():
    assert parse_packages("frr, tcpdump iproute2,frr") == ["frr", "iproute2", "tcpdump"]
    assert parse_size("2G") == 2 << 30 and parse_size("512M") == 512 << 20
    for bad in ("2X", "10M", "-1G", "G"):
        with pytest.raises(EdivError):
            parse_size(bad)
    assert auto_size(100 << 20) == 256 << 20
    assert auto_size(1) % (64 << 20) == 0
    for bad in (BuildSpec("x", packages=["Bad;rm"]), BuildSpec("x", suite="../x"),
                BuildSpec("x", format="vmdk"), BuildSpec("../x")):
        with pytest.raises(EdivError):
            bad.check()
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap missing (apt-get install mmdebstrap)")
    argv = mmdebstrap_argv(BuildSpec("x", packages=["frr", "iproute2"]), Path("/t/root"),
                           Path("/t/ediv.sources"))
    assert "--variant=minbase" in argv and "--include=frr,iproute2" in argv
    assert argv[-4:] == ["--", "bookworm", "/t/root", "/t/ediv.sources"]


# -- shipping: what to send -----------------------------------------------------------------
def test_to_send_skips_what_the_host_has():
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    assert ship.to_send([a], [b, a, c, b]) == [b, c]
    assert ship.to_send([a.removeprefix("sha256:").upper()], [a]) == []
    assert ship.to_send([], []) == []
    with pytest.raises(EdivError):
        ship.to_send([], ["sha256:1234"])
    assert normalize(a.upper()) == a


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")
def test_build_dir_removal_unmounts_instead_of_deleting_through_a_mount(tmp_path):
    """An interrupted mmdebstrap can leave a mount inside its target: removing the build
    directory must not delete the mounted file system's files."""
    from ediv.images.build import mounts_below, remove_tree

    work = tmp_path / "build-x"
    (work / "root" / "dev").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    subprocess.run(["mount", "--bind", str(outside), str(work / "root" / "dev")], check=True)
    try:
        assert mounts_below(work) == [str(work / "root" / "dev")]
        remove_tree(work)
    finally:
        subprocess.run(["umount", str(work / "root" / "dev")], capture_output=True, check=False)
    assert not work.exists()
    assert (outside / "precious").read_text() == "keep me"


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_tree_becomes_an_ext4_image_in_the_store(store, fmt):
    """The build after mmdebstrap, on a busybox tree (no network): ediv's files added,
    mkfs.ext4 -d, qcow2 conversion, hashed into the store, build directory gone."""
    from ediv.agent.rootfs import populate_busybox_tree
    from ediv.images.build import image_from_tree, remove_tree

    if not shutil.which("qemu-img") or not os.path.exists("/bin/busybox"):
        pytest.skip("needs qemu-utils and busybox-static")
    work = store.staging_dir()
    lines: list[str] = []
    try:
        populate_busybox_tree(work / "root")
        m = image_from_tree(store, BuildSpec(f"bb-{fmt}", format=fmt, size="64M"), work,
                            lines.append)
    finally:
        remove_tree(work)
    assert list(store.tmp.iterdir()) == []
    blob = store.blob_path(m.digest)
    assert (m.format, m.origin, m.extra["fs_size"]) == (fmt, "build", 64 << 20)
    assert file_digest(blob) == m.digest and m.size == blob.stat().st_size
    assert any("creating ext4 image of 64 MiB" in line for line in lines)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(blob)],
                                     capture_output=True, text=True, check=True).stdout)
    assert (info["format"], info["virtual-size"]) == (fmt, 64 << 20)
    if fmt == "raw":
        fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", str(blob)],
                               capture_output=True, text=True, check=True).stdout
        assert fstab.startswith("# ediv")
        assert subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(blob)],
                              capture_output=True, text=True).stdout.strip() == "ext4"


def test_too_small_a_size_is_refused(store):
    from ediv.agent.rootfs import populate_busybox_tree
    from ediv.images.build import image_from_tree, remove_tree

    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs busybox-static")
    work = store.staging_dir()
    try:
        populate_busybox_tree(work / "root")
        with open(work / "root" / "big", "wb") as f:
            f.write(os.urandom(70 << 20))
        with pytest.raises(EdivError, match="too small"):
            image_from_tree(store, BuildSpec("big", size="64M"), work, lambda _m: None)
    finally:
        remove_tree(work)
    assert store.list() == [] and list(store.tmp.iterdir()) == []


def test_adopt_publishes_a_staged_file_without_reading_it_again(tmp_path):
    from ediv.images.store import Manifest

    store = ImageStore(tmp_path / "s").init()
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"x" * 1000)
    m = Manifest(name="up", digest=file_digest(outside), format="raw", size=0, origin="upload")
    with pytest.raises(EdivError, match="is not inside"):
        store.adopt(outside, m)  # only a file of the store's tmp/ is renamed in
    assert outside.exists() and store.list() == []
    staged = store.tmp / ".upload-1"
    shutil.copy(outside, staged)
    got = store.adopt(staged, m)
    assert (got.size, got.origin) == (1000, "upload") and not staged.exists()
    assert store.verify("up") and stat.S_IMODE(store.path("up").stat().st_mode) == 0o600
    # a second name for the same blob; a missing digest is refused
    again = store.name_digest("up2", m.digest)
    assert again.digest == m.digest and sorted(x.name for x in store.list()) == ["up", "up2"]
    with pytest.raises(ImageNotFound):
        store.name_digest("up3", "sha256:" + "0" * 64)
    store.remove("up")
    assert store.blob_path(m.digest).is_file()  # up2 still uses it
