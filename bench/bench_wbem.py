"""WBEM server figures: schema load (compile vs cache), and request rates over HTTPS on loopback.

Run: python bench/bench_wbem.py [--requests N] [--hosts H] [--vms 1000,10000]
                                [--assoc-vms 2000] [--skip-basic] [--repeat 3]
Prints timings; asserts nothing. Traffic goes to 127.0.0.1 only and stops after N requests.

The state-store part serves EDIV_VirtualSystem from a store populated directly (one
deployed scenario per size), from a server in a child process so that its RSS is its own:
EnumerateInstances of every VM (pywbem, and raw HTTPS without client parsing), the same
through pull operations, and GetInstance latency/throughput with 1, 8 and 32 concurrent
clients. The association part defines a generated scenario of --assoc-vms VMs (spec parsed,
so VSSDs and RASDs exist too), places it on 16 hosts and times AssociatorNames /
References on one VM and on the scenario, and ``pywbemcli profile centralinsts`` for each
advertised profile (each call capped by --assoc-timeout seconds).

Anchors, so that figures from runs under different load can be compared: the load average
(``uptime``) and a fixed CPU task (a pure-Python loop and a SHA-256) timed at the start and
at the end of the run. For the big enumeration the bench also times pywbem's own parsing of
the captured response offline (the client side alone), and for GetInstance the server
process's CPU time per request (what bounds its rate: one process, one GIL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pywbem

from ediv import state as st
from ediv.client.wbem_mode import VM_PROPERTIES  # what `ediv status --server` asks
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


def anchors(when: str) -> None:
    """Load average and a fixed CPU task: how busy the machine was around the figures."""
    import hashlib

    t = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i & 7
    loop = time.perf_counter() - t
    data = bytes(64 * 1024 * 1024)
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    sha = time.perf_counter() - t
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"anchor ({when}): load average {load}; python loop 3e6 {loop * 1000:.0f} ms; "
          f"sha256 64 MiB {sha * 1000:.0f} ms")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pywbem_parse_seconds(body: bytes, gc_off: bool = False) -> tuple[float, int]:
    """pywbem's client-side work on a captured EnumerateInstances response, offline: its
    SAX tuple tree and TupleParser, as WBEMConnection runs them (pywbem 1.x internals).
    ``gc_off``: with Python's cyclic garbage collector disabled meanwhile (what the
    collector's passes over the growing tree cost: the part that grows faster than the
    response)."""
    import gc

    from pywbem._tupleparse import TupleParser
    from pywbem._tupletree import xml_to_tupletree_sax

    if gc_off:
        gc.collect()
        gc.disable()
    try:
        t = time.perf_counter()
        tree = TupleParser().parse_cim(xml_to_tupletree_sax(body, "CIM-XML response"))
        elapsed = time.perf_counter() - t
    finally:
        if gc_off:
            gc.enable()
    response = tree[2][2][2][2]  # CIM / MESSAGE / SIMPLERSP / IMETHODRESPONSE: its children
    returned = [c for c in response if isinstance(c, tuple) and c[0] == "IRETURNVALUE"]
    return elapsed, len(returned[0][2]) if returned else 0


FRESH_CLIENT = """
import sys, time, pywbem
conn = pywbem.WBEMConnection(sys.argv[1], ("bench", "bench"), default_namespace="root/ediv",
                             ca_certs=sys.argv[2], timeout=600)
t = time.perf_counter()
conn.EnumerateInstances("EDIV_VirtualSystem")
print(time.perf_counter() - t)
"""


def fresh_client_seconds(url: str, ca: str, repeat: int) -> list[float]:
    """EnumerateInstances from a new interpreter that imports only pywbem, as a user's script
    does (this bench's own process holds the server's imports and data: a bigger heap for
    the cyclic GC to walk while pywbem parses)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    return [float(subprocess.run([sys.executable, "-c", FRESH_CLIENT, url, ca], env=env,
                                 check=True, capture_output=True, text=True).stdout)
            for _ in range(repeat)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def populate(state_path: Path, sizes: list[int]) -> None:
    """One deployed scenario of each size, written the way the controller writes them."""
    store = st.StateStore(state_path)
    for n in sizes:
        name = f"bench{n}"
        store.create_scenario(name, f"<vnuml><!-- {n} VMs --></vnuml>", basedir="/nonexistent",
                              algorithm="RoundRobin", state=st.DEPLOYING)
        store.set_vms(name, [(f"vm{i}", f"host{i % 16}", "container", "running")
                             for i in range(n)])
        store.set_scenario_state(name, st.DEPLOYED)
        store.unlock(name)
    store.close()


def _engine_server(base: str, threads: int, urls: multiprocessing.Queue,
                   stop: multiprocessing.Event) -> None:
    from ediv.provider.engine_plugin import EnginePlugin

    cfg = load_config(Path(base) / "server.toml", listen="127.0.0.1:0",
                      state=Path(base) / "state.db")
    cfg.schema_cache_dir = Path(base) / "cache"
    cfg.threads = threads
    plugin = EnginePlugin()
    handle = serve(cfg, plugins=[plugin])
    urls.put((handle.url, str(cfg.cert_file)))
    stop.wait()
    handle.stop()
    plugin.stop()


ENUMERATE_VMS = (
    b'<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
    b'<IMETHODCALL NAME="EnumerateInstances"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
    b'<NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName">'
    b'<CLASSNAME NAME="EDIV_VirtualSystem"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ>'
    b'</MESSAGE></CIM>')


def raw_enumerate(url: str, ca: str) -> int:
    """The request without pywbem's response parsing: what the server itself costs."""
    return len(raw_enumerate_body(url, ca))


def raw_enumerate_body(url: str, ca: str) -> bytes:
    import base64
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=600,
                                       context=ssl.create_default_context(cafile=ca))
    try:
        conn.request("POST", "/cimom", body=ENUMERATE_VMS, headers={
            "Content-Type": 'application/xml; charset="utf-8"', "CIMOperation": "MethodCall",
            "CIMMethod": "EnumerateInstances", "CIMObject": "root/ediv",
            "Authorization": "Basic " + base64.b64encode(b"bench:bench").decode()})
        return conn.getresponse().read()
    finally:
        conn.close()


def concurrent_gets(url: str, ca: str, paths: list, clients: int, per_client: int
                    ) -> tuple[list[float], float]:
    samples: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = pywbem.WBEMConnection(url, ("bench", "bench"), default_namespace=EDIV_NAMESPACE,
                                     ca_certs=ca, timeout=120)
        mine = []
        for i in range(per_client):
            path = paths[(k * per_client + i) % len(paths)]
            t = time.perf_counter()
            conn.GetInstance(path)
            mine.append(time.perf_counter() - t)
        with lock:
            samples.extend(mine)

    return samples, in_threads(client, clients)


def in_threads(client, clients: int) -> float:
    """Run ``client(k)`` for k in range(clients) at once; the wall time they took. A client
    that raises is reported (traceback printed) and the run fails: a dead client thread
    must not pass for a quiet one."""
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            client(k)
        except BaseException as exc:
            traceback.print_exc()
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} of {clients} client threads failed: {errors[0]!r}")
    return wall


GET_VM = (
    '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    '<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="GetInstance">'
    '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
    '<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="EDIV_VirtualSystem">'
    '<KEYBINDING NAME="CreationClassName"><KEYVALUE>EDIV_VirtualSystem</KEYVALUE></KEYBINDING>'
    '<KEYBINDING NAME="Name"><KEYVALUE>{name}</KEYVALUE></KEYBINDING></INSTANCENAME>'
    '</IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')


def raw_gets(url: str, ca: str, names: list[str], clients: int, per_client: int
             ) -> tuple[int, float]:
    """GetInstance over keep-alive HTTPS without pywbem's parsing: what the server sustains
    (the clients' CPU is not spent in pywbem's XML parser)."""
    import base64
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    headers = {"Content-Type": 'application/xml; charset="utf-8"', "CIMOperation": "MethodCall",
               "CIMMethod": "GetInstance", "CIMObject": "root/ediv",
               "Authorization": "Basic " + base64.b64encode(b"bench:bench").decode()}
    done = []
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=120, context=ctx)
        ok = 0
        for i in range(per_client):
            body = GET_VM.format(name=names[(k * per_client + i) % len(names)]).encode()
            conn.request("POST", "/cimom", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()  # always: the next request on this connection needs it read
            if resp.status == 200 and b"<INSTANCE " in data:
                ok += 1
            elif ok == 0:
                print(f"  raw client {k}: {resp.status} {resp.reason}: {data[:200]!r}")
        conn.close()
        with lock:
            done.append(ok)

    wall = in_threads(client, clients)  # before sum(done): the clients fill ``done``
    return sum(done), wall


def _generated_spec(vms: int) -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_scenario_load import generate

    return generate(vms, max(1, vms // 5)).decode()


def bench_assoc(conn: pywbem.WBEMConnection, url: str, ca: str, base: Path, n: int,
                limit: float) -> None:
    """Association traversal and profile central instances with one n-VM scenario."""
    name = "big"
    store = st.StateStore(base / "state.db")
    store.create_scenario(name, _generated_spec(n), basedir="/nonexistent",
                          algorithm="RoundRobin", state=st.DEPLOYING)
    store.set_vms(name, [(f"vm{i}", f"host{i % 16}", "uml", "running") for i in range(n)])
    store.set_scenario_state(name, st.DEPLOYED)
    store.unlock(name)
    store.close()
    quick = pywbem.WBEMConnection(url, ("bench", "bench"), default_namespace=EDIV_NAMESPACE,
                                  ca_certs=ca, timeout=limit)
    vm = pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": f"{name}/vm7"},
        namespace=EDIV_NAMESPACE)
    scenario = pywbem.CIMInstanceName("EDIV_Scenario", {
        "CreationClassName": "EDIV_Scenario", "Name": name}, namespace=EDIV_NAMESPACE)
    print(f"associations, one deployed scenario of {n} VMs ({n // 5} nets), "
          f"each call capped at {limit:.0f} s")
    for label, call in (
        ("first call: GetInstance of a VSSD (parses the spec once)", lambda: [
            quick.GetInstance(pywbem.CIMInstanceName(
                "EDIV_VirtualSystemSettingData", {"InstanceID": f"ediv:vm:{name}/vm0"},
                namespace=EDIV_NAMESPACE))]),
        ("AssociatorNames on one VM", lambda: quick.AssociatorNames(vm)),
        ("ReferenceNames on one VM", lambda: quick.ReferenceNames(vm)),
        ("Associators on one VM", lambda: quick.Associators(vm)),
        ("AssociatorNames on the scenario", lambda: quick.AssociatorNames(scenario)),
        ("References on the scenario", lambda: quick.References(scenario)),
    ):
        _timed_once(label, call)
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        print("pywbemcli not installed: profile centralinsts skipped")
        return
    for profile in ("Profile Registration", "System Virtualization", "Virtual System",
                    "Resource Allocation", "EDIV Distributed Scenario"):
        cmd = [str(exe), "-s", url, "-u", "bench", "-p", "bench", "--ca-certs", ca,
               "-d", "interop", "--timeout", str(int(limit)), "-o", "simple",
               "profile", "centralinsts", "--profile", profile]
        env = {k: v for k, v in os.environ.items() if k != "PYWBEMCLI_SERVER"}
        env["HOME"] = str(base)
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 30,
                                  env=env, cwd=base)
            outcome = "ok" if proc.returncode == 0 else \
                f"failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            outcome = "timed out"
        print(f"{'pywbemcli profile centralinsts ' + repr(profile):60s} "
              f"{time.perf_counter() - t:8.2f} s  {outcome}")


def _timed_once(label: str, call) -> None:
    t = time.perf_counter()
    try:
        found = len(call())
        outcome = f"{found} results"
    except (pywbem.Error, OSError) as exc:
        outcome = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    print(f"{label:60s} {time.perf_counter() - t:8.2f} s  {outcome}")


def bench_store(sizes: list[int], requests: int, threads: int, assoc_vms: int = 0,
                assoc_timeout: float = 60, repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        populate(base / "state.db", [])
        cfg = load_config(base / "server.toml")
        add_user(cfg.users_file, "bench", Role.READER, "bench")
        ctx = multiprocessing.get_context("fork")
        urls, stop = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=_engine_server, args=(tmp, threads, urls, stop))
        proc.start()
        try:
            url, ca = urls.get(timeout=60)
            conn = pywbem.WBEMConnection(url, ("bench", "bench"),
                                         default_namespace=EDIV_NAMESPACE, ca_certs=ca,
                                         timeout=600)
            print(f"server process RSS at start: {rss_mb(proc.pid):.1f} MB "
                  f"({threads} server threads)")
            for i, n in enumerate(sizes):
                store = st.StateStore(base / "state.db")
                if i:
                    store.delete_scenario(f"bench{sizes[i - 1]}")
                store.close()
                populate(base / "state.db", [n])
                counts: list[int] = []

                def enumerate_vms(out: list[int] = counts) -> None:
                    out.append(len(conn.EnumerateInstances("EDIV_VirtualSystem")))

                samples = timed(enumerate_vms, repeat)
                report(f"EnumerateInstances VMs ({counts[-1]} VMs)", samples)
                print(f"  -> {counts[-1] / statistics.median(samples):10.0f} instances/s "
                      f"(pywbem client, parsing included); server RSS "
                      f"{rss_mb(proc.pid):.1f} MB")
                raw = timed(lambda: raw_enumerate(url, ca), repeat)
                report(f"  same, raw HTTP ({n} VMs)", raw)
                print(f"  -> {n / statistics.median(raw):10.0f} instances/s "
                      f"(server and transfer only), {raw_enumerate(url, ca) / n:.0f} bytes "
                      f"per VM; server RSS {rss_mb(proc.pid):.1f} MB")
                body = raw_enumerate_body(url, ca)
                parse, parsed = pywbem_parse_seconds(body)
                no_gc, _ = pywbem_parse_seconds(body, gc_off=True)
                print(f"  pywbem parsing that response offline ({len(body) / 1e6:.1f} MB, "
                      f"{parsed} instances): {parse:.2f} s = "
                      f"{parse / statistics.median(samples) * 100:.0f} % of the end-to-end "
                      f"median (server and transfer: {statistics.median(raw):.2f} s); "
                      f"with the cyclic GC off {no_gc:.2f} s")
                fresh = fresh_client_seconds(url, ca, repeat)
                report(f"  same, pywbem in a fresh client process ({n} VMs)", fresh)
                narrow = timed(lambda: conn.EnumerateInstances(
                    "EDIV_VirtualSystem", PropertyList=VM_PROPERTIES), repeat)
                report(f"  same, PropertyList of {len(VM_PROPERTIES)} ({n} VMs)", narrow)
                pulled = timed(lambda out=counts: out.append(len(list(
                    conn.IterEnumerateInstances("EDIV_VirtualSystem", MaxObjectCount=1000)))), 1)
                report(f"  same, pull 1000/page ({counts[-1]} VMs)", pulled)
                print(f"  server RSS after {n} VMs: {rss_mb(proc.pid):.1f} MB")
            paths = conn.EnumerateInstanceNames("EDIV_VirtualSystem")
            for clients in (1, 8, 32):
                per = max(1, requests // clients)
                cpu0 = cpu_seconds(proc.pid)
                samples, wall = concurrent_gets(url, ca, paths, clients, per)
                cpu = (cpu_seconds(proc.pid) - cpu0) / len(samples)
                report(f"GetInstance VM, {clients:2d} clients", samples)
                print(f"  -> throughput {len(samples) / wall:8.1f} req/s; server CPU "
                      f"{cpu * 1000:.2f} ms/request; server RSS {rss_mb(proc.pid):.1f} MB")
            names = [str(p.keybindings["Name"]) for p in paths]
            for clients in (8, 32):
                cpu0 = cpu_seconds(proc.pid)
                ok, wall = raw_gets(url, ca, names, clients, max(1, requests // clients))
                cpu = (cpu_seconds(proc.pid) - cpu0) / max(1, ok)
                print(f"GetInstance VM raw HTTP, {clients:2d} clients: {ok} answers, "
                      f"throughput {ok / wall:8.1f} req/s (server-bound); server CPU "
                      f"{cpu * 1000:.2f} ms/request (one process: at most "
                      f"{1 / cpu:.0f} req/s with a free core)")
            if assoc_vms:
                store = st.StateStore(base / "state.db")
                for name in [r.name for r in store.scenarios()]:
                    store.delete_scenario(name)
                store.close()
                bench_assoc(conn, url, ca, base, assoc_vms, assoc_timeout)
                print(f"server RSS after the associations: {rss_mb(proc.pid):.1f} MB")
        finally:
            stop.set()
            proc.join(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", default="1000,10000",
                    help="sizes of the state-store scenarios (comma-separated)")
    ap.add_argument("--assoc-vms", type=int, default=2000,
                    help="VMs of the association scenario (0: skip that part)")
    ap.add_argument("--assoc-timeout", type=float, default=60,
                    help="client timeout of each association call, seconds")
    ap.add_argument("--server-threads", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each whole-class enumeration (the median is reported)")
    ap.add_argument("--skip-basic", action="store_true",
                    help="only the state-store figures")
    args = ap.parse_args()
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(key, None)
    anchors("start")
    if not args.skip_basic:
        bench_basic(args)
    bench_store([int(n) for n in args.vms.split(",") if n], args.requests, args.server_threads,
                args.assoc_vms, args.assoc_timeout, args.repeat)
    anchors("end")


def bench_basic(args: argparse.Namespace) -> None:
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
