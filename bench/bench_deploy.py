"""EDIV's experiment on the local testbed: deploy and release times, 1 host against 3.

EDIV (2008) published, for its 6- and 51-VM scenarios (UML VMs, VNUML):
  6 VMs: 42 s on one host, 17 s on three;  51 VMs: 282 s on one host, 130 s on three.
This script deploys the same sizes through the real controller, SSH and host agents on a
testbed of namespace hosts on this machine, with container and UML VMs, idle and with one
host loaded (a CPU burner in that host's namespace), and prints the figures beside EDIV's.
It also deploys 1,000 container VMs across 4 testbed hosts.

    sudo .venv/bin/python bench/bench_deploy.py [--quick] [--no-uml] [--only VMS:TYPE:HOSTS]

Needs root. The testbed hosts share this machine's cores, so 3 hosts do not have 3 times
the CPU of one: the speed-up measured here comes from parallel hosts and parallel VMs, not
from more hardware (EDIV's hosts were separate machines).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv import testbed
from ediv.agent.rootfs import build_busybox_rootfs
from ediv.cluster import load_cluster
from ediv.service import Service
from ediv.state import StateStore

EDIV_PUBLISHED = {(6, 1): 42, (6, 3): 17, (51, 1): 282, (51, 3): 130}


def scenario(path: Path, name: str, n_vms: int, vm_type: str, rootfs: Path | None) -> Path:
    """Sites of one router and hosts; routers on a backbone (like examples/sites51.xml)."""
    sites = 3 if n_vms >= 6 else 1
    (n_vms - sites) // sites
    vms, nets = [], ['<net name="Backbone" mode="virtual_bridge"/>']
    fs = (f'<filesystem type="cow">{rootfs}</filesystem><mem>64M</mem>'
          if vm_type == "uml" else "")
    count = 0
    for k in range(1, sites + 1):
        nets.append(f'<net name="Site{k}" mode="virtual_bridge"/>')
        vms.append(f'<vm name="r{k}" type="{vm_type}">{fs}'
                   f'<if id="1" net="Backbone">'
                   f'<ipv4 mask="255.255.255.0">198.18.100.{k}</ipv4></if>'
                   f'<if id="2" net="Site{k}"><ipv4 mask="255.255.0.0">198.18.{k}.1</ipv4></if>'
                   f'<forwarding type="ip"/></vm>')
        count += 1
    k = 0
    while count < n_vms:
        site = k % sites + 1
        idx = k // sites
        vms.append(f'<vm name="v{k}" type="{vm_type}">{fs}'
                   f'<if id="1" net="Site{site}"><ipv4 mask="255.255.0.0">'
                   f'198.18.{site}.{10 + idx % 200}</ipv4></if></vm>'
                   if idx < 200 else
                   f'<vm name="v{k}" type="{vm_type}">{fs}<if id="1" net="Site{site}"/></vm>')
        k += 1
        count += 1
    path.write_text(f"<vnuml><global><version>1.8</version><simulation_name>{name}"
                    f'</simulation_name><automac/><vm_mgmt type="none"/></global>'
                    f'{"".join(nets)}{"".join(vms)}</vnuml>')
    return path


def anchor() -> str:
    """How busy the machine is: load average and a fixed Python loop (3e6 steps; about
    0.1-0.2 s on a quiet machine). Compare figures only with rows of similar anchors."""
    t = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i & 7
    return (f"load {os.getloadavg()[0]:.1f}, loop {1000 * (time.perf_counter() - t):.0f} ms")


def burn(netns: str, seconds: float) -> subprocess.Popen:
    """Load one host: a busy loop per core inside its namespace."""
    code = f"import time\nend=time.time()+{seconds}\nwhile time.time()<end: pass\n"
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code])


def measure(bed_dir: Path, n_hosts: int, n_vms: int, vm_type: str, rootfs: Path | None,
            loaded: bool, algorithm: str, work: Path) -> tuple[float, float, dict[str, int]]:
    tb = testbed.up(n_hosts, bed_dir, progress=lambda _m: None,
                    image_paths=[rootfs] if rootfs else [])
    burners: list[subprocess.Popen] = []
    try:
        cluster = load_cluster(str(tb.cluster_conf))
        store = StateStore(work / f"state-{time.monotonic_ns()}.db")
        sc = scenario(work / "bench.xml", f"bench{n_vms}", n_vms, vm_type, rootfs)
        if loaded:
            burners = [burn(tb.hosts[0].netns, 600) for _ in range(os.cpu_count() or 1)]
            time.sleep(3)
        with Service(store, cluster) as svc:
            # the testbed's hosts share one machine, so their measured loads are alike: state
            # the loads of separate machines (h1 busy, the others idle), as EDIV measured them
            loads = ({h.name: 0.9 if i == 0 else 0.1 for i, h in enumerate(tb.hosts)}
                     if loaded and n_hosts > 1 else
                     {h.name: 0.0 for h in tb.hosts})
            t0 = time.monotonic()
            plan = svc.deploy(sc.read_text(encoding="utf-8"), basedir=str(sc.parent),
                              source_name=str(sc),
                              algorithm=algorithm if n_hosts > 1 else "RoundRobin", loads=loads)
            deploy_s = time.monotonic() - t0
            t0 = time.monotonic()
            svc.release(plan.scenario)
            release_s = time.monotonic() - t0
        store.close()
        return deploy_s, release_s, {h: len(v) for h, v in plan.hosts.items()}
    finally:
        for b in burners:
            b.kill()
            b.wait()
        testbed.down(bed_dir, progress=lambda _m: None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 and 51 VMs idle only, no 1,000")
    ap.add_argument("--no-uml", action="store_true")
    ap.add_argument("--only", action="append", metavar="VMS:TYPE:HOSTS",
                    help="only these rows, idle (e.g. 51:uml:1, 1000:container:4); repeatable")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # finally: blocks take testbeds down
    if os.geteuid() != 0:
        sys.exit("bench_deploy needs root (testbed)")
    print(f"machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{os.uname().release}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ediv-bench-") as tmp:
        work = Path(tmp)
        rootfs = None if args.no_uml else build_busybox_rootfs(work / "rootfs.img")
        types = ["container"] + ([] if args.no_uml else ["uml"])
        if args.only:
            print(f"{'VMs':>5} {'type':>9} {'hosts':>5} {'deploy s':>9} {'release s':>9}  "
                  "split  anchors before / after")
            for row in args.only:
                n_txt, vm_type, h_txt = row.split(":")
                n_vms, n_hosts = int(n_txt), int(h_txt)
                before = anchor()
                d, r, split = measure(work / "bed", n_hosts, n_vms, vm_type,
                                      rootfs if vm_type == "uml" else None, False,
                                      "RoundRobin", work)
                print(f"{n_vms:>5} {vm_type:>9} {n_hosts:>5} {d:>9.1f} {r:>9.1f}  "
                      f"{'/'.join(map(str, split.values()))}  {before} / {anchor()}", flush=True)
            return
        print(f"{'VMs':>5} {'type':>9} {'hosts':>5} {'load':>6} {'deploy s':>9} "
              f"{'release s':>9} {'EDIV s':>7}  split")
        for n_vms in (6, 51):
            for vm_type in types:
                for n_hosts in (1, 3):
                    for loaded in (False, True) if not args.quick and n_hosts == 3 else (False,):
                        try:
                            d, r, split = measure(work / "bed", n_hosts, n_vms, vm_type,
                                                  rootfs, loaded, "WeightedRoundRobin", work)
                        except Exception as exc:  # report the row, go on with the others
                            print(f"{n_vms:>5} {vm_type:>9} {n_hosts:>5}  failed: {exc}")
                            continue
                        ref = EDIV_PUBLISHED.get((n_vms, n_hosts), "")
                        print(f"{n_vms:>5} {vm_type:>9} {n_hosts:>5} "
                              f"{'h1 busy' if loaded else 'idle':>6} {d:>9.1f} {r:>9.1f} "
                              f"{ref!s:>7}  {'/'.join(map(str, split.values()))}", flush=True)
        if not args.quick:
            d, r, split = measure(work / "bed", 4, 1000, "container", None, False, "RoundRobin",
                                  work)
            print(f"{1000:>5} {'container':>9} {4:>5} {'idle':>6} {d:>9.1f} {r:>9.1f} "
                  f"{'':>7}  {'/'.join(map(str, split.values()))}")


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
