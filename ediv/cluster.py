"""The cluster: EDIV's ``cluster.conf`` and the hosts it names."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ediv.errors import Diagnostic, InputError


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
    agent: str = "ediv-host"  # extension: command that runs the host agent over SSH
    # extension: the host's image store, where deploys ship <filesystem>image:NAME</filesystem>
    # images (by digest); the host's agent must list it in vm_image_paths (its default does)
    image_store: str = "/var/lib/ediv/images"
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
    ssh_key: str | None = None  # extension: private key for the hosts (default: ssh agent/~/.ssh)
    known_hosts: str | None = None  # extension: host keys to verify (default: ~/.ssh/known_hosts)
    # extension: directories (besides the scenario's own) whose files scenarios may name by
    # absolute path in <filetree>/<exec type="file"> (see docs/threat-model.md)
    file_dirs: list[str] = field(default_factory=list)
    # extension: seconds the controller waits on a silent host (lost link, stopped sshd or
    # agent) before failing its step; agents send a heartbeat well within it
    host_timeout: int = 60
    source: str = "<embedded>"
    warnings: list[str] = field(default_factory=list)

    def host(self, name: str) -> Host | None:
        for h in self.hosts:
            if h.name == name:
                return h
        return None


# --- cluster.conf -------------------------------------------------------------------------
# EDIV wrote cluster.conf for Perl's AppConfig: INI sections, `key = value`, `#` comments and
# *repeated* keys (`host = a` / `host = b`) whose order matters. configparser cannot keep
# repeated keys, so this small reader does; it is the only INI dialect ediv reads.

_HOST_KEYS = {
    "mem": "mem",
    "cpu": "cpu",
    "max_vhost": "max_vhost",
    "max_vhosts": "max_vhost",
    "max_vms": "max_vhost",
    "ifname": "ifname",
    "if_name": "ifname",
    "address": "address",
    "host_name": "address",
    "ssh_user": "ssh_user",
    "ssh_port": "ssh_port",
    "vm_type": "vm_type",
    "agent": "agent",
    "image_store": "image_store",
}
_INT_HOST_KEYS = {"mem", "cpu", "max_vhost", "ssh_port"}
_INTERCONNECTS = ("vlan", "vxlan")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_VM_TYPES = ("uml", "container")


def _read_ini(text: str, source: str) -> list[tuple[str, str, str, int]]:
    """(section, key, value, line) in file order; repeated keys kept."""
    entries: list[tuple[str, str, str, int]] = []
    errors: list[Diagnostic] = []
    section = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            errors.append(
                Diagnostic(source, lineno, f"expected 'key = value', got {raw.strip()!r}")
            )
            continue
        entries.append((section, key.strip().lower(), value.strip(), lineno))
    if errors:
        raise InputError(errors)
    return entries


def parse_cluster(text: str, source: str = "<cluster.conf>") -> Cluster:
    """Read an EDIV cluster.conf (0.9.4 or vnx-ediv spelling) plus ediv's extensions.

    Unknown keys and sections are warnings (``Cluster.warnings``), never errors."""
    entries = _read_ini(text, source)
    cluster = Cluster(source=source)
    errors: list[Diagnostic] = []
    host_order: list[tuple[str, int]] = []
    host_props: dict[str, list[tuple[str, str, int]]] = {}
    pools: dict[str, dict[str, tuple[str, int]]] = {"vlan": {}, "vxlan": {}}
    explicit_interconnect = False

    def as_int(value: str, line: int, what: str, minimum: int = 0) -> int | None:
        try:
            n = int(value)
        except ValueError:
            errors.append(Diagnostic(source, line, f"{what} must be an integer, got {value!r}"))
            return None
        if n < minimum:
            errors.append(Diagnostic(source, line, f"{what} must be >= {minimum}, got {n}"))
            return None
        return n

    for section, key, value, line in entries:
        sec = section.lower()
        if sec == "cluster":
            if key == "host":
                host_order.append((value, line))
            elif key == "default_segmentation":
                cluster.default_segmentation = value
            elif key == "mgmt_network":
                try:
                    cluster.mgmt_network = str(ipaddress.IPv4Address(value))
                except ValueError:
                    errors.append(Diagnostic(source, line, "mgmt_network must be an IPv4 "
                                             f"address, got {value!r}"))
            elif key == "mgmt_network_mask":
                n = as_int(value, line, "mgmt_network_mask")
                if n is not None:
                    if not 8 <= n <= 30:
                        errors.append(Diagnostic(source, line, "mgmt_network_mask must be 8..30"))
                    cluster.mgmt_network_mask = n
            elif key == "interconnect":
                if value.lower() not in _INTERCONNECTS:
                    errors.append(
                        Diagnostic(
                            source, line, f"interconnect must be vlan or vxlan, got {value!r}"
                        )
                    )
                else:
                    cluster.interconnect = value.lower()
                    explicit_interconnect = True
            elif key in ("ssh_key", "known_hosts"):
                setattr(cluster, key, value)
            elif key == "file_dirs":
                cluster.file_dirs += [d.strip() for d in value.split(",") if d.strip()]
            elif key == "host_timeout":
                n = as_int(value, line, "host_timeout", minimum=2)
                if n is not None:
                    cluster.host_timeout = n
            else:
                cluster.warnings.append(
                    f"{source}:{line}: unknown key '{key}' in [cluster] ignored"
                )
        elif sec in pools:
            if key in ("first", "last"):
                pools[sec][key] = (value, line)
            else:
                cluster.warnings.append(
                    f"{source}:{line}: unknown key '{key}' in [{section}] ignored"
                )
        elif sec == "db":
            continue  # EDIV's MySQL/SQLite settings: ediv keeps its own state store
        else:
            host_props.setdefault(section, []).append((key, value, line))

    for kind, spec in pools.items():
        if not spec:
            continue
        default = getattr(cluster, kind)
        first = as_int(*spec.get("first", (str(default.first), 0)), f"[{kind}] first", 1)
        last = as_int(*spec.get("last", (str(default.last), 0)), f"[{kind}] last", 1)
        limit = 4094 if kind == "vlan" else 16777215
        if first is not None and last is not None:
            line = spec.get("last", spec.get("first"))[1]
            if first > last:
                errors.append(
                    Diagnostic(source, line, f"[{kind}] first {first} is after last {last}")
                )
            elif last > limit:
                errors.append(
                    Diagnostic(source, line, f"[{kind}] ids go up to {limit}, got {last}")
                )
            else:
                setattr(cluster, kind, Pool(first, last))
    if not explicit_interconnect:
        # EDIV files only know 802.1q; a file that declares a VXLAN pool wants VXLAN.
        cluster.interconnect = "vxlan" if pools["vxlan"] and not pools["vlan"] else "vlan"

    seen: set[str] = set()
    for name, line in host_order:
        if name in seen:
            errors.append(Diagnostic(source, line, f"host {name!r} listed twice"))
            continue
        seen.add(name)
        host = Host(name=name)
        for key, value, pline in host_props.get(name, []):
            attr = _HOST_KEYS.get(key)
            if attr is None:
                cluster.warnings.append(
                    f"{source}:{pline}: unknown key '{key}' for host {name} ignored"
                )
            elif attr in _INT_HOST_KEYS:
                n = as_int(value, pline, f"{name}: {key}", 1 if attr in ("cpu", "ssh_port") else 0)
                if n is not None:
                    setattr(host, attr, n)
            elif attr == "vm_type" and value not in _VM_TYPES:
                errors.append(
                    Diagnostic(source, pline, f"{name}: vm_type must be uml or container")
                )
            elif attr == "image_store" and not value.startswith("/"):
                errors.append(
                    Diagnostic(source, pline, f"{name}: image_store must be an absolute path")
                )
            elif attr == "ifname" and not _IFNAME.match(value):
                errors.append(
                    Diagnostic(source, pline, f"{name}: ifname {value!r} is not an interface "
                               "name (1-15 letters, digits, '_', '.', ':', '@', '-')")
                )
            else:
                setattr(host, attr, value)
        cluster.hosts.append(host)
    for section, props in host_props.items():
        if section not in seen:
            line = props[0][2]
            cluster.warnings.append(
                f"{source}:{line}: section [{section}] is not a host of [cluster]; ignored"
            )
    if not cluster.hosts:
        errors.append(
            Diagnostic(source, 0, "the cluster has no hosts ([cluster] host = ... lines)")
        )
    if errors:
        raise InputError(errors)
    return cluster


def decode_cluster(data: bytes, source: str = "<cluster.conf>") -> str:
    """The text of a cluster file: UTF-8 (a BOM is allowed), no NUL bytes; else a clear error
    naming the line of the first bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(Diagnostic(source, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}"
                                    f" at offset {exc.start})")) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise InputError(Diagnostic(source, line, "NUL byte in a text file"))
    return text


def parse_cluster_bytes(data: bytes, source: str = "<cluster.conf>") -> Cluster:
    return parse_cluster(decode_cluster(data, source), source)


def load_cluster(path: str) -> Cluster:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(Diagnostic(path, 0, f"cannot read cluster file: {exc.strerror}")) from None
    return parse_cluster_bytes(data, path)


def default_cluster(hosts: int = 3) -> Cluster:
    """The embedded cluster used when none is given: the local testbed's shape."""
    return Cluster(
        hosts=[Host(name=f"host{i}", vm_type="container") for i in range(1, hosts + 1)],
        interconnect="vxlan",
        source="<embedded default>",
    )
