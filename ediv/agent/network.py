"""Nets of a scenario on this host: bridges, segments to other hosts, the <host> section."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ediv.agent import commands as C
from ediv.agent import naming
from ediv.agent.journal import ScenarioDir, list_keys
from ediv.agent.proc import BASE_PATH, MARKER_VAR, base_env, register_child, run, start_time
from ediv.errors import EdivError, InputError

if TYPE_CHECKING:  # types only: ``probe`` imports this module and must start fast
    from ediv.agent.drivers.base import AgentContext
    from ediv.agent.layout import HostLayout

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


def ipv6_off(dev: str) -> None:
    """``net.ipv6.conf.<dev>.disable_ipv6 = 1`` (nothing to do on a kernel without IPv6).
    In /proc/sys a device's directory is its name as is (``sysctl``'s ``/`` for ``.`` is
    that tool's notation). Not for many links at once: the kernel's handler spins
    (``rtnl_trylock``, restart) while any netns on the machine holds the RTNL lock."""
    conf = Path("/proc/sys/net/ipv6/conf")
    if conf.is_dir():
        (conf / dev / "disable_ipv6").write_text("1\n")


_SCRATCH_LINES = {
    "bridge": [["link", "add", "name", "b0", "type", "bridge"]],
    "vxlan": [["link", "add", "name", "x0", "type", "vxlan", "id", "42", "dstport", "4789"]],
    "vlan": [["link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"],
             C.vlan_add("p0", "p0.2", 2)],
    "veth": [["link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"]],
}


# the kernel module of each link type: loaded means supported (built-in ones may not show)
_MODULES = {"bridge": "bridge", "vxlan": "vxlan", "vlan": "8021q", "veth": "veth"}


@functools.cache
def link_type_supported(kind: str) -> bool:
    """True when the type's module is loaded; else try creating a ``kind`` link in a scratch
    network namespace (loads modules as needed: three of them took 0.06-0.12 s of every
    probe, which is on the critical path of a small deploy)."""
    if Path("/sys/module", _MODULES[kind]).is_dir():
        return True
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
    return link_type_supported("vlan")


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
              allow_host_exec: bool, allow_hostif: bool = False) -> list[str]:
    """Everything that would fail half-way, checked before anything is created: also every
    change to the host outside the scenario's own objects that the config does not allow."""
    problems = host_access_problems(layout, allow_external=allow_external,
                                    allow_host_exec=allow_host_exec, allow_hostif=allow_hostif)
    for name in layout.links():
        if link_exists(name):
            problems.append(f"interface name clash: {name} already exists on this host")
    netns_dir = Path("/run/netns")
    for v in layout.vms:
        if v.driver == "container" and (netns_dir / v.netns).exists():
            problems.append(f"network namespace {v.netns} already exists")
    used = {**other_scenarios_vnis(state_root, layout.key), **kernel_vnis()}
    for n in layout.nets.values():
        if n.external and allow_external and not link_exists(n.external):
            problems.append(f"net {n.name}: external interface {n.external} not found")
        seg = n.segment
        if seg is not None:
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
        if n.external and allow_external and n.external_vlan is not None \
                and link_exists(n.external) and not vlan_supported():
            problems.append(f"net {n.name}: vlan={n.external_vlan} on {n.external} needs "
                            "the kernel's 8021q support, which this host lacks")
        if n.capture is not None:
            if shutil.which("tcpdump", path=BASE_PATH) is None:
                problems.append(f"net {n.name}: capture_file needs tcpdump on this host "
                                "(apt-get install tcpdump)")
            if n.capture.dev and allow_external and not link_exists(n.capture.dev):
                problems.append(f"net {n.name}: capture_dev {n.capture.dev} not found")
    return problems


def host_access_problems(layout: HostLayout, *, allow_external: bool, allow_host_exec: bool,
                         allow_hostif: bool = False) -> list[str]:
    """What the layout would change on the host beyond the scenario's own objects (bridges,
    links, namespaces, processes it creates), and that the agent config does not allow.
    Checked on every path (a net on one host as much as a segment; see docs/threat-model.md)."""
    problems = []
    for n in layout.nets.values():
        if n.external and not allow_external:
            problems.append(f"net {n.name}: external={n.external} attaches a host interface "
                            "to the scenario; it needs allow_external in the agent config")
        if n.capture is not None and n.capture.dev and not allow_external:
            problems.append(f"net {n.name}: capture_dev={n.capture.dev} captures a host "
                            "interface; it needs allow_external in the agent config")
    if layout.host_addrs and not (allow_hostif or allow_external):
        problems.append("the <host> section has <hostif> addresses (the host joins the "
                        "scenario's nets); they need allow_hostif or allow_external in the "
                        "agent config")
    if layout.host_routes and not allow_external:
        problems.append("the <host> section has <route>s, which change the host's routing "
                        "table; they need allow_external in the agent config")
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
    _refuse_host_changes(ctx)
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
    adds: list[C.Tokens] = []
    lines: list[C.Tokens] = []
    fdb: list[list[str]] = []
    for n in nets:
        adds.append(C.bridge_add(n.bridge, n.mtu, stp=n.stp, hub=n.hub))
        lines.append(C.link_set(n.bridge, quiet6=True))
        seg = n.segment
        if seg is not None and seg.kind == "vxlan":
            adds.append(C.vxlan_add(n.segment_link, seg.id, seg.local, dev=seg.dev, mtu=n.mtu))
            fdb += [C.fdb_append(n.segment_link, p) for p in seg.peers]
        elif seg is not None:
            adds.append(C.vlan_add(seg.dev, n.segment_link, seg.id))
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
    # a bridge with no IPv6 host address takes no IPv6 from its VMs: every VM's MLD reports
    # and DAD probes are flooded to it too, and with IPv6 on each one is routed (a lookup
    # through the host's ff00::/8 routes: one per host-side port, O(VMs) per packet)
    v6 = {bridge for bridge, cidr in layout.host_addrs if ":" in cidr}
    run(C.ip_batch_argv(), input=C.batch_text(adds))
    for n in nets:
        if n.bridge not in v6:
            ipv6_off(n.bridge)
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
    started = []
    for n in captures:
        out = folder / n.capture.file
        argv = ["tcpdump", "-i", n.capture.dev or n.bridge, "--immediate-mode", "-U", "-n",
                "-Z", "root",
                "-w", str(out)]
        if n.capture.expression:
            argv.append(n.capture.expression)
        log_path = folder / f"{n.capture.file}.log"
        log_path.unlink(missing_ok=True)
        with open(log_path, "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True, umask=0o077,
                                 env=base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key)}))
        register_child(p)
        # release kills it by the marker in its environment, as every VM process
        ctx.sdir.record({"op": "capture", "net": n.name, "pid": p.pid,
                         "start": start_time(p.pid)})
        started.append((n, p, log_path, out))
    # on_boot and the first exec must be captured: wait until tcpdump says it listens
    deadline = time.monotonic() + 10
    for n, p, log_path, out in started:
        while b"listening on" not in log_path.read_bytes():
            if p.poll() is not None:
                raise EdivError(f"net {n.name}: tcpdump exited with {p.returncode}: "
                                f"{log_path.read_text(errors='replace').strip()[-300:]}")
            if time.monotonic() > deadline:
                raise EdivError(f"net {n.name}: tcpdump did not start listening in 10 s")
            time.sleep(0.02)
        ctx.emitter.emit("capture", net=n.name, file=str(out))


def configure_host(ctx: AgentContext) -> None:
    """<host> routes and forwarding (addresses are set with the bridges)."""
    layout, sdir = ctx.layout, ctx.sdir
    _refuse_host_changes(ctx)
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


def _refuse_host_changes(ctx: AgentContext) -> None:
    """The preflight's host-access rule again, where the changes are made (any caller)."""
    cfg = ctx.config
    problems = host_access_problems(ctx.layout, allow_external=cfg.allow_external,
                                    allow_host_exec=True, allow_hostif=cfg.allow_hostif)
    if problems:
        raise EdivError("; ".join(problems))


def run_host_commands(ctx: AgentContext, seq: str) -> list[tuple[str, int, str]]:
    """<host><exec> of ``seq``, only when the config allows host commands."""
    execs = [e for e in ctx.layout.host_execs if e.seq == seq]
    if not execs:
        return []
    if not ctx.config.allow_host_exec:
        raise EdivError("host commands are not allowed by this agent (allow_host_exec = false)")
    base = ctx.files_dir.resolve()
    for e in execs:  # every file inside the bundle's files/ before anything runs
        if e.type == "file" and not (base / e.command).resolve().is_relative_to(base):
            raise InputError(f"host exec file {e.command!r} is outside the bundle's files/",
                             "exec")
    out = []
    for e in execs:
        argv = ["/bin/sh", str((base / e.command).resolve())] if e.type == "file" else \
            ["/bin/sh", "-c", e.command]
        p = subprocess.run(argv, capture_output=False, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=ctx.config.exec_timeout,
                           check=False, cwd=str(ctx.files_dir) if ctx.files_dir.is_dir()
                           else os.getcwd())
        out.append((e.command, p.returncode, p.stdout))
    return out
