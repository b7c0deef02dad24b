"""EDIV_HostSystem instances from ``ediv.cluster.Host`` objects (in memory).

The state-store provider will replace the list with rows of the store; the mapping of a Host
onto the class stays here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pywbem import CIMInstance, Real32, Uint16, Uint32, Uint64

from ediv.cluster import Host
from ediv.provider.providers import StaticProvider, make_instance

CLASSNAME = "EDIV_HostSystem"


def host_instance(host: Host, vms: int = 0) -> CIMInstance:
    return make_instance(CLASSNAME, {"CreationClassName": CLASSNAME, "Name": host.name}, {
        "ElementName": host.name,
        "Address": host.address or host.name,
        "SSHPort": Uint16(host.ssh_port),
        "SSHUser": host.ssh_user,
        "CPUWeight": Uint32(host.cpu),
        "MemoryMB": Uint64(host.mem),
        "MaxVirtualSystems": Uint32(host.max_vhost),
        "NumberOfVirtualSystems": Uint32(vms),
        "Load": Real32(host.load),
        "InterfaceName": host.ifname,
        "VirtualSystemType": host.vm_type,
        "EnabledState": Uint16(2),
        "OperationalStatus": [Uint16(2)],
        "Dedicated": [Uint16(0)],
    })


class HostSystemProvider(StaticProvider):
    """Serves EDIV_HostSystem from a list of hosts (or a callable giving the current list)."""

    def __init__(self, hosts: Iterable[Host] | Callable[[], Iterable[Host]]):
        source = hosts if callable(hosts) else list(hosts)

        def instances() -> list[CIMInstance]:
            current = source() if callable(source) else source
            return [host_instance(h) for h in current]

        super().__init__(CLASSNAME, instances)
