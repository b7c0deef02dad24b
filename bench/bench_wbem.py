"""WBEM server figures: schema load (compile vs cache), and request rates over HTTPS on loopback.

Run: python bench/bench_wbem.py [--requests N] [--hosts H]
Prints timings; asserts nothing. Traffic goes to 127.0.0.1 only and stops after N requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pywbem

from ediv.cluster import Host
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.hosts import HostSystemProvider
from ediv.provider.schema import EDIV_NAMESPACE, compile_schema, load_schema
from ediv.provider.server import serve


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def report(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1] if len(ms) > 1 else ms[0]
    print(f"{label:38s} n={len(ms):5d}  median {statistics.median(ms):8.2f} ms  "
          f"p95 {p95:8.2f} ms  rate {len(ms) / (sum(ms) / 1000):8.1f}/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=100)
    args = ap.parse_args()
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        report("schema compile (no cache)", timed(compile_schema, 3))
        load_schema(base / "cache")
        report("schema load (cached)", timed(lambda: load_schema(base / "cache"), 20))
        cfg = load_config(base / "server.toml", listen="127.0.0.1:0")
        add_user(cfg.users_file, "bench", Role.READER, "bench")
        hosts = [Host(f"host{i}", mem=4096, address=f"198.18.1.{i % 250}")
                 for i in range(args.hosts)]
        handle = serve(cfg, schema=load_schema(base / "cache"), plugins=[
            lambda reg, _d, _c: reg.register(EDIV_NAMESPACE, HostSystemProvider(hosts))])
        try:
            conn = pywbem.WBEMConnection(handle.url, ("bench", "bench"),
                                         default_namespace=EDIV_NAMESPACE,
                                         ca_certs=str(cfg.cert_file))
            n = args.requests
            report("GetClass EDIV_VirtualSystem", timed(
                lambda: conn.GetClass("EDIV_VirtualSystem", LocalOnly=False), n))
            report("EnumerateClassNames deep", timed(
                lambda: conn.EnumerateClassNames(DeepInheritance=True), n))
            report(f"EnumerateInstances ({args.hosts} hosts)", timed(
                lambda: conn.EnumerateInstances("EDIV_HostSystem"), max(1, n // 10)))
            path = conn.EnumerateInstanceNames("EDIV_HostSystem")[0]
            report("GetInstance host", timed(lambda: conn.GetInstance(path), n))
            report("Associators host -> profile", timed(lambda: conn.Associators(path), n))
            report(f"pull 10/page ({args.hosts} hosts)", timed(
                lambda: list(conn.IterEnumerateInstances("EDIV_HostSystem", MaxObjectCount=10)),
                max(1, n // 10)))
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
