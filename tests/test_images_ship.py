"""Shipping an image to a host over real SSH/SFTP: a testbed host (namespace + its own sshd,
verified host key), the host computing the digest with ``sha256sum``, resume, corruption."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ediv import testbed
from ediv.cluster import load_cluster
from ediv.images import ship
from ediv.images.digest import hex_of
from ediv.images.store import ImageStore, Manifest
from ediv.remote import Connections, SshOptions
from tests.conftest import TESTBED

pytestmark = [*TESTBED, pytest.mark.slow]

SIZE = 6 << 20


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb") / "bed"
    tb = testbed.up(1, d, progress=lambda _m: None)
    try:
        yield tb
    finally:
        testbed.down(d, progress=lambda _m: None)


@pytest.fixture
def sftp(bed):
    cluster = load_cluster(str(bed.cluster_conf))
    with Connections(SshOptions.from_cluster(cluster)) as conns:
        client = conns.client(cluster.hosts[0])
        s = ship.open_sftp(client)
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def image(tmp_path) -> tuple[ImageStore, Manifest]:
    """A local store holding a 6 MiB image (random data, so a corruption cannot hide)."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(SIZE))
    store = ImageStore(tmp_path / "local")
    return store, store.import_file(src, "router")


@pytest.fixture
def host_dir(tmp_path) -> str:
    """The host's image store (testbed hosts share this machine's file system)."""
    return str(tmp_path / "host-images")


def blob_on_host(host_dir: str, m: Manifest) -> Path:
    return Path(host_dir) / "blobs" / "sha256" / hex_of(m.digest)


def partial_on_host(host_dir: str, m: Manifest) -> Path:
    return Path(host_dir) / "tmp" / f"{hex_of(m.digest)}.partial"


def test_upload_once_then_nothing(sftp, image, host_dir):
    store, m = image
    local = store.blob_path(m.digest)
    assert ship.remote_digests(sftp, host_dir) == set()
    assert ship.to_send(ship.remote_digests(sftp, host_dir), [m.digest]) == [m.digest]
    seen: list[tuple[int, int]] = []
    first = ship.upload(sftp, local, host_dir, m.digest, manifest=m,
                        progress=lambda done, total: seen.append((done, total)))
    assert (first.sent, first.attempts, first.already_there) == (SIZE, 1, False)
    assert seen[-1] == (SIZE, SIZE) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    blob = blob_on_host(host_dir, m)
    assert blob.read_bytes() == local.read_bytes()
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    for d in (Path(host_dir), blob.parent, Path(host_dir) / "manifests", Path(host_dir) / "tmp"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert list((Path(host_dir) / "tmp").iterdir()) == []
    on_host = ImageStore(host_dir)  # the host's store names what was shipped
    assert on_host.resolve("router").digest == m.digest and on_host.verify("router")
    assert on_host.resolve("router").origin == "upload"

    # second deploy: the host reports the digest, nothing is sent
    have = ship.remote_digests(sftp, host_dir)
    assert have == {m.digest}
    assert ship.to_send(have, [m.digest]) == []
    again = ship.upload(sftp, local, host_dir, m.digest, manifest=m)
    assert (again.sent, again.attempts, again.already_there) == (0, 0, True)
    assert ship.verify_remote(sftp, host_dir, m.digest)


def test_interrupted_upload_resumes(sftp, image, host_dir):
    store, m = image
    local = store.blob_path(m.digest)

    def stop_half_way(done: int, total: int) -> None:
        if done >= total // 2:
            raise ConnectionError("link lost")

    with pytest.raises(ConnectionError):
        ship.upload(sftp, local, host_dir, m.digest, progress=stop_half_way)
    kept = partial_on_host(host_dir, m).stat().st_size
    assert 0 < kept < SIZE
    assert not blob_on_host(host_dir, m).exists()  # never published half a file
    assert ship.remote_digests(sftp, host_dir) == set()
    done = ship.upload(sftp, local, host_dir, m.digest)
    assert (done.resumed_from, done.sent, done.attempts) == (kept, SIZE - kept, 1)
    assert blob_on_host(host_dir, m).read_bytes() == local.read_bytes()
    assert not partial_on_host(host_dir, m).exists()


def test_corrupted_partial_is_detected_and_sent_again(sftp, image, host_dir):
    store, m = image
    local = store.blob_path(m.digest)
    data = local.read_bytes()
    ship.prepare_store(sftp, host_dir)
    bad = bytearray(data[:SIZE // 3])
    bad[100] ^= 0xFF  # one flipped byte in what an earlier attempt left
    partial_on_host(host_dir, m).write_bytes(bytes(bad))
    res = ship.upload(sftp, local, host_dir, m.digest)
    assert res.attempts == 2 and res.resumed_from == len(bad)
    assert res.sent == (SIZE - len(bad)) + SIZE  # the rest, then the whole file once more
    assert blob_on_host(host_dir, m).read_bytes() == data


@pytest.mark.parametrize("damage", ["truncate", "modify"])
def test_damaged_image_on_the_host_is_replaced(sftp, image, host_dir, damage):
    store, m = image
    local = store.blob_path(m.digest)
    ship.upload(sftp, local, host_dir, m.digest)
    blob = blob_on_host(host_dir, m)
    if damage == "truncate":
        os.truncate(blob, SIZE - 4096)
    else:
        with open(blob, "r+b") as f:
            f.seek(SIZE // 2)
            f.write(b"\0garbage\0")
    assert not ship.verify_remote(sftp, host_dir, m.digest)
    res = ship.upload(sftp, local, host_dir, m.digest)
    assert (res.already_there, res.sent) == (False, SIZE)
    assert ship.verify_remote(sftp, host_dir, m.digest)
    assert blob.read_bytes() == local.read_bytes()


def test_upload_that_does_not_match_its_digest_is_refused(sftp, image, host_dir):
    """The local file changed after it was stored: the host computes another digest and the
    upload is refused; nothing is left on the host under that digest."""
    store, m = image
    local = store.blob_path(m.digest)
    with open(local, "r+b") as f:
        f.seek(12345)
        f.write(b"tampered")
    with pytest.raises(ship.ImageCorrupt, match="refused"):
        ship.upload(sftp, local, host_dir, m.digest, manifest=m)
    assert ship.remote_digests(sftp, host_dir) == set()
    assert not partial_on_host(host_dir, m).exists()
    assert ImageStore(host_dir).list() == []


def test_holes_are_not_sent(sftp, tmp_path, host_dir):
    """A raw image is mostly holes: only its data crosses the wire, the host's copy is
    sparse too and has the same digest."""
    src = tmp_path / "sparse.img"
    with open(src, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.seek(32 << 20, os.SEEK_CUR)
        f.write(os.urandom(1 << 20))
        f.truncate(64 << 20)  # a trailing hole as well
    store = ImageStore(tmp_path / "local")
    m = store.import_file(src, "sparse")
    res = ship.upload(sftp, store.blob_path(m.digest), host_dir, m.digest)
    assert res.sent == 2 << 20 and res.size == 64 << 20
    blob = blob_on_host(host_dir, m)
    assert blob.stat().st_size == 64 << 20 and blob.stat().st_blocks * 512 < 8 << 20
    assert ship.verify_remote(sftp, host_dir, m.digest)
