"""Benchmark the partition algorithms on generated scenarios.

    python bench/bench_partition.py            # 1,000 and 10,000 VMs x 2,000 nets, 4/16/64 hosts
    python bench/bench_partition.py --quick    # 1,000 VMs, 4 and 16 hosts

For every algorithm: seconds for resolve() (an empty restriction set plus one pinned VM,
so the restriction path is exercised) and partition(), peak Python memory of a second,
traced run (tracemalloc), and the number of nets that span hosts (segments). The first
host is given a load of 0.5 so that the weighted algorithms take their weighted path.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv.cluster import Host
from ediv.partition import registry
from ediv.partition.common import cut_nets
from ediv.restrictions import Restrictions, VmDeployAt, resolve
from ediv.scenario.generate import generate_scenario


def run_once(algorithm: str, scenario, hosts, restrictions) -> dict[str, str]:
    placed = resolve(restrictions, scenario, hosts)
    return registry.get(algorithm).partition(scenario, hosts, placed).allocation


def measure(algorithm: str, scenario, hosts, restrictions) -> tuple[float, float, int]:
    start = time.perf_counter()
    allocation = run_once(algorithm, scenario, hosts, restrictions)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    run_once(algorithm, scenario, hosts, restrictions)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, len(cut_nets(scenario, allocation))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 VMs on 4 and 16 hosts only")
    parser.add_argument("--nets", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [1000] if args.quick else [1000, 10000]
    host_counts = [4, 16] if args.quick else [4, 16, 64]
    algorithms = list(registry.available())

    print(f"{'VMs':>6} {'nets':>5} {'hosts':>5}  {'algorithm':<26} {'seconds':>8} "
          f"{'peak MiB':>9} {'cut nets':>9}")
    for vms in sizes:
        start = time.perf_counter()
        scenario = generate_scenario(vms, args.nets, seed=args.seed)
        generated = time.perf_counter() - start
        print(f"# generated {vms} VMs / {args.nets} nets in {generated:.2f} s")
        for n in host_counts:
            hosts = [Host(f"host{i}", load=0.5 if i == 0 else 0.0) for i in range(n)]
            restrictions = Restrictions(
                source="<bench>", vm_deploy_at=[VmDeployAt("<bench>", 1, "vm1", hosts[-1].name)]
            )
            cuts = {}
            for algorithm in algorithms:
                seconds, peak, cut = measure(algorithm, scenario, hosts, restrictions)
                cuts[algorithm] = cut
                print(f"{vms:>6} {args.nets:>5} {n:>5}  {algorithm:<26} {seconds:>8.3f} "
                      f"{peak:>9.1f} {cut:>9}")
            if "MinCut" in cuts and "RoundRobin" in cuts:
                print(f"# {n} hosts: MinCut cuts {cuts['MinCut']} nets, RoundRobin "
                      f"{cuts['RoundRobin']}")


if __name__ == "__main__":
    main()
