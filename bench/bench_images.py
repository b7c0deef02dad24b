"""Image figures: upload throughput of ``ediv.images.ship.upload`` against plain ``scp`` of the
same file to the same testbed host in the same run, the cost of the "host already has it"
check, and (with --build) the time of ``ediv image build`` for minbase + iproute2.

    sudo .venv/bin/python bench/bench_images.py [--image FILE] [--mib 256] [--build]

Without --image, the file is the cached test image if there is one
(/var/cache/ediv-test-images), else --mib MiB of random data. Needs root (testbed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv import testbed
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--build", action="store_true", help="also time an image build")
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


if __name__ == "__main__":
    main()
