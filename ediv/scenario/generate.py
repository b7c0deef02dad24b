"""Generate large, realistic VNUML scenarios for benchmarks and tests.

The topology looks like an operator's network: nets are subnets laid out on a ring of
"sites"; VM i's first interface is on its home subnet (VMs with close numbers share one, as
hosts of a LAN do) and its other interfaces go, with probability ``locality``, to a subnet
a few steps away on the ring (routers between neighbouring sites), else to any subnet (a
long-haul link). Same arguments, same scenario.
"""

from __future__ import annotations

import ipaddress
import itertools
import random

from ediv.scenario.model import VM, Address, Global, Interface, Net, Scenario

ADDRESS_SPACE = ipaddress.ip_network("198.18.0.0/15")  # benchmark space (RFC 2544)
NEAR = 3  # "a few steps away" on the ring


def generate_scenario(
    vms: int,
    nets: int,
    *,
    seed: int = 0,
    ifs_per_vm: int = 2,
    locality: float = 0.9,
    addresses: bool = True,
    name: str | None = None,
) -> Scenario:
    """A scenario with ``vms`` VMs named vm1.. and ``nets`` nets named net1.., every VM with
    ``min(ifs_per_vm, nets)`` interfaces on distinct nets.

    With ``addresses`` each net gets an equal-sized IPv4 subnet of 198.18.0.0/15 and each
    interface an address in it, when the space is large enough (otherwise no addresses)."""
    if vms < 0 or nets < 0 or ifs_per_vm < 0 or not 0.0 <= locality <= 1.0:
        raise ValueError("vms, nets, ifs_per_vm must be >= 0 and 0 <= locality <= 1")
    if vms and not nets and ifs_per_vm:
        raise ValueError("VMs with interfaces need at least one net")
    rng = random.Random(seed)
    per_vm = min(ifs_per_vm, nets)
    attach: list[list[int]] = []
    for i in range(vms):
        home = i * nets // vms
        chosen = [home] if per_vm else []
        while len(chosen) < per_vm:
            if rng.random() < locality:
                step = rng.randint(1, NEAR) * rng.choice((-1, 1))
                candidate = (home + step) % nets
            else:
                candidate = rng.randrange(nets)
            if candidate not in chosen:
                chosen.append(candidate)
            elif nets <= NEAR * 2 + 1:  # tiny rings: fall back to any free net
                candidate = next(n for n in range(nets) if n not in chosen)
                chosen.append(candidate)
        attach.append(chosen)

    subnets = _subnets(attach, nets) if addresses else None
    used = [0] * nets
    vm_list = []
    for i, chosen in enumerate(attach):
        interfaces = []
        for k, n in enumerate(chosen, 1):
            addrs = []
            if subnets is not None:
                used[n] += 1
                net = subnets[n]
                addrs = [Address(4, str(net.network_address + used[n]), str(net.netmask))]
            interfaces.append(Interface(k, f"net{n + 1}", addresses=addrs))
        vm_list.append(VM(f"vm{i + 1}", interfaces=interfaces))
    return Scenario(
        global_=Global(simulation_name=name or f"gen-{vms}x{nets}-s{seed}"),
        nets=[Net(f"net{n + 1}") for n in range(nets)],
        vms=vm_list,
        source=f"<generated {vms} VMs, {nets} nets, seed {seed}>",
    )


def _subnets(attach: list[list[int]], nets: int) -> list[ipaddress.IPv4Network] | None:
    if not nets:
        return []
    members = [0] * nets
    for chosen in attach:
        for n in chosen:
            members[n] += 1
    need = max(members) + 2  # network and broadcast addresses
    prefix = 32 - max(2, (need - 1).bit_length())
    per_net = 2 ** (32 - prefix)
    if per_net * nets > ADDRESS_SPACE.num_addresses:
        return None
    return list(itertools.islice(ADDRESS_SPACE.subnets(new_prefix=prefix), nets))
