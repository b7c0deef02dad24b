"""Deploy + release N VMs on this host with ediv-host; print seconds and peak memory.

    sudo .venv/bin/python bench/bench_agent.py                 # 10/100/500 containers, 10/30 UML
    sudo .venv/bin/python bench/bench_agent.py --containers 100 --uml 0

Each VM has two interfaces: eth1 on one of a few LANs (198.18.x.0/24) and eth2 on a shared
core net (198.19.0.0/16). After the deploy the first VM pings the last one on both nets (the
"reachable" time). Runs the agent as a subprocess, exactly as the controller does; peak memory
is the agent process's maximum RSS (from wait4), not counting the VMs it starts. Then one VM
is stopped, started, rebooted and reset (``ediv-host vm``), each timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENT = [sys.executable, "-m", "ediv.agent.main"]
PER_LAN = 200


def scenario_xml(n: int, vm_type: str, image: str | None) -> str:
    lans = (n + PER_LAN - 1) // PER_LAN
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<vnuml>", "  <global>",
           "    <version>1.8</version>", f"    <simulation_name>bench{vm_type}{n}"
           "</simulation_name>", '    <vm_mgmt type="none"/>', "  </global>"]
    out += [f'  <net name="Lan{j}" mode="virtual_bridge"/>' for j in range(lans)]
    out.append('  <net name="Core" mode="virtual_bridge"/>')
    for i in range(n):
        lan, host = divmod(i, PER_LAN)
        out.append(f'  <vm name="v{i}" type="{vm_type}">')
        if image:
            out.append(f'    <filesystem type="cow">{image}</filesystem><mem>64M</mem>')
        out.append(f'    <if id="1" net="Lan{lan}"><ipv4>198.18.{lan + 1}.{host + 1}/24'
                   "</ipv4></if>")
        out.append(f'    <if id="2" net="Core"><ipv4>198.19.{i // 250}.{i % 250 + 1}/16'
                   "</ipv4></if>")
        if i == 0:
            last = n - 1
            llan, lhost = divmod(last, PER_LAN)
            target = f"198.19.{last // 250}.{last % 250 + 1}"
            cmds = f"ping -c1 -W5 {target}"
            if llan == 0:
                cmds += f" &amp;&amp; ping -c1 -W5 198.18.1.{lhost + 1}"
            out.append(f'    <exec seq="reach" type="verbatim">{cmds}</exec>')
        out.append("  </vm>")
    out.append("</vnuml>")
    return "\n".join(out) + "\n"


def agent(state: Path, *args: str, bundle: Path | None = None) -> tuple[float, dict, float]:
    # the agent config lets VMs use the bench's own image (outside the default image roots)
    config = state.parent / "agent.json"
    config.write_text(json.dumps({"vm_image_paths": [str(state.parent)]}))
    argv = [*AGENT, "--state-dir", str(state), "--config", str(config), *args]
    if bundle:
        argv += ["--bundle", str(bundle)]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        dt = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    last = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {last or stderr[-2000:]}")
    return dt, last, usage.ru_maxrss / 1024


def bench(n: int, vm_type: str, image: str | None, workdir: Path) -> None:
    bundle = workdir / f"{vm_type}{n}"
    (bundle / "files").mkdir(parents=True, exist_ok=True)
    (bundle / "scenario.xml").write_text(scenario_xml(n, vm_type, image))
    key = f"b{vm_type[0]}{n}"[:6]
    (bundle / "deploy.json").write_text(json.dumps({"scenario": f"bench{vm_type}{n}",
                                                    "key": key}))
    state = workdir / "state"
    try:
        t_dep, res, mem_dep = agent(state, "deploy", bundle=bundle)
        t_exec, res_exec, _ = agent(state, "exec", "reach", "--key", key)
        reach_ok = all(r["exit_code"] == 0 for r in res_exec.get("results", []))
        one_vm = {action: agent(state, "vm", "--key", key, "v0", action)[0]
                  for action in ("stop", "start", "reboot", "reset")}
    finally:
        t_rel, _, mem_rel = agent(state, "release", "--key", key)
    print(f"{vm_type:9} {n:5d} VMs  deploy {t_dep:7.2f}s  (agent-reported {res['seconds']:.2f}s)"
          f"  reach-exec {t_exec:5.2f}s ok={reach_ok}  release {t_rel:6.2f}s"
          f"  peak agent RSS {max(mem_dep, mem_rel):6.1f} MiB", flush=True)
    print(f"{'':9} one VM (v0): " + "  ".join(f"{a} {t:5.2f}s" for a, t in one_vm.items()),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, nargs="*", default=[10, 100, 500])
    ap.add_argument("--uml", type=int, nargs="*", default=[10, 30])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ediv-bench-") as tmp:
        workdir = Path(tmp)
        for n in args.containers:
            bench(n, "container", None, workdir)
        if args.uml and any(args.uml):
            from ediv.agent.rootfs import build_busybox_rootfs

            image = build_busybox_rootfs(workdir / "rootfs.img")
            for n in args.uml:
                if n:
                    bench(n, "uml", str(image), workdir)


if __name__ == "__main__":
    main()
