"""The cluster: EDIV's ``cluster.conf`` and the hosts it names."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Host:
    """A deployment host as cluster.conf describes it (plus its measured load)."""

    name: str
    mem: int = 0  # MB available for VMs; 0 = not limited
    cpu: int = 100  # speed relative to the fastest host, percent (EDIV's weight)
    max_vhost: int = 0  # most VMs this host takes; 0 = unlimited
    ifname: str = "eth0"  # interface that carries VLAN segments
    address: str | None = None  # extension: address to reach it (ssh, VXLAN underlay)
    ssh_user: str = "root"
    ssh_port: int = 22
    vm_type: str = "uml"  # extension: default driver for VMs without vm@type
    load: float = 0.0  # 1-minute load as a fraction (0.0 idle, 1.0 fully loaded)

    def capacity(self) -> int | None:
        return self.max_vhost or None


@dataclass
class Pool:
    first: int
    last: int

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)


@dataclass
class Cluster:
    hosts: list[Host] = field(default_factory=list)
    default_segmentation: str = "RoundRobin"
    mgmt_network: str = "198.18.128.0"
    mgmt_network_mask: int = 17
    interconnect: str = "vxlan"  # vlan | vxlan
    vlan: Pool = field(default_factory=lambda: Pool(100, 199))
    vxlan: Pool = field(default_factory=lambda: Pool(1000, 16000))
    source: str = "<embedded>"
    warnings: list[str] = field(default_factory=list)

    def host(self, name: str) -> Host | None:
        for h in self.hosts:
            if h.name == name:
                return h
        return None
