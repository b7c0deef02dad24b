"""Image figures: upload throughput of ``ediv.images.ship.upload`` against plain ``scp`` of the
same file to the same testbed host in the same run, the cost of the "host already has it"
check, the boot of a one-VM UML scenario on a Debian image (the cached test image) against
the busybox image the tests use, the build times recorded in the cache's manifests, and
(with --build) the time of a fresh ``ediv image build`` for minbase + iproute2.

    sudo .venv/bin/python bench/bench_images.py [--image FILE] [--mib 256] [--build]
                                                [--boots 3] [--no-uml]

Without --image, the file is the cached test image if there is one
(/var/cache/ediv-test-images), else --mib MiB of random data. Needs root (testbed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv import testbed
from ediv.agent.rootfs import build_busybox_rootfs
from ediv.cluster import load_cluster
from ediv.images import ship
from ediv.images.build import BuildSpec, build
from ediv.images.store import ImageStore
from ediv.remote import Connections, SshOptions

CACHE = Path(os.environ.get("EDIV_TEST_IMAGE_CACHE", "/var/cache/ediv-test-images"))


def pick_image(args, tmp: Path) -> Path:
    if args.image:
        return Path(args.image)
    cached = ImageStore(CACHE).list() if CACHE.is_dir() else []
    if cached:
        return ImageStore(CACHE).blob_path(cached[0].digest)
    path = tmp / "random.img"
    with open(path, "wb") as f:
        for _ in range(args.mib):
            f.write(os.urandom(1 << 20))
    return path


def uml_boot_seconds(image: Path, tmp: Path, runs: int) -> list[float]:
    """Agent deploy time of one UML VM on ``image`` (boot to ready: kernel, ediv's boot disk
    and init, the image mounted as the root), ``runs`` times, each released after."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "agent.json"
    config.write_text(json.dumps({"vm_image_paths": [f"{image.parent}/"]}))
    agent = [sys.executable, "-m", "ediv.agent.main", "--state-dir", str(tmp / "state"),
             "--config", str(config)]
    out = []
    for i in range(runs):
        key = f"bu{os.getpid() % 1000}{i}"[:6]
        b = tmp / f"bundle-{key}"
        (b / "files").mkdir(parents=True)
        (b / "scenario.xml").write_text(
            f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            '<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
            f'<vm name="v" type="uml"><filesystem type="cow">{image}</filesystem>'
            '<mem>96M</mem><if id="1" net="N"><ipv4>198.18.34.1/24</ipv4></if></vm></vnuml>')
        (b / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
        try:
            p = subprocess.run([*agent, "deploy", "--bundle", str(b)], capture_output=True,
                               text=True, timeout=600)
            last = json.loads(p.stdout.splitlines()[-1])
            if not last.get("ok"):
                raise SystemExit(f"UML deploy failed: {last}")
            out.append(float(last["seconds"]))
        finally:
            subprocess.run([*agent, "release", "--key", key], capture_output=True, timeout=300)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--build", action="store_true", help="also time an image build")
    ap.add_argument("--boots", type=int, default=3, help="UML boots per image")
    ap.add_argument("--no-uml", action="store_true", help="skip the UML boot figures")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    with tempfile.TemporaryDirectory(prefix="ediv-bench-img-") as t:
        tmp = Path(t)
        if args.build:
            start = time.monotonic()
            m = build(ImageStore(tmp / "built"), BuildSpec("bench", packages=["iproute2"]))
            print(f"build minbase+iproute2: {time.monotonic() - start:.0f} s, "
                  f"file system {m.size >> 20} MiB, {m.extra['files_bytes'] >> 20} MiB of files")
        local = ImageStore(tmp / "local")
        m = local.import_file(pick_image(args, tmp), "bench")
        blob = local.blob_path(m.digest)
        mib = m.size / (1 << 20)
        tb = testbed.up(1, tmp / "bed", progress=lambda _m: None)
        try:
            cluster = load_cluster(str(tb.cluster_conf))
            host = cluster.hosts[0]
            with Connections(SshOptions.from_cluster(cluster)) as conns:
                sftp = ship.open_sftp(conns.client(host))
                store_dir = str(tmp / "host-store")
                start = time.monotonic()
                r = ship.upload(sftp, blob, store_dir, m.digest, manifest=m)
                up = time.monotonic() - start
                start = time.monotonic()
                again = ship.upload(sftp, blob, store_dir, m.digest, manifest=m)
                check = time.monotonic() - start
                start = time.monotonic()
                ship.verify_remote(sftp, store_dir, m.digest)
                verify = time.monotonic() - start
                sftp.close()
            assert again.sent == 0
            start = time.monotonic()
            subprocess.run(["scp", "-q", "-i", cluster.ssh_key, "-o",
                            f"UserKnownHostsFile={cluster.known_hosts}", "-o",
                            "StrictHostKeyChecking=yes", str(blob),
                            f"root@{host.address}:{tmp / 'scp-copy'}"], check=True)
            scp = time.monotonic() - start
        finally:
            testbed.down(tmp / "bed", progress=lambda _m: None)
        print(f"file: {mib:.0f} MiB ({m.digest[:19]})")
        print(f"ship.upload (SFTP + host sha256sum): {up:.1f} s, {mib / up:.0f} MiB/s of file "
              f"({r.sent >> 20} MiB sent, the rest holes)")
        print(f"scp of the same file:                {scp:.1f} s, {mib / scp:.0f} MiB/s")
        print(f"  of which the host's sha256sum:      {verify:.1f} s")
        print(f"second upload (host has it, verified): {check:.1f} s, 0 bytes sent")
        for cm in (ImageStore(CACHE).list() if CACHE.is_dir() else []):
            if "build_seconds" in cm.extra:
                print(f"cached build {cm.name} (minbase + {','.join(cm.packages)}): "
                      f"{cm.extra['build_seconds']:.0f} s, {cm.size >> 20} MiB image")
        debian = next((ImageStore(CACHE).blob_path(cm.digest) for cm in
                       (ImageStore(CACHE).list() if CACHE.is_dir() else [])
                       if cm.packages == ["iproute2"]), None)
        if not args.no_uml and debian is not None and os.access("/usr/bin/linux", os.X_OK):
            (tmp / "bb").mkdir()
            busybox = build_busybox_rootfs(tmp / "bb" / "busybox.img")
            (tmp / "deb").mkdir()
            deb_copy = tmp / "deb" / "debian.img"  # a copy in an allowed dir of its own
            subprocess.run(["cp", "--sparse=always", str(debian), str(deb_copy)], check=True)
            for label, img in (("busybox", busybox), ("debian minbase+iproute2", deb_copy)):
                secs = uml_boot_seconds(img, tmp / label.split()[0], args.boots)
                print(f"UML VM boot, {label}: median {statistics.median(secs):.2f} s "
                      f"(runs: {', '.join(f'{x:.2f}' for x in secs)})")


if __name__ == "__main__":
    main()
