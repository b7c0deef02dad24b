"""ediv beside Mininet: the same N-node L2 network built on one host, in the same run.

    sudo .venv/bin/python bench/bench_peer.py [--sizes 51 200 1000] [--runs 3] [--no-mininet]

ediv: ``ediv deploy`` and ``ediv release`` as a user runs them (a new ``ediv`` process each
time, through SSH and the host agent of a one-host local testbed), of a scenario with one
virtual_bridge net and N container VMs. Mininet (Debian's package: LinuxBridge switch, no
controller, no uplink, hosts in 198.18.0.0/15): one switch and N hosts built and started with
its Python API in a separate ``/usr/bin/python3`` (timed from ``Mininet()`` to the end of
``start()``, so without that interpreter's start-up or ``import mininet``), then ``stop()``.
Best of ``--runs`` for each; the ratio is ediv / Mininet (below 1: ediv is faster).

Mininet is optional: without it the bench prints how to install it and measures ediv only.
Needs root. The testbed and Mininet share this machine's cores: run it on a quiet machine
(the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv import testbed

MININET_PYTHON = "/usr/bin/python3"  # Debian's mininet lives in the system Python
INSTALL_HINT = "apt-get install mininet bridge-utils  (LinuxBridge needs brctl)"

MININET_SCRIPT = r"""
import json, sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge

setLogLevel("error")
n = int(sys.argv[1])
t0 = time.monotonic()
net = Mininet(switch=LinuxBridge, controller=None, build=False, ipBase="198.18.0.0/15",
              autoSetMacs=True, waitConnected=False)
try:
    s1 = net.addSwitch("s1")
    for i in range(1, n + 1):
        net.addLink(net.addHost(f"h{i}"), s1)
    net.build()
    net.start()
    up = time.monotonic() - t0
    first, last = net.hosts[0], net.hosts[-1]
    ok = "1 received" in first.cmd(f"ping -c1 -W5 {last.IP()}")
finally:
    t0 = time.monotonic()
    net.stop()
    stop = time.monotonic() - t0
print(json.dumps({"start": up, "stop": stop, "ping": ok}))
"""


def mininet_available() -> str | None:
    """None when Mininet can run here, else what is missing."""
    if not Path(MININET_PYTHON).exists():
        return f"{MININET_PYTHON} not found"
    probe = subprocess.run([MININET_PYTHON, "-c", "import mininet.net, mininet.nodelib"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "the mininet package is not installed"
    for tool in ("brctl", "mnexec"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def run_mininet(n: int) -> dict:
    p = subprocess.run([MININET_PYTHON, "-c", MININET_SCRIPT, str(n)], capture_output=True,
                       text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"mininet {n}: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def scenario(path: Path, name: str, n: int) -> Path:
    """One L2 net, N container VMs on it; the first pings the last (exec seq 'reach')."""
    def addr(i: int) -> str:
        return f"198.18.{i // 250}.{i % 250 + 1}"

    vms = []
    for i in range(n):
        reach = (f'<exec seq="reach" type="verbatim">ping -c1 -W5 {addr(n - 1)}</exec>'
                 if i == 0 else "")
        vms.append(f'<vm name="h{i + 1}" type="container"><if id="1" net="lan">'
                   f'<ipv4 mask="255.254.0.0">{addr(i)}</ipv4></if>{reach}</vm>')
    path.write_text(f"<vnuml><global><version>1.8</version><simulation_name>{name}"
                    '</simulation_name><automac/><vm_mgmt type="none"/></global>'
                    f'<net name="lan" mode="virtual_bridge"/>{"".join(vms)}</vnuml>')
    return path


def ediv_cmd(*args: str) -> float:
    t0 = time.monotonic()
    p = subprocess.run([str(Path(sys.executable).with_name("ediv")), *args],
                       capture_output=True, text=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"ediv {' '.join(args[:2])}: {(p.stderr or p.stdout).strip()[-800:]}")
    return dt


def run_ediv(tb: testbed.Testbed, work: Path, n: int, run: int) -> dict:
    name = f"peer{n}r{run}"
    sc = scenario(work / f"{name}.xml", name, n)
    common = ["-c", str(tb.cluster_conf), "--state", str(work / "state.db")]
    up = ediv_cmd("deploy", str(sc), *common)
    try:
        reach = subprocess.run([str(Path(sys.executable).with_name("ediv")), "exec", name,
                                "reach", *common], capture_output=True, text=True,
                               timeout=600).returncode == 0
    finally:
        down = ediv_cmd("release", name, *common)
    return {"start": up, "stop": down, "ping": reach}


def best(rows: list[dict], key: str) -> float:
    return min(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[51, 200, 1000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-mininet", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # finally: the testbed goes down
    if os.geteuid() != 0:
        sys.exit("bench_peer needs root (testbed, Mininet)")
    missing = "--no-mininet" if args.no_mininet else mininet_available()
    if missing:
        print(f"Mininet skipped ({missing}); to compare, install it: {INSTALL_HINT}")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, python "
          f"{sys.version.split()[0]}; load average before: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'nodes':>5} {'ediv up s':>9} {'mininet up s':>12} {'ratio':>6} "
          f"{'ediv release s':>14} {'mininet stop s':>14} {'ratio':>6}  reachable")
    with tempfile.TemporaryDirectory(prefix="ediv-peer-") as tmp:
        work = Path(tmp)
        tb = testbed.up(1, work / "bed", progress=lambda _m: None)
        try:
            for n in args.sizes:
                ediv_rows, mn_rows = [], []
                for run in range(args.runs):  # interleaved: both see the same load
                    ediv_rows.append(run_ediv(tb, work, n, run))
                    if not missing:
                        mn_rows.append(run_mininet(n))
                e_up, e_down = best(ediv_rows, "start"), best(ediv_rows, "stop")
                reach = "ediv " + ("yes" if all(r["ping"] for r in ediv_rows) else "NO")
                if mn_rows:
                    m_up, m_down = best(mn_rows, "start"), best(mn_rows, "stop")
                    reach += ", mininet " + ("yes" if all(r["ping"] for r in mn_rows) else "NO")
                    print(f"{n:>5} {e_up:>9.2f} {m_up:>12.2f} {e_up / m_up:>6.2f} "
                          f"{e_down:>14.2f} {m_down:>14.2f} {e_down / m_down:>6.2f}  {reach}",
                          flush=True)
                else:
                    print(f"{n:>5} {e_up:>9.2f} {'-':>12} {'-':>6} {e_down:>14.2f} {'-':>14} "
                          f"{'-':>6}  {reach}", flush=True)
        finally:
            testbed.down(work / "bed", progress=lambda _m: None)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
