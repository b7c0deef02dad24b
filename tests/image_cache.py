"""Debian images built once for the tests and kept between runs (and CI steps).

The cache is an image store outside the repository (``$EDIV_TEST_IMAGE_CACHE``, default
``/var/cache/ediv-test-images``); an image's name is derived from everything that shapes it
(the mmdebstrap command, the apt sources, the build's layout version), so a later run reuses
it and a changed build rebuilds. Run as a script (``python -m tests.image_cache PKG,PKG``) it
builds the image of those packages into the cache, e.g. as a CI step before the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ediv.images import build as build_mod
from ediv.images.sources import sources_text
from ediv.images.store import ImageStore

EDIV = [sys.executable, "-m", "ediv.client.cli"]
SUITE = "bookworm"
# the routing lab's image (examples/ospf-ring.xml): FRR, ip and ping
FRR_PACKAGES = ["frr", "iproute2", "iputils-ping"]


def cache_root() -> Path:
    return Path(os.environ.get("EDIV_TEST_IMAGE_CACHE", "/var/cache/ediv-test-images"))


def cache_name(packages: list[str], suite: str = SUITE) -> str:
    spec = build_mod.BuildSpec("x", suite=suite, packages=sorted(packages))
    shape = json.dumps({"argv": build_mod.mmdebstrap_argv(spec, Path("/t"), Path("/s")),
                        "sources": sources_text(suite), "layout": build_mod.LAYOUT_VERSION},
                       sort_keys=True)
    return "test-" + hashlib.sha256(shape.encode()).hexdigest()[:16]


def mirror_error(suite: str = SUITE) -> str | None:
    """Why the Debian mirror of this machine's apt sources cannot be reached, or None."""
    import socket
    from urllib.parse import urlsplit

    from ediv.images.sources import parse_deb822

    url = urlsplit(parse_deb822(sources_text(suite))[0].uris[0])
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname, port), timeout=10).close()
    except OSError as exc:
        return f"Debian mirror {url.hostname} unreachable ({exc}): cannot build an image"
    return None


def cached(packages: list[str], suite: str = SUITE) -> tuple[ImageStore, str] | None:
    store = ImageStore(cache_root())
    name = cache_name(packages, suite)
    m = store.get(name)
    if m is None or not store.blob_path(m.digest).exists():
        return None
    return store, name


def build_cached(packages: list[str], suite: str = SUITE, *, stale_prefix: str | None = None
                 ) -> tuple[ImageStore, str]:
    """(store, name) of the image of ``packages``, built through the CLI unless cached.
    The build's progress is kept in ``logs/<name>.log``. ``stale_prefix``: other images of
    the cache whose names start with it are removed (older builds of the same inputs)."""
    found = cached(packages, suite)
    if found:
        return found
    store = ImageStore(cache_root())
    name = cache_name(packages, suite)
    r = subprocess.run([*EDIV, "image", "build", name, "--suite", suite,
                        "--packages", ",".join(sorted(packages)), "--store", str(store.root),
                        "--json"], capture_output=True, text=True, timeout=3600)
    log = store.root / "logs" / f"{name}.log"
    log.parent.mkdir(mode=0o700, exist_ok=True)
    log.write_text(r.stderr)
    log.chmod(0o600)
    if r.returncode != 0:
        raise RuntimeError(f"build of {name} failed:\n{r.stderr[-3000:]}")
    if json.loads(r.stdout)["name"] != name:
        raise RuntimeError(f"build stored {r.stdout!r}, not {name}")
    if stale_prefix:
        keep = {cache_name(p, suite) for p in KNOWN}
        for old in store.list():
            if old.name.startswith(stale_prefix) and old.name not in keep | {name}:
                store.remove(old.name)
                (log.parent / f"{old.name}.log").unlink(missing_ok=True)
    return store, name


# the package sets the tests build: a rebuild of one keeps the others
KNOWN = (["iproute2"], FRR_PACKAGES)


if __name__ == "__main__":
    pkgs = sorted(p for p in (sys.argv[1] if len(sys.argv) > 1 else ",".join(FRR_PACKAGES))
                  .split(",") if p)
    s, n = build_cached(pkgs, stale_prefix="test-")
    print(s.path(n))
