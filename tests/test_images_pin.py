"""Pinning ``image:`` filesystems to host store paths (no root, no network): the part of the
deploy's image stage that decides what each host needs and rewrites the sub-scenarios."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ediv.cluster import Host, parse_cluster
from ediv.errors import EdivError, InputError
from ediv.images.digest import hex_of
from ediv.images.distribute import pin
from ediv.images.store import ImageStore
from ediv.scenario.loader import load_string


def _part(vms: dict[str, str]):
    body = "".join(f'<vm name="{n}" type="container"><filesystem type="cow">{fs}</filesystem>'
                   "</vm>" for n, fs in vms.items())
    xml = (f"<vnuml><global><version>1.8</version><simulation_name>p</simulation_name>"
           f'<vm_mgmt type="none"/></global>{body}</vnuml>')
    scenario, _ = load_string(xml)
    return SimpleNamespace(scenario=scenario)


@pytest.fixture
def store(tmp_path) -> ImageStore:
    s = ImageStore(tmp_path / "images")
    for name in ("frr", "base"):
        src = tmp_path / f"{name}.img"
        src.write_bytes(os.urandom(4096))
        s.import_file(src, name)
    return s


def test_references_are_pinned_to_each_hosts_store(store, tmp_path):
    frr, base = store.resolve("frr"), store.resolve("base")
    h1 = Host("h1", image_store="/srv/one")
    h2 = Host("h2")  # the default store
    p1 = _part({"a": "image:frr", "b": f"image:{base.digest}", "c": "/usr/share/fs.img"})
    p2 = _part({"d": f"image:{hex_of(frr.digest)[:8]}"})
    needs = pin([(h1, p1), (h2, p2)], store)
    fs = {v.name: v.filesystem.path for p in (p1, p2) for v in p.scenario.vms}
    assert fs == {"a": f"/srv/one/blobs/sha256/{hex_of(frr.digest)}",
                  "b": f"/srv/one/blobs/sha256/{hex_of(base.digest)}",
                  "c": "/usr/share/fs.img",  # a host path stays what it is
                  "d": f"/var/lib/ediv/images/blobs/sha256/{hex_of(frr.digest)}"}
    assert set(needs[0].images) == {frr.digest, base.digest}
    assert needs[0].vms == {frr.digest: ["a"], base.digest: ["b"]}
    assert list(needs[1].images) == [frr.digest]


def test_a_filesystem_shared_by_parts_is_pinned_per_host(store):
    """VMs of several hosts may share one filesystem object (from <vm_defaults>): each host's
    VMs get their own host's path."""
    p1, p2 = _part({"a": "image:frr"}), _part({"b": "image:frr"})
    p2.scenario.vms[0].filesystem = p1.scenario.vms[0].filesystem
    pin([(Host("h1", image_store="/one"), p1), (Host("h2", image_store="/two"), p2)], store)
    assert p1.scenario.vms[0].filesystem.path.startswith("/one/blobs/")
    assert p2.scenario.vms[0].filesystem.path.startswith("/two/blobs/")


def test_unknown_or_qcow2_images_fail_naming_the_vms(store, tmp_path):
    q = tmp_path / "q.qcow2"
    q.write_bytes(b"QFI\xfb" + bytes(512))
    store.import_file(q, "q")
    part = _part({"a": "image:nope", "b": "image:q"})
    with pytest.raises(EdivError) as e:
        pin([(Host("h1"), part)], store)
    assert "vm a: no image 'nope'" in str(e.value) and "vm b: image q is qcow2" in str(e.value)


def test_cluster_image_store_must_be_absolute():
    text = "[cluster]\nhost = a\nhost = b\n[a]\nimage_store = /srv/img\n[b]\nimage_store = rel\n"
    with pytest.raises(InputError) as e:
        parse_cluster(text)
    assert "b: image_store must be an absolute path" in str(e.value)
    ok = parse_cluster("[cluster]\nhost = a\n[a]\nimage_store = /srv/img\n")
    assert ok.hosts[0].image_store == "/srv/img"
