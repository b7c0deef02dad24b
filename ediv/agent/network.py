"""Nets of a scenario on this host: bridges, segments to other hosts, the <host> section."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from ediv.agent import commands as C
from ediv.agent import naming
from ediv.agent.drivers.base import AgentContext
from ediv.agent.journal import ScenarioDir, list_keys
from ediv.agent.layout import HostLayout
from ediv.agent.proc import BASE_PATH, MARKER_VAR, base_env, register_child, run, start_time
from ediv.errors import EdivError

SYS_NET = Path("/sys/class/net")


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def link_mtu(dev: str | None) -> int:
    if dev:
        try:
            return int((SYS_NET / dev / "mtu").read_text())
        except (OSError, ValueError):
            pass
    return 1500


def kernel_vnis() -> dict[int, str]:
    """VNI -> name of every VXLAN device in the host namespace."""
    proc = run(["ip", "-d", "-j", "link", "show", "type", "vxlan"], check=False)
    out: dict[int, str] = {}
    try:
        for link in json.loads(proc.stdout or "[]"):
            vni = link.get("linkinfo", {}).get("info_data", {}).get("id")
            if vni is not None:
                out[int(vni)] = link.get("ifname", "?")
    except json.JSONDecodeError:
        pass
    return out


_SCRATCH_LINES = {
    "bridge": [["link", "add", "name", "b0", "type", "bridge"]],
    "vxlan": [["link", "add", "name", "x0", "type", "vxlan", "id", "42", "dstport", "4789"]],
    "vlan": [["link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"],
             C.vlan_add("p0", "p0.2", 2)],
    "veth": [["link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"]],
}


@functools.cache
def link_type_supported(kind: str) -> bool:
    """Try creating a ``kind`` link in a scratch network namespace (loads modules as needed)."""
    ns = f"ediv-probe-{uuid.uuid4().hex[:8]}"
    try:
        run(["ip", "netns", "add", ns])
    except EdivError:
        return False
    try:
        batch = C.batch_text(_SCRATCH_LINES[kind])
        return run(C.ip_batch_argv(ns), input=batch, check=False).returncode == 0
    finally:
        run(["ip", "netns", "del", ns], check=False)


def vlan_supported() -> bool:
    """True when 802.1q links can be created on this host."""
    return Path("/sys/module/8021q").exists() or link_type_supported("vlan")


def other_scenarios_vnis(state_root: Path, key: str) -> dict[int, str]:
    """VNIs recorded by other scenarios in this state dir (even if half-deployed)."""
    out = {}
    for other in list_keys(state_root):
        if other == key:
            continue
        meta = ScenarioDir(state_root, other).read_json(ScenarioDir(state_root, other).meta_path)
        for seg in (meta or {}).get("segments", []):
            if seg.get("kind") == "vxlan":
                out[int(seg["id"])] = f"scenario {meta.get('scenario')} ({other})"
    return out


def preflight(layout: HostLayout, state_root: Path, *, allow_external: bool,
              allow_host_exec: bool) -> list[str]:
    """Everything that would fail half-way, checked before anything is created."""
    problems = []
    for name in layout.links():
        if link_exists(name):
            problems.append(f"interface name clash: {name} already exists on this host")
    netns_dir = Path("/run/netns")
    for v in layout.vms:
        if v.driver == "container" and (netns_dir / v.netns).exists():
            problems.append(f"network namespace {v.netns} already exists")
    used = {**other_scenarios_vnis(state_root, layout.key), **kernel_vnis()}
    for n in layout.nets.values():
        seg = n.segment
        if seg is not None:  # external and capture below apply to every net
            if seg.kind == "vxlan" and seg.id in used:
                problems.append(f"net {n.name}: VNI {seg.id} is already used by {used[seg.id]}")
            if seg.kind == "vlan":
                if not vlan_supported():
                    problems.append(f"net {n.name}: 802.1q VLAN segment {seg.id} needs the "
                                    "kernel's 8021q support, which this host lacks (use vxlan)")
                elif not link_exists(seg.dev or ""):
                    problems.append(f"net {n.name}: VLAN device {seg.dev} not found")
            if seg.dev and seg.kind == "vxlan" and not link_exists(seg.dev):
                problems.append(f"net {n.name}: segment device {seg.dev} not found")
        if n.external:
            if not allow_external:
                problems.append(f"net {n.name}: external={n.external} needs allow_external "
                                "in the agent config")
            elif not link_exists(n.external):
                problems.append(f"net {n.name}: external interface {n.external} not found")
            elif n.external_vlan is not None and not vlan_supported():
                problems.append(f"net {n.name}: vlan={n.external_vlan} on {n.external} needs "
                                "the kernel's 8021q support, which this host lacks")
        if n.capture is not None:
            if shutil.which("tcpdump", path=BASE_PATH) is None:
                problems.append(f"net {n.name}: capture_file needs tcpdump on this host "
                                "(apt-get install tcpdump)")
            if n.capture.dev and not allow_external:
                problems.append(f"net {n.name}: capture_dev={n.capture.dev} captures a host "
                                "interface; it needs allow_external in the agent config")
            elif n.capture.dev and not link_exists(n.capture.dev):
                problems.append(f"net {n.name}: capture_dev {n.capture.dev} not found")
    if layout.host_execs and not allow_host_exec:
        problems.append("the <host> section has <exec> commands, but this agent does not allow "
                        "host commands (allow_host_exec = false)")
    if layout.host_forwarding and not allow_external:
        problems.append("<host><forwarding> changes the host's forwarding; it needs "
                        "allow_external in the agent config")
    return problems


def build_networks(ctx: AgentContext) -> None:
    """Bridges, segment links, peer fdb entries, hostif addresses, externals; journal first."""
    layout, sdir, em = ctx.layout, ctx.sdir, ctx.emitter
    nets = list(layout.nets.values())
    if not nets:
        return
    for w in layout.warnings:
        em.warning(w)
    sdir.record(*({"op": "link", "name": n.bridge} for n in nets),
                *({"op": "link", "name": n.segment_link} for n in nets if n.segment_link),
                *({"op": "link", "name": n.external_link} for n in nets
                  if n.external_vlan is not None),
                *({"op": "external", "dev": n.external, "bridge": n.bridge}
                  for n in nets if n.external and n.external_vlan is None))
    lines: list[C.Tokens] = []
    fdb: list[list[str]] = []
    for n in nets:
        lines.append(C.bridge_add(n.bridge, n.mtu, stp=n.stp, hub=n.hub))
        lines.append(C.link_set(n.bridge, quiet6=True))
        seg = n.segment
        if seg is not None and seg.kind == "vxlan":
            lines.append(C.vxlan_add(n.segment_link, seg.id, seg.local, dev=seg.dev, mtu=n.mtu))
            fdb += [C.fdb_append(n.segment_link, p) for p in seg.peers]
        elif seg is not None:
            lines.append(C.vlan_add(seg.dev, n.segment_link, seg.id))
        if n.segment_link:
            lines.append(C.link_set(n.segment_link, master=n.bridge, quiet6=True, up=True))
        if n.external_vlan is not None:
            lines.append(C.vlan_add(n.external, n.external_link, n.external_vlan))
            lines.append(C.link_set(n.external, up=True))
        if n.external:
            lines.append(C.link_set(n.external_link, master=n.bridge, up=True))
    for bridge, cidr in layout.host_addrs:
        lines.append(C.addr_add(bridge, cidr))
    lines += [C.link_set(n.bridge, up=True) for n in nets]
    run(C.ip_batch_argv(), input=C.batch_text(lines))
    if fdb:
        run(["bridge", "-batch", "-"], input="".join(" ".join(f[1:]) + "\n" for f in fdb))
    for n in nets:
        extra = {"bridge": n.bridge}
        if n.segment:
            extra.update(segment=n.segment.kind, id=n.segment.id)
        em.net(n.name, "up", **extra)


def shape_and_capture(ctx: AgentContext) -> None:
    """Once every VM's host-side port exists: ``<bw>`` of ppp nets as a token bucket on each
    port's egress (towards its VM, so each direction of the link is shaped at the receiving
    end), then ``capture_file`` as tcpdump on the bridge (or capture_dev), killed at release
    like the VMs' processes (it carries the scenario's marker)."""
    layout = ctx.layout
    for n in layout.nets.values():
        if n.bw is None:
            continue
        for v in layout.vms:
            for i in v.interfaces:
                if i.net == n.name:
                    run(C.tbf_add(i.host, n.bw))
    captures = [n for n in layout.nets.values() if n.capture is not None]
    if not captures:
        return
    folder = Path(ctx.config.capture_dir) / layout.scenario
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for n in captures:
        out = folder / n.capture.file
        argv = ["tcpdump", "-i", n.capture.dev or n.bridge, "-U", "-n", "-Z", "root",
                "-w", str(out)]
        if n.capture.expression:
            argv.append(n.capture.expression)
        with open(folder / f"{n.capture.file}.log", "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True, umask=0o077,
                                 env=base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key)}))
        register_child(p)
        # release kills it by the marker in its environment, as every VM process
        ctx.sdir.record({"op": "capture", "net": n.name, "pid": p.pid,
                         "start": start_time(p.pid)})
        ctx.emitter.emit("capture", net=n.name, file=str(out))


def configure_host(ctx: AgentContext) -> None:
    """<host> routes and forwarding (addresses are set with the bridges)."""
    layout, sdir = ctx.layout, ctx.sdir
    if layout.host_routes:
        sdir.record(*({"op": "host_route", "dest": r.dest, "gw": r.gw, "family": r.family}
                      for r in layout.host_routes))
        run(C.ip_batch_argv(), input=C.batch_text(
            [C.route_add(r.dest, r.gw, r.family) for r in layout.host_routes]))
    if layout.host_forwarding:
        fwd = layout.host_forwarding.lower()
        paths = []
        if fwd in ("ip", "ipv4"):
            paths.append("/proc/sys/net/ipv4/ip_forward")
        if fwd in ("ip", "ipv6"):
            paths.append("/proc/sys/net/ipv6/conf/all/forwarding")
        for p in paths:
            old = Path(p).read_text().strip()
            sdir.record({"op": "sysctl", "path": p, "old": old})
            Path(p).write_text("1\n")


def run_host_commands(ctx: AgentContext, seq: str) -> list[tuple[str, int, str]]:
    """<host><exec> of ``seq``, only when the config allows host commands."""
    execs = [e for e in ctx.layout.host_execs if e.seq == seq]
    if not execs:
        return []
    if not ctx.config.allow_host_exec:
        raise EdivError("host commands are not allowed by this agent (allow_host_exec = false)")
    out = []
    for e in execs:
        argv = ["/bin/sh", str(ctx.files_dir / e.command)] if e.type == "file" else \
            ["/bin/sh", "-c", e.command]
        p = subprocess.run(argv, capture_output=False, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=ctx.config.exec_timeout,
                           check=False, cwd=str(ctx.files_dir) if ctx.files_dir.is_dir()
                           else os.getcwd())
        out.append((e.command, p.returncode, p.stdout))
    return out
