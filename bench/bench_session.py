"""What one agent verb costs on a testbed host: over a fresh SSH exec channel (one agent
process per verb, as before the agent session) and as a request in a running session.

    sudo .venv/bin/python bench/bench_session.py [--runs 7]

Prints best and median of each step: the SSH connection, a bare exec channel (``true``: what
sshd and the login user's shell cost per channel), ``status`` and ``probe`` as one-shot verbs,
the start of a session with its first verb, and ``status`` / ``probe`` inside the session.
The anchors are the bare channel and the connection, measured in the same run. Needs root
(the testbed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ediv import testbed
from ediv.cluster import load_cluster
from ediv.remote import Connections, SshOptions, run_agent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_session needs root (testbed)")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        t0 = time.monotonic()
        fn()
        times.setdefault(name, []).append(time.monotonic() - t0)

    with tempfile.TemporaryDirectory(prefix="ediv-bsess-") as tmp:
        bed = Path(tmp) / "bed"
        tb = testbed.up(1, bed, progress=lambda _m: None)
        try:
            cluster = load_cluster(str(tb.cluster_conf))
            host = cluster.hosts[0]
            for _ in range(args.runs):
                with Connections(SshOptions.from_cluster(cluster)) as one:
                    timed("ssh connection (anchor)", lambda c=one: c.client(host))
                    timed("exec channel 'true' (anchor)", lambda c=one: c.run(host, "true"))
                    timed("one-shot status", lambda c=one: run_agent(c, host, "status"))
                    timed("one-shot probe", lambda c=one: run_agent(c, host, "probe"))
                with Connections(SshOptions.from_cluster(cluster), sessions=True) as ses:
                    ses.client(host)
                    timed("session start + status", lambda c=ses: run_agent(c, host, "status"))
                    timed("status in the session", lambda c=ses: run_agent(c, host, "status"))
                    timed("probe in the session", lambda c=ses: run_agent(c, host, "probe"))
        finally:
            testbed.down(bed, progress=lambda _m: None)
    print(f"{'step':32} {'best ms':>8} {'median ms':>10}")
    for name, values in times.items():
        values.sort()
        print(f"{name:32} {values[0] * 1000:8.1f} {values[len(values) // 2] * 1000:10.1f}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
