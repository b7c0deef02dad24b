"""Container VMs: network, UTS, mount, PID and IPC namespaces with an overlay root.

Per VM: a named network namespace ``ediv-<key>-<n>`` (so ``ip -n`` can configure it in
batches), one veth pair per interface (``eth<id>`` inside, host end on the net's bridge), and
a long-lived init: ``nsenter --net=… unshare --fork --pid --mount --uts --ipc sh -c INIT``.
INIT mounts the overlay (lower: the host's ``/`` or a configured rootfs directory; upper and
work in the VM's state directory) on ``merged``, mounts proc/sys/dev there, sets hostname and
forwarding, touches ``ready`` and becomes ``chroot merged sh``-loop as PID 1. All mounts live
in the VM's private mount namespace: when its init dies, they vanish with it.
Exec and file copies enter the VM with ``nsenter -t PID`` (root and cwd of the VM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ediv.agent import commands as C
from ediv.agent import naming
from ediv.agent.drivers.base import AgentContext, ExecResult, ProcessOwner, vm_running
from ediv.agent.layout import VmLayout
from ediv.agent.proc import (
    MARKER_VAR,
    VM_VAR,
    base_env,
    children_map,
    register_child,
    run,
    start_time,
)
from ediv.errors import EdivError

INIT_SCRIPT = r"""
set -e
lower=$1 upper=$2 work=$3 merged=$4 name=$5 fwd4=$6 fwd6=$7 ready=$8
mount -t overlay ediv-root -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount -t sysfs sysfs "$merged/sys"
mount --rbind /dev "$merged/dev"
hostname "$name"
echo "$fwd4" > /proc/sys/net/ipv4/ip_forward
if [ -e /proc/sys/net/ipv6/conf/all/forwarding ]; then
  echo "$fwd6" > /proc/sys/net/ipv6/conf/all/forwarding
fi
: > "$ready"
cd "$merged"
exec chroot . /bin/sh -c 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'
"""

NSENTER_ALL = ["-m", "-u", "-n", "-p", "-i", "-r", "-w"]


class ContainerDriver(ProcessOwner):
    name = "container"

    # -- helpers ------------------------------------------------------------------------
    def _lower(self, ctx: AgentContext, vm: VmLayout) -> str:
        fs = vm.vm.filesystem
        if fs is not None and Path(fs.path).is_dir():
            return fs.path
        return ctx.config.container_rootfs

    def _pid(self, ctx: AgentContext, vm: VmLayout) -> int:
        pid = ctx.runtime.get(vm.name, {}).get("pid")
        if not pid:
            raise EdivError(f"vm {vm.name}: not running (no init process recorded)")
        if not vm_running(ctx, vm):
            raise EdivError(f"vm {vm.name}: its init process {pid} is gone")
        return pid

    # -- Driver -------------------------------------------------------------------------
    def check(self, ctx: AgentContext, vms: list[VmLayout]) -> list[str]:
        problems = []
        for vm in vms:
            fs = vm.vm.filesystem
            lower = self._lower(ctx, vm)
            if fs is not None and not Path(fs.path).is_dir():
                ctx.layout.warnings.append(
                    f"vm {vm.name}: container VMs need a directory as filesystem; "
                    f"{fs.path} ignored, using {lower}")
            if not Path(lower).is_dir():
                problems.append(f"vm {vm.name}: container root {lower} is not a directory")
            elif not (Path(lower) / "bin" / "sh").exists():
                problems.append(f"vm {vm.name}: container root {lower} has no /bin/sh")
        return problems

    def prepare(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        for vm in vms:
            d = ctx.sdir.vm_dir(vm.name)
            for sub in ("upper", "work", "merged"):
                (d / sub).mkdir(parents=True, exist_ok=True)

    def start(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        if not vms:
            return
        sdir = ctx.sdir
        sdir.record(*({"op": "netns", "name": v.netns} for v in vms),
                    *({"op": "link", "name": i.host} for v in vms for i in v.all_interfaces))
        lines: list[C.Tokens] = []
        for v in vms:
            lines.append(C.netns_add(v.netns))
            for i in v.all_interfaces:
                lines.append(C.veth_add(i.host, i.inside, v.netns, peer_mac=i.mac, mtu=i.mtu))
                if i.bridge:
                    lines.append(C.link_set(i.host, master=i.bridge, quiet6=True, up=True))
            if v.mgmt:
                lines.append(C.link_set(v.mgmt.host, quiet6=True))
                lines += [C.addr_add(v.mgmt.host, a) for a in v.mgmt.host_addresses]
                lines.append(C.link_set(v.mgmt.host, up=True))
        run(C.ip_batch_argv(), input=C.batch_text(lines), timeout=600)
        ctx.map(lambda v: self._configure_netns(v), vms)
        # journal the launchers in one write: a launcher started just before a crash is
        # still found by release through its environment marker
        records = []
        for v in vms:
            records.append(self._spawn(ctx, v))
            ctx.emitter.vm(v.name, "booting", driver=self.name)
        ctx.sdir.record(*records)

    def boot(self, ctx: AgentContext, vm: VmLayout) -> None:
        """A new init in the VM's existing network namespace, over the same overlay upper
        directory: addresses, routes and files written in the VM survive a stop."""
        self._set_links(vm, up=True)
        ctx.sdir.record(self._spawn(ctx, vm))
        ctx.emitter.vm(vm.name, "booting", driver=self.name)

    def shutdown(self, ctx: AgentContext, vm: VmLayout, graceful: bool, timeout: float) -> None:
        """The network namespace outlives the init: its host-side links go down so that a
        stopped VM answers nothing, as a powered-off machine."""
        super().shutdown(ctx, vm, graceful, timeout)
        self._set_links(vm, up=False)

    @staticmethod
    def _set_links(vm: VmLayout, up: bool) -> None:
        lines = [C.link_set(i.host, up=up, down=not up) for i in vm.all_interfaces]
        if lines:
            run(C.ip_batch_argv(), input=C.batch_text(lines))

    def request_halt(self, ctx: AgentContext, vm: VmLayout) -> None:
        """SIGTERM to the VM's init (it traps TERM and exits; its PID namespace goes with it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(ctx.runtime[vm.name]["pid"], signal.SIGTERM)

    def _configure_netns(self, v: VmLayout) -> None:
        lines: list[C.Tokens] = [C.link_set("lo", up=True)]
        for i in v.all_interfaces:
            lines += [C.addr_add(i.inside, a) for a in i.addresses]
            lines.append(C.link_set(i.inside, up=True))
        lines += [C.route_add(r.dest, r.gw, r.family) for r in v.routes]
        try:
            run(C.ip_batch_argv(v.netns), input=C.batch_text(lines))
        except EdivError as e:
            raise EdivError(f"vm {v.name}: network configuration failed: {e}") from None

    def _spawn(self, ctx: AgentContext, v: VmLayout) -> dict[str, Any]:
        d = ctx.sdir.vm_dir(v.name)
        ready = d / "ready"
        ready.unlink(missing_ok=True)
        argv = ["nsenter", f"--net=/run/netns/{v.netns}", "--",
                "unshare", "--fork", "--pid", "--mount", "--uts", "--ipc",
                "--propagation", "private", "--",
                "/bin/sh", "-c", INIT_SCRIPT, "ediv-init", self._lower(ctx, v),
                str(d / "upper"), str(d / "work"), str(d / "merged"), v.hostname,
                "1" if v.forward4 else "0", "1" if v.forward6 else "0", str(ready)]
        with open(d / "init.log", "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True,
                                 env=base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key),
                                                 VM_VAR: v.name}))
        self._procs[v.name] = p
        register_child(p)
        ctx.runtime[v.name] = {"launcher": p.pid}
        return {"op": "proc", "vm": v.name, "pid": p.pid, "start": start_time(p.pid)}

    def wait_ready(self, ctx: AgentContext, vms: list[VmLayout], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {v.name: v for v in vms}
        while pending:
            kids = None
            records = []
            for name, _v in list(pending.items()):
                p = self._procs.get(name)
                if p is not None and p.poll() is not None:
                    log = (ctx.sdir.vm_dir(name) / "init.log").read_text(errors="replace")
                    raise EdivError(f"vm {name}: init exited with {p.returncode}: "
                                    f"{log.strip()[-500:]}")
                if not (ctx.sdir.vm_dir(name) / "ready").exists():
                    continue
                kids = kids if kids is not None else children_map()
                launcher = ctx.runtime[name]["launcher"]
                init = kids.get(launcher, [])
                if not init:
                    continue
                pid = init[0]
                ctx.runtime[name].update(pid=pid, start=start_time(pid))
                records.append({"op": "proc", "vm": name, "pid": pid,
                                "start": ctx.runtime[name]["start"]})
                ctx.emitter.vm(name, "running", driver=self.name, pid=pid)
                del pending[name]
            ctx.sdir.record(*records)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise EdivError(f"VMs not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.01)

    def exec(self, ctx: AgentContext, vm: VmLayout, commands: list[str]) -> list[ExecResult]:
        pid = self._pid(ctx, vm)
        out = []
        for cmd in commands:
            try:
                p = subprocess.run(["nsenter", "-t", str(pid), *NSENTER_ALL, "--",
                                    "/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=ctx.config.exec_timeout, env=base_env(), check=False)
                out.append(ExecResult(cmd, p.returncode, p.stdout.decode(errors="replace")))
            except subprocess.TimeoutExpired as e:
                text = (e.output or b"").decode(errors="replace")
                out.append(ExecResult(cmd, 124, text + "\n[ediv: timed out]"))
        return out

    def put_files(self, ctx: AgentContext, vm: VmLayout, src_dir: Path, dst: str) -> None:
        """tar on the host, untar inside the VM (symlinks resolve in the VM's root)."""
        pid = self._pid(ctx, vm)
        tar = subprocess.Popen(["tar", "-C", str(src_dir), "-cf", "-", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
        p = subprocess.run(["nsenter", "-t", str(pid), *NSENTER_ALL, "--", "/bin/sh", "-c",
                            'mkdir -p "$1" && tar -xf - -C "$1"', "ediv-put", dst],
                           stdin=tar.stdout, capture_output=True, env=base_env(), check=False,
                           timeout=ctx.config.exec_timeout)
        tar.stdout.close()
        terr = tar.stderr.read().decode(errors="replace")
        tar.wait()
        if tar.returncode != 0 or p.returncode != 0:
            raise EdivError(f"vm {vm.name}: copying {src_dir} to {dst} failed: "
                            f"{terr.strip()} {p.stderr.decode(errors='replace').strip()}")

    def runtime_info(self, ctx: AgentContext, vm: VmLayout) -> dict[str, Any]:
        rt = ctx.runtime.get(vm.name, {})
        return {"pid": rt.get("pid"), "start": rt.get("start"), "netns": vm.netns,
                "console": f"nsenter -t {rt.get('pid')} -a -r -w /bin/sh"}

