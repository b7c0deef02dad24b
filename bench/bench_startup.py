"""Start-up of the ``ediv`` and ``ediv-host`` commands: wall and CPU seconds, best of N.

    .venv/bin/python bench/bench_startup.py [--runs 10]

Each command runs in a new interpreter, as a user or the controller starts it (``ediv
--help``, ``ediv validate`` of a 2-VM file, ``ediv deploy --help``, ``ediv-host probe`` and
``ediv-host status``). CPU is user + system time of the child (``wait4``), steadier than wall
time on a loaded machine. ``python -c pass`` is the floor. The load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = """<vnuml><global><version>1.8</version><simulation_name>small</simulation_name>
<automac/><vm_mgmt type="none"/></global><net name="n1" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="n1"><ipv4>198.18.0.1/24</ipv4></if></vm>
<vm name="b" type="container"><if id="1" net="n1"><ipv4>198.18.0.2/24</ipv4></if></vm>
</vnuml>
"""


def measure(argv: list[str], runs: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``runs`` runs of ``argv``."""
    walls, cpus = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        walls.append(time.monotonic() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed")
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="ediv-startup-") as tmp:
        small = Path(tmp) / "small.xml"
        small.write_text(SMALL)
        state = Path(tmp) / "state"
        cli = "import sys; from ediv.client.cli import main; sys.argv[0] = 'ediv'; main()"
        host = "import sys; from ediv.agent.main import main; sys.exit(main())"
        rows = [
            ("python -c pass", [py, "-c", "pass"]),
            ("ediv --help", [py, "-c", cli, "--help"]),
            ("ediv validate small.xml", [py, "-c", cli, "validate", str(small)]),
            ("ediv deploy --help", [py, "-c", cli, "deploy", "--help"]),
            ("ediv-host probe", [py, "-c", host, "probe"]),
            ("ediv-host status", [py, "-c", host, "--state-dir", str(state), "status"]),
        ]
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'command':<26} {'wall s':>7} {'cpu s':>7}")
        for name, argv in rows:
            wall, cpu = measure(argv, args.runs)
            print(f"{name:<26} {wall:>7.3f} {cpu:>7.3f}", flush=True)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
