"""The in-memory model of a VNUML scenario.

Plain dataclasses, one per element the deployment needs. Every object keeps the source
line it came from (``line``, 0 when built in code) so checks can report ``file:line``.
Element text and attribute values are kept as written (strings) where VNUML allows
free text (mem "64M", routes "default"); typed helpers sit beside the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VM_TYPES = ("uml", "container")
DEFAULT_VM_TYPE = ""  # empty: the host's configured default driver


@dataclass
class VmMgmt:
    """<vm_mgmt>: how VMs are reached from their host."""

    type: str = "none"  # private | net | none
    network: str = "192.168.0.0"
    mask: int = 24
    offset: int = 0
    host_mapping: bool = False
    mgmt_net: dict[str, str] | None = None  # <mgmt_net sock= hostip= autoconfigure=>
    line: int = 0


@dataclass
class Filesystem:
    path: str
    type: str = "cow"  # direct | cow | hostfs
    line: int = 0


@dataclass
class Kernel:
    path: str
    initrd: str | None = None
    devfs: str | None = None
    root: str | None = None
    modules: str | None = None
    trace: str | None = None
    line: int = 0


@dataclass
class Console:
    id: str
    value: str
    attrs: dict[str, str] = field(default_factory=dict)  # display=, port= (later VNX)
    line: int = 0


@dataclass
class Route:
    type: str  # ipv4 | ipv6
    gw: str
    destination: str  # "default" or CIDR
    line: int = 0


@dataclass
class Address:
    """An <ipv4> or <ipv6> of an interface; ``mask`` as written (dotted or prefix)."""

    family: int  # 4 | 6
    address: str  # may carry "/prefix"
    mask: str | None = None
    line: int = 0


@dataclass
class Interface:
    id: int
    net: str
    mac: str | None = None
    addresses: list[Address] = field(default_factory=list)
    line: int = 0
    name: str | None = None  # if@name (VNX 1.93+: the guest's own name for the interface)


@dataclass
class User:
    username: str
    group: str | None = None
    groups: list[str] = field(default_factory=list)
    ssh_keys: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class Filetree:
    """Copy the host directory ``source`` into the VM at ``root`` on sequence ``seq``."""

    source: str
    root: str
    seq: str
    user: str | None = None
    line: int = 0


@dataclass
class Exec:
    """Run ``command`` (verbatim) or the host file ``command`` (type=file) on ``seq``."""

    command: str
    seq: str
    type: str = "verbatim"  # verbatim | file
    mode: str | None = None
    user: str | None = None
    gui: str | None = None
    ostype: str | None = None
    line: int = 0


@dataclass
class VmDefaults:
    exec_mode: str | None = None
    filesystem: Filesystem | None = None
    mem: str | None = None
    kernel: Kernel | None = None
    shell: str | None = None
    basedir: str | None = None
    mng_if: str | None = None
    consoles: list[Console] = field(default_factory=list)
    xterm: str | None = None
    routes: list[Route] = field(default_factory=list)
    forwarding: str | None = None
    users: list[User] = field(default_factory=list)
    filetrees: list[Filetree] = field(default_factory=list)
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # VNX 1.94 <display_console> text


@dataclass
class Global:
    version: str = "1.8"
    simulation_name: str = ""
    ssh_version: str | None = None
    ssh_keys: list[str] = field(default_factory=list)
    automac: int | None = None  # offset; None when <automac> absent
    netconfig: dict[str, str] = field(default_factory=dict)  # stp, promisc
    vm_mgmt: VmMgmt | None = None
    tun_device: str | None = None
    vm_defaults: VmDefaults | None = None
    extensions: list[dict[str, str]] = field(default_factory=list)  # plugin=, conf=
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # VNX <dynamips_ext>, <olive_ext> text


@dataclass
class Net:
    name: str
    mode: str = "virtual_bridge"  # virtual_bridge | uml_switch
    type: str = "lan"  # lan | ppp
    external: str | None = None
    vlan: str | None = None
    bw: str | None = None
    sock: str | None = None
    hub: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # other attributes, kept for round trip
    line: int = 0


@dataclass
class VM:
    name: str
    order: int | None = None
    type: str = DEFAULT_VM_TYPE
    subtype: str | None = None
    os: str | None = None
    exec_mode: str | None = None
    appliance: str | None = None  # extension: path of an OVF/OVA package
    filesystem: Filesystem | None = None
    mem: str | None = None
    kernel: Kernel | None = None
    shell: str | None = None
    basedir: str | None = None
    mng_if: str | None = None
    consoles: list[Console] = field(default_factory=list)
    xterm: str | None = None
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    forwarding: str | None = None  # ip | ipv4 | ipv6; None when absent
    users: list[User] = field(default_factory=list)
    filetrees: list[Filetree] = field(default_factory=list)
    execs: list[Exec] = field(default_factory=list)
    line: int = 0
    # VNX 1.9x text elements the deployment ignores (dynamips_conf, conf, display_console,
    # on_boot), kept so that a file keeps its meaning through parse -> serialize.
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def nets(self) -> list[str]:
        """Nets this VM is attached to, in interface order, without repeats."""
        return list(dict.fromkeys(i.net for i in self.interfaces))


@dataclass
class HostIf:
    net: str
    addresses: list[Address] = field(default_factory=list)
    line: int = 0


@dataclass
class PhysicalIf:
    name: str
    ip: str
    type: str = "ipv4"
    mask: str | None = None
    gw: str | None = None
    line: int = 0


@dataclass
class HostSection:
    """The <host> section: the physical host's own part in the scenario."""

    hostifs: list[HostIf] = field(default_factory=list)
    physicalifs: list[PhysicalIf] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    forwarding: str | None = None
    execs: list[Exec] = field(default_factory=list)
    line: int = 0


@dataclass
class Scenario:
    """A whole VNUML scenario. ``root`` is "vnuml" or "vnx" (VNX 1.9x spelling)."""

    global_: Global = field(default_factory=Global)
    nets: list[Net] = field(default_factory=list)
    vms: list[VM] = field(default_factory=list)
    host: HostSection | None = None
    root: str = "vnuml"
    source: str = "<scenario>"  # file name for diagnostics
    basedir: str = "."  # directory relative paths (filetrees, exec files) resolve against

    @property
    def name(self) -> str:
        return self.global_.simulation_name

    def net(self, name: str) -> Net | None:
        for n in self.nets:
            if n.name == name:
                return n
        return None

    def vm(self, name: str) -> VM | None:
        for v in self.vms:
            if v.name == name:
                return v
        return None

    def ordered_vms(self) -> list[VM]:
        """VNUML order rule: VMs with ``order`` first, ascending (stable), then the rest
        in document order."""
        with_order = sorted((v for v in self.vms if v.order is not None), key=lambda v: v.order)
        return with_order + [v for v in self.vms if v.order is None]
