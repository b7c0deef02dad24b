"""How long the controller waits on a lost host, and whether the lost host leaves anything.

On a 2-host testbed, a 3-container scenario is deployed; once h2 has built its part, h2's
link to the switch goes down (the testbed's own veth, never the machine's uplink). The script
prints the seconds from link down to the deploy failing (rolled back on h1, h2 reported
unreachable) for each ``host_timeout`` given, then brings the link back, releases, and prints
whether anything was left, plus the tried / clean count.

    sudo .venv/bin/python bench/bench_faults.py [--bounds 5,10,20]

Needs root. Before the bound existed, the same fault hung the controller for as long as the
link was down (12 minutes seen), holding the scenario's lock.
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
from tests.test_faults import Env, _FaultBed, key_dir, scenario, wait_for


def one(bed: _FaultBed, work: Path, bound: int) -> tuple[float, bool, str]:
    """(seconds from link down to the deploy failing, clean afterwards, what was left)."""
    text = bed.cluster.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("host_timeout")]
    lines.insert(lines.index("[cluster]") + 1, f"host_timeout = {bound}")
    bed.cluster.write_text("\n".join(lines) + "\n")
    env = Env(bed, work)
    sc = scenario(work / f"b{bound}.xml", f"lost{bound}", on_boot=3 * bound)
    proc = env.start(*env.deploy_args(sc))
    h2 = bed.hosts[1]
    wait_for(lambda: key_dir(h2, "") and (key_dir(h2, "") / "state.json").exists(), 120,
             "h2 built")
    subprocess.run(["ip", "link", "set", h2.veth, "down"], check=True)
    t0 = time.monotonic()
    try:
        proc.communicate(timeout=20 * bound + 60)
        waited = time.monotonic() - t0
    finally:
        subprocess.run(["ip", "link", "set", h2.veth, "up"], check=True)
    failed = proc.returncode == 1
    env.cli("release", f"lost{bound}", "--state", str(env.state), check=False, timeout=600)
    left = env.settle(60)
    return waited, failed and not left, "; ".join(left)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bounds", default="5,10", help="host_timeout values to try (seconds)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (testbed)", file=sys.stderr)
        return 1
    bounds = [int(b) for b in args.bounds.split(",")]
    base = Path(tempfile.mkdtemp(prefix="ediv-bench-faults-"))
    tb = testbed.up(2, base / "bed", progress=lambda _m: None)
    tried = clean = 0
    try:
        bed = _FaultBed(tb, base)
        print(f"{'host_timeout':>12} {'waited (s)':>11}  clean")
        for bound in bounds:
            work = base / f"w{bound}"
            work.mkdir()
            waited, ok, left = one(bed, work, bound)
            tried += 1
            clean += ok
            print(f"{bound:>12} {waited:>11.1f}  {'yes' if ok else 'NO: ' + left}")
    finally:
        testbed.down(base / "bed", progress=lambda _m: None)
    print(f"faults: {tried} tried, {clean} clean")
    return 0 if clean == tried else 1


if __name__ == "__main__":
    sys.exit(main())
