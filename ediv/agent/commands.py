"""Every ``ip``/``bridge`` command the agent issues, built as argv token lists.

One module so the command lines are testable without a kernel (the 802.1q path in
particular: the kernel here has no 8021q module). A token list is used either as a
command (``["ip", *tokens]``) or as one line of ``ip -batch -``.
"""

from __future__ import annotations

import re

from ediv.errors import EdivError

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50
_SAFE = re.compile(r"^[A-Za-z0-9_.:/@%+=-]+$")

Tokens = list[str]


def _safe(tokens: Tokens) -> Tokens:
    for t in tokens:
        if not _SAFE.match(t):
            raise EdivError(f"refusing unsafe token {t!r} in an ip command")
    return tokens


def ip_argv(tokens: Tokens, netns: str | None = None) -> list[str]:
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    return argv + _safe(tokens)


def ip_batch_argv(netns: str | None = None, force: bool = False) -> list[str]:
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    return [*argv, "-batch", "-"]


def batch_text(lines: list[Tokens]) -> str:
    return "".join(" ".join(_safe(line)) + "\n" for line in lines)


def netns_add(name: str) -> Tokens:
    return ["netns", "add", name]


def netns_del(name: str) -> Tokens:
    return ["netns", "del", name]


def link_del(name: str) -> Tokens:
    return ["link", "del", "dev", name]


def bridge_add(name: str, mtu: int | None = None, *, stp: bool = False,
               hub: bool = False) -> Tokens:
    """A bridge that forwards at once; ``stp`` turns spanning tree on (the kernel then holds
    ports 2 x 2 s before forwarding), ``hub`` makes it forget MACs at once (floods all)."""
    t = ["link", "add", "name", name]
    if mtu:
        t += ["mtu", str(mtu)]
    t += ["type", "bridge", "forward_delay", "0", "stp_state", "1" if stp else "0",
          "mcast_snooping", "0"]
    return [*t, "ageing_time", "0"] if hub else t


def tbf_add(dev: str, bits_per_second: int) -> list[str]:
    """``tc`` argv shaping ``dev``'s egress to ``bits_per_second`` (token bucket, ~10 ms burst)."""
    burst = max(1600, bits_per_second // 8 // 100)
    return ["tc", "qdisc", "replace", "dev", _safe([dev])[0], "root", "tbf",
            "rate", f"{int(bits_per_second)}bit", "burst", str(burst), "latency", "50ms"]


def link_set(name: str, *, master: str | None = None, up: bool = False, down: bool = False,
             mtu: int | None = None, quiet6: bool = False) -> Tokens:
    """``quiet6`` turns off IPv6 link-local addresses on host-side ports (no RS/DAD noise)."""
    t = ["link", "set", "dev", name]
    if master:
        t += ["master", master]
    if mtu:
        t += ["mtu", str(mtu)]
    if quiet6:
        t += ["addrgenmode", "none"]
    if up:
        t.append("up")
    elif down:
        t.append("down")
    return t


def link_nomaster(name: str) -> Tokens:
    return ["link", "set", "dev", name, "nomaster"]


def veth_add(host: str, peer: str, peer_netns: str, *, peer_mac: str | None = None,
             mtu: int | None = None) -> Tokens:
    """A veth pair whose ``peer`` end is created directly inside ``peer_netns``."""
    t = ["link", "add", "name", host]
    if mtu:
        t += ["mtu", str(mtu)]
    t += ["type", "veth", "peer", "name", peer]
    if peer_mac:
        t += ["address", peer_mac]
    if mtu:
        t += ["mtu", str(mtu)]
    return [*t, "netns", peer_netns]


def tap_add(name: str) -> Tokens:
    return ["tuntap", "add", "dev", name, "mode", "tap"]


def vxlan_add(name: str, vni: int, local: str, *, dev: str | None = None,
              port: int = VXLAN_PORT, mtu: int | None = None) -> Tokens:
    """Unicast VXLAN: no multicast group, peers come from fdb entries (``fdb_append``)."""
    t = ["link", "add", "name", name]
    if mtu:
        t += ["mtu", str(mtu)]
    t += ["type", "vxlan", "id", str(vni), "local", local, "dstport", str(port)]
    if dev:
        t += ["dev", dev]
    return t


def fdb_append(dev: str, peer: str) -> list[str]:
    """Head-end replication: flood BUM traffic of ``dev`` to ``peer`` (a ``bridge`` argv)."""
    return ["bridge", *_safe(["fdb", "append", "00:00:00:00:00:00", "dev", dev, "dst", peer])]


def vlan_add(dev: str, name: str, vid: int) -> Tokens:
    return ["link", "add", "link", dev, "name", name, "type", "vlan", "id", str(vid)]


def addr_add(dev: str, cidr: str) -> Tokens:
    return ["addr", "add", cidr, "dev", dev]


def addr_del(dev: str, cidr: str) -> Tokens:
    return ["addr", "del", cidr, "dev", dev]


def route_add(dest: str, gw: str, family: int = 4) -> Tokens:
    """``dest`` is a CIDR or ``default``; IPv6 default is spelled ``::/0`` (family explicit)."""
    if dest == "default":
        dest = "0.0.0.0/0" if family == 4 else "::/0"
    return ["route", "add", dest, "via", gw]


def route_del(dest: str, gw: str, family: int = 4) -> Tokens:
    return ["route", "del", *route_add(dest, gw, family)[2:]]
