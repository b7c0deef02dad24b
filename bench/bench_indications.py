"""Cost of lifecycle indications on a big state store: what the indication watcher spends
while nothing happens, while one job logs progress, and how fast a change is indicated.

Run: python bench/bench_indications.py [--vms 10000] [--scenarios 10] [--idle 30] [--busy 10]
Prints figures; asserts nothing. The server and a pywbem WBEMListener run in this process on
127.0.0.1; one subscription (every lifecycle indication of root/ediv) is active throughout.

- idle: CPU time of the watcher thread (and of the whole process) over ``--idle`` seconds
  in which nobody writes to the store;
- busy: the same over ``--busy`` seconds while another connection appends 10 job log lines
  per second (a deploy's progress);
- latency: from a scenario state change committed by another connection to the
  CIM_InstModification at the listener (median of 5);
- write side: ``set_vms`` of ``--vms`` rows into a fresh store (what change tracking adds
  to the controller's writes).
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pywbem

from ediv import state as st
from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.engine_plugin import EnginePlugin
from ediv.provider.server import serve

TICK = os.sysconf("SC_CLK_TCK")


def populate(path: Path, vms: int, scenarios: int, jobs: int) -> None:
    """Deployed scenarios holding ``vms`` VMs in all and finished jobs, as the controller
    writes them."""
    store = st.StateStore(path)
    per = vms // scenarios
    for s in range(scenarios):
        name = f"bench{s}"
        store.create_scenario(name, f"<vnuml><!-- {per} VMs --></vnuml>", basedir="/nonexistent",
                              algorithm="RoundRobin", state=st.DEPLOYING)
        store.set_vms(name, [(f"vm{i}", f"host{i % 16}", "container", "running")
                             for i in range(per)])
        store.set_scenario_state(name, st.DEPLOYED)
        store.unlock(name)
    for j in range(jobs):
        job = store.start_job("exec", f"bench{j % scenarios}")
        store.job_progress(job, 50, "step")
        store.finish_job(job, True, [])
    store.close()


def thread_cpu(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def watcher_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == "ediv-indications")


def measure(seconds: float, during=None) -> tuple[float, float]:
    """(watcher CPU s, process CPU s) over ``seconds``; ``during`` runs meanwhile."""
    tid = watcher_thread().native_id
    w0, p0 = thread_cpu(tid), time.process_time()
    if during is None:
        time.sleep(seconds)
    else:
        during(seconds)
    return thread_cpu(tid) - w0, time.process_time() - p0


def log_lines(state_path: Path):
    def run(seconds: float) -> None:
        store = st.StateStore(state_path)
        job = store.start_job("deploy", "bench0")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            store.job_progress(job, None, "progress line")
            time.sleep(0.1)
        store.finish_job(job, True, None)
        store.close()
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subscribe(conn: pywbem.WBEMConnection, url: str) -> None:
    flt = conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationFilter", properties={
        "Name": "bench", "Query": "SELECT * FROM CIM_InstIndication", "QueryLanguage": "WQL"}),
        namespace="interop")
    dest = conn.CreateInstance(pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", properties={
        "Name": "bench", "Destination": url}), namespace="interop")
    conn.CreateInstance(pywbem.CIMInstance("CIM_IndicationSubscription", properties={
        "Filter": flt, "Handler": dest}), namespace="interop")


def latency(state_path: Path, received: queue.Queue, rounds: int = 5) -> list[float]:
    store = st.StateStore(state_path)
    out = []
    try:
        for i in range(rounds):
            while not received.empty():
                received.get_nowait()
            state = st.FAILED if i % 2 == 0 else st.DEPLOYED
            t0 = time.perf_counter()
            store.set_scenario_state("bench1", state)
            while True:
                ind = received.get(timeout=30)
                if ind.classname == "CIM_InstModification" and \
                        ind["SourceInstance"]["Name"] == "bench1":
                    break
            out.append(time.perf_counter() - t0)
    finally:
        store.close()
    return out


def write_side(base: Path, vms: int) -> float:
    store = st.StateStore(base / "writes.db")
    store.create_scenario("w", "<vnuml/>", basedir="/nonexistent", algorithm=None,
                          state=st.DEPLOYING)
    rows = [(f"vm{i}", f"host{i % 16}", "container", "running") for i in range(vms)]
    t0 = time.perf_counter()
    store.set_vms("w", rows)
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=10_000)
    ap.add_argument("--scenarios", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--busy", type=float, default=10.0)
    args = ap.parse_args()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they override ca_certs in requests
        os.environ.pop(name, None)
    base = Path(tempfile.mkdtemp(prefix="ediv-bench-ind-"))
    received: queue.Queue = queue.Queue()
    listener = pywbem.WBEMListener("127.0.0.1", http_port=free_port(), https_port=None)
    listener.add_callback(lambda ind, _host: received.put(ind))
    handle = plugin = None
    try:
        state_path = base / "state.db"
        t0 = time.perf_counter()
        populate(state_path, args.vms, args.scenarios, args.jobs)
        print(f"store: {args.vms} VMs in {args.scenarios} scenarios, {args.jobs} jobs "
              f"({time.perf_counter() - t0:.1f} s to write)")
        cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=state_path)
        cfg.schema_cache_dir = base / "cache"
        cfg.indication_listeners = ["127.0.0.1"]  # the bench's listener
        add_user(cfg.users_file, "bench", Role.OPERATOR, "bench")
        plugin = EnginePlugin()
        handle = serve(cfg, plugins=[plugin])
        listener.start()
        conn = pywbem.WBEMConnection(handle.url, ("bench", "bench"), ca_certs=str(cfg.cert_file),
                                     timeout=60)
        t0 = time.perf_counter()
        subscribe(conn, f"http://127.0.0.1:{listener.http_port}")
        print(f"subscribe (3 CreateInstance):        {time.perf_counter() - t0:8.2f} s")
        time.sleep(3)  # the watcher's first look at the store (full snapshot)
        watcher, process = measure(args.idle)
        print(f"idle {args.idle:.0f} s: watcher CPU {watcher:8.2f} s ({watcher / args.idle:6.1%}), "
              f"process CPU {process:8.2f} s")
        watcher, process = measure(args.busy, log_lines(state_path))
        print(f"busy {args.busy:.0f} s (10 job log lines/s): watcher CPU {watcher:8.2f} s "
              f"({watcher / args.busy:6.1%}), process CPU {process:8.2f} s")
        lat = latency(state_path, received)
        print(f"change -> indication at the listener: median {statistics.median(lat) * 1000:6.0f}"
              f" ms, max {max(lat) * 1000:6.0f} ms (n={len(lat)})")
        print(f"write side: set_vms of {args.vms} rows:     {write_side(base, args.vms):8.2f} s")
    finally:
        if handle is not None:
            handle.stop()
        if plugin is not None:
            plugin.stop()
        listener.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
