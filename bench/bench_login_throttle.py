"""Failed-login limiting under a brute-force loop: what the attacker gets and what another
client pays.

Run: python bench/bench_login_throttle.py [--attackers 16] [--attempts 40] [--requests 40]
Prints figures; asserts nothing. Traffic goes to a server on 127.0.0.1 only, from source
addresses 127.0.0.1 (the client) and 127.0.0.2.. (one per attacker); every loop is bounded by
a count. Compare with ``--failures 1000000`` (no effective limit): scrypt checks then cost
every client.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pywbem

from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.server import serve

BODY = (b'<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
        b'<IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH>'
        b'<NAMESPACE NAME="interop"/></LOCALNAMESPACEPATH>'
        b'<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="CIM_RegisteredProfile"/>'
        b'</IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')


def attacker(url_port: int, ca: str, source: str, attempts: int, out: dict) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    for i in range(attempts):
        conn = http.client.HTTPSConnection("127.0.0.1", url_port, context=ctx, timeout=60,
                                           source_address=(source, 0))
        token = base64.b64encode(f"alice:guess{i}".encode()).decode()
        try:
            conn.request("POST", "/cimom", body=BODY, headers={
                "Authorization": f"Basic {token}", "CIMOperation": "MethodCall",
                "CIMMethod": "EnumerateInstanceNames", "CIMObject": "interop"})
            status = conn.getresponse().status
        finally:
            conn.close()
        out[status] = out.get(status, 0) + 1


def latencies(conn: pywbem.WBEMConnection, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.EnumerateInstanceNames("CIM_RegisteredProfile", namespace="interop")
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attackers", type=int, default=16)
    ap.add_argument("--attempts", type=int, default=40, help="per attacker")
    ap.add_argument("--requests", type=int, default=40, help="of the other client")
    ap.add_argument("--failures", type=int, default=10, help="login_failures (burst)")
    args = ap.parse_args()
    for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(k, None)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(Path(tmp) / "server.toml", listen="127.0.0.1:0")
        cfg.schema_cache_dir = Path(tmp) / "cache"
        cfg.login_failures, cfg.threads = args.failures, 16
        add_user(cfg.users_file, "alice", Role.OPERATOR, "right")
        handle = serve(cfg)
        try:
            conn = pywbem.WBEMConnection(handle.url, ("alice", "right"),
                                         ca_certs=str(cfg.cert_file), timeout=60)
            latencies(conn, 3)  # warm: TLS session, cached verification
            alone = latencies(conn, args.requests)
            results: list[dict] = [{} for _ in range(args.attackers)]
            threads = [threading.Thread(target=attacker, args=(
                handle.port, str(cfg.cert_file), f"127.0.0.{2 + i}", args.attempts, results[i]))
                for i in range(args.attackers)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            attacked = latencies(conn, args.requests)
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
        finally:
            handle.stop()
    total: dict[int, int] = {}
    for r in results:
        for status, n in r.items():
            total[status] = total.get(status, 0) + n
    checked = total.get(401, 0)
    print(f"attackers: {args.attackers} addresses x {args.attempts} attempts in {elapsed:.2f} s;"
          f" answers {dict(sorted(total.items()))}")
    print(f"passwords actually checked (401): {checked} ({checked / elapsed:.1f}/s); "
          f"refused unchecked (429): {total.get(429, 0)}")
    for label, xs in (("alone", alone), ("under attack", attacked)):
        xs = sorted(xs)
        print(f"other client {label:>12}: p50 {statistics.median(xs) * 1000:7.1f} ms  "
              f"p95 {xs[int(0.95 * (len(xs) - 1))] * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
