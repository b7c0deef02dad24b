"""Names of the kernel objects of a scenario, derived from its short key.

Every name starts with ``e`` + a kind letter + the key + ``.`` so that two scenarios never
collide and release can sweep by prefix. Interface names must fit IFNAMSIZ (15 characters):

    eb<key>.<net>        bridge of a net           (net index in base 36)
    ev<key>.<vm>.<if>    host end of a container veth (vm index, interface id in base 36)
    et<key>.<vm>.<if>    tap of a UML interface
    em<key>.<vm>         host end of a VM's management link
    ex<key>.<net>        VXLAN segment of a net
    eq<key>.<net>        802.1q VLAN segment of a net
    ediv-<key>-<host>-<vm>  network namespace of a container VM (not an interface: no limit)

``<host>`` identifies the agent's own network namespace (its inode, base 36): /run/netns and
process environments are shared by every network namespace of a machine, so agents of
several emulated hosts on one machine (the testbed) must not see each other's objects.

With a 6-character key the longest forms (ev/et) leave 4 base-36 digits for the VM index and
the interface id together: e.g. 1296 VMs with interface ids up to 1295, or 46656 VMs with ids
up to 35. A shorter key leaves more. Anything longer is refused before a deploy starts.
"""

from __future__ import annotations

import hashlib
import re

from ediv.errors import InputError

IFNAMSIZ = 15
KEY_RE = re.compile(r"^[a-z0-9]{1,6}$")
KINDS = "bvtmxq"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def derive_key(scenario_name: str) -> str:
    """A 6-character [a-z0-9] key from the scenario name (used when the controller gave none)."""
    n = int.from_bytes(hashlib.sha256(scenario_name.encode()).digest()[:8], "big")
    return "".join(_DIGITS[(n // 36**i) % 36] for i in range(6))


def check_key(key: str) -> str:
    if not KEY_RE.match(key or ""):
        raise InputError(f"scenario key {key!r} must match [a-z0-9]{{1,6}}", "deploy.json")
    return key


def b36(n: int) -> str:
    if n < 0:
        raise ValueError("negative index")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def _ifname(name: str) -> str:
    if len(name) > IFNAMSIZ:
        raise InputError(f"interface name {name!r} longer than {IFNAMSIZ} characters "
                         "(too many VMs, nets or interface ids for this key)", "layout")
    return name


def bridge_name(key: str, net_index: int) -> str:
    return _ifname(f"eb{key}.{b36(net_index)}")


def veth_name(key: str, vm_index: int, if_id: int) -> str:
    return _ifname(f"ev{key}.{b36(vm_index)}.{b36(if_id)}")


def tap_name(key: str, vm_index: int, if_id: int) -> str:
    return _ifname(f"et{key}.{b36(vm_index)}.{b36(if_id)}")


def mgmt_name(key: str, vm_index: int) -> str:
    return _ifname(f"em{key}.{b36(vm_index)}")


def vxlan_name(key: str, net_index: int) -> str:
    return _ifname(f"ex{key}.{b36(net_index)}")


def vlan_name(key: str, net_index: int) -> str:
    return _ifname(f"eq{key}.{b36(net_index)}")


def stable_mac(link: str) -> str:
    """A locally administered unicast MAC derived from a host link's name: a VM interface
    without a ``<mac>`` keeps the same address across reboots (neighbours' caches stay right)."""
    digest = hashlib.sha256(link.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def host_id() -> str:
    """Short id of the network namespace this agent runs in."""
    import os

    return b36(os.stat("/proc/self/ns/net").st_ino % 36**5)


def netns_name(key: str, vm_index: int, host: str | None = None) -> str:
    return f"ediv-{key}-{host or host_id()}-{b36(vm_index)}"


def marker(key: str) -> str:
    """Value of the environment marker of this scenario's processes on this (emulated) host."""
    return f"{key}@{host_id()}"


def owned_link_re(key: str) -> re.Pattern[str]:
    """Matches every interface name this scenario may have created."""
    return re.compile(rf"^e[{KINDS}]{re.escape(key)}\.")


def owned_netns_prefix(key: str) -> str:
    return f"ediv-{key}-{host_id()}-"


ANY_OWNED_LINK_RE = re.compile(rf"^e[{KINDS}]([a-z0-9]{{1,6}})\.")
ANY_OWNED_NETNS_RE = re.compile(r"^ediv-([a-z0-9]{1,6})-[0-9a-z]+-[0-9a-z]+$")
