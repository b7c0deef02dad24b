"""Plan + split, end to end, as `ediv split` does it, on generated scenarios.

    python bench/bench_split.py            # 1,000 and 10,000 VMs x 2,000 nets, 4/16/64 hosts
    python bench/bench_split.py --quick    # 1,000 and 10,000 VMs, 4 and 64 hosts, RR and WRR

For every algorithm and size: seconds for make_plan (restrictions, partition, segments),
split (sub-scenarios, MACs, management blocks, deploy.json) and to_xml of every
sub-scenario, and the peak Python memory of the whole (tracemalloc). Targets from the issue:
under 1 s for 10,000 VMs with WeightedRoundRobin, under 10 s with MinCut.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv.cluster import Cluster, Host, Pool
from ediv.partition import registry
from ediv.plan import make_plan
from ediv.scenario import to_xml
from ediv.scenario.generate import generate_scenario
from ediv.split import split


def cluster(n: int) -> Cluster:
    hosts = [Host(f"h{i}", address=f"198.19.0.{i}", load=0.5 if i == 1 else 0.1)
             for i in range(1, n + 1)]
    return Cluster(hosts=hosts, interconnect="vxlan", vxlan=Pool(1000, 100000),
                   mgmt_network="198.18.0.0", mgmt_network_mask=15)


def run(scenario, cl: Cluster, algorithm: str) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    plan = make_plan(scenario, cl, algorithm)
    t1 = time.perf_counter()
    parts = split(scenario, plan, cl, key="bench")
    t2 = time.perf_counter()
    size = sum(len(to_xml(p.scenario)) for p in parts)
    t3 = time.perf_counter()
    assert size > 0
    return t1 - t0, t2 - t1, t3 - t2, len(plan.segments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = (1000, 10000)
    host_counts = (4, 64) if args.quick else (4, 16, 64)
    algorithms = (["RoundRobin", "WeightedRoundRobin"] if args.quick
                  else list(registry.available()))
    print(f"{'VMs':>6} {'hosts':>5} {'algorithm':<26} {'plan s':>7} {'split s':>7} "
          f"{'xml s':>6} {'total s':>7} {'peak MiB':>8} {'segments':>8}")
    for vms in sizes:
        scenario = generate_scenario(vms, 2000, seed=1)
        for n in host_counts:
            for algo in algorithms:
                plan_s, split_s, xml_s, segs = run(scenario, cluster(n), algo)
                tracemalloc.start()
                run(scenario, cluster(n), algo)
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                print(f"{vms:>6} {n:>5} {algo:<26} {plan_s:>7.2f} {split_s:>7.2f} {xml_s:>6.2f} "
                      f"{plan_s + split_s + xml_s:>7.2f} {peak:>8.1f} {segs:>8}", flush=True)


if __name__ == "__main__":
    main()
