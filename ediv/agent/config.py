"""Agent configuration: a JSON object or an INI file (keys in ``[agent]`` or at top level).

Everything that lets a scenario touch the host itself is off by default.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ediv.errors import InputError

DEFAULT_STATE_DIR = "/var/lib/ediv-host"
DEFAULT_IMAGE_PATHS = ("/var/lib/ediv-host/images/", "/var/lib/ediv/images/",
                       "/usr/share/vnuml/filesystems/", "/usr/local/share/vnuml/filesystems/")
# paths of the host's / a container VM must never see (besides the agent's own state dir):
# ediv's state, keys and server files (/root, /home, /tmp, /run are VM-private instead)
DEFAULT_HIDDEN_PATHS = ("/var/lib/ediv", "/var/lib/ediv-host", "/etc/ediv", "/srv/ediv",
                        "/var/backups", "/var/mail", "/var/spool/cron", "/etc/ssl/private")
DEFAULT_KERNEL_PATHS = ("/usr/bin/linux", "/usr/bin/linux.uml", "/usr/lib/uml/",
                        "/usr/share/vnuml/kernels/", "/usr/local/share/vnuml/kernels/")


@dataclass
class AgentConfig:
    allow_host_exec: bool = False  # run <host><exec> commands on this machine
    # net@external, <host><route>, <host><forwarding>: changes to the host itself
    allow_external: bool = False
    allow_hostif: bool = False  # <host><hostif>: host addresses on scenario nets (or external)
    container_rootfs: str = "/"  # lower directory of container overlay roots
    uml_kernel: str = "/usr/bin/linux"  # default <kernel>
    # <kernel> paths a scenario may name (files, or directories ending in "/"): the agent
    # runs the kernel as root, so a scenario must not pick an arbitrary host program
    uml_kernel_paths: list[str] = field(default_factory=lambda: list(DEFAULT_KERNEL_PATHS))
    uml_mem: str = "64M"  # default <mem>
    boot_timeout: float = 120.0  # seconds a VM may take to become ready
    uml_boot_slots: int = 0  # UML VMs booting at once; 0: all (see drivers/uml.py)
    exec_timeout: float = 600.0  # seconds one command may run
    stop_timeout: float = 30.0  # seconds a VM may take to halt before it is killed
    workers: int = 16  # threads for per-VM work
    # -- VM confinement (docs/threat-model.md, "What a VM can reach on a host") -------------
    # each scenario's VMs run as host ids vm_id_first + slot * 65536 .. + 65535, with
    # slot = sha256(scenario key) mod vm_id_slots (container root and UML processes)
    vm_id_first: int = 1_000_000_000
    vm_id_slots: int = 10_000
    # directories whose files/directories a scenario may name as a VM <filesystem> (UML
    # direct/cow images and hostfs roots, container root directories); the scenario's own
    # bundle files are always allowed
    vm_image_paths: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGE_PATHS))
    # container VMs over the host's /: directories hidden (empty, opaque), on top of
    # DEFAULT_HIDDEN_PATHS and the agent's state dir
    container_hidden_paths: list[str] = field(default_factory=list)
    # container VMs' writable layers and logs: a tmpfs per scenario of at most this size
    # (tmpfs "size=": bytes with a k/m/g suffix, or a % of RAM); empty: on the state dir's
    # filesystem, for VMs that write more than memory holds
    container_tmpfs_size: str = "25%"
    # net@capture_file: tcpdump writes <capture_dir>/<scenario>/<bare file name>; kept after
    # release (the capture is the result), never anywhere else on the host
    capture_dir: str = "/var/lib/ediv-host-captures"


def _coerce(name: str, raw: object, kind: type) -> object:
    if kind is list:
        items = raw if isinstance(raw, list) else str(raw).replace("\n", ",").split(",")
        return [str(i).strip() for i in items if str(i).strip()]
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise InputError(f"config: {name} must be true or false, not {raw!r}")
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise InputError(f"config: {name} must be {kind.__name__}, not {raw!r}") from None


def load_config(path: str | Path | None) -> AgentConfig:
    """Read ``path`` (JSON when it starts with ``{``, else INI); a missing path gives defaults."""
    cfg = AgentConfig()
    if path is None:
        return cfg
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"config file {path} not found") from None
    if text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: {e.msg}") from None
    else:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text if text.lstrip().startswith("[") else "[agent]\n" + text)
        except configparser.Error as e:
            raise InputError(f"{path}: {e}") from None
        values = dict(parser["agent"]) if parser.has_section("agent") else {}
    known = {f.name: f for f in fields(AgentConfig)}
    types = {"bool": bool, "str": str, "float": float, "int": int, "list[str]": list}
    for name, raw in values.items():
        if name not in known:
            raise InputError(f"{path}: unknown setting {name!r}")
        setattr(cfg, name, _coerce(name, raw, types[str(known[name].type)]))
    return cfg
