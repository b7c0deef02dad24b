"""The typed protocol between the controller and the host agent (docs/agent-protocol.md).

Everything the agent reads from a client — the JSON object on stdin of ``exec``/``release``,
``deploy.json`` of a bundle, and the few facts of the bundle's scenario that the agent's
layout relies on — is parsed here into dataclasses by ``from_json`` functions that accept any
JSON value and either return a well-typed object or raise :class:`ProtocolError` (an
``InputError``: the agent answers it with exit 1 and one JSON ``error`` line). Nothing outside
this module should look into raw client JSON.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ediv.errors import Diagnostic, InputError

KEY_RE = re.compile(r"^[a-z0-9]{1,6}$")
SEGMENT_KINDS = ("vxlan", "vlan")
VNI_MAX = 16777215
VLAN_MAX = 4094
MAX_IF_ID = 36**4 - 1  # what the longest interface name form leaves (see agent/naming.py)
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_NAME_MAX = 256


# -- events (one JSON object a line on the agent's stdout: {"event": NAME, ...}) ----------
EVENT_RESULT = "result"  # the verb's result, last line of a successful verb
EVENT_ERROR = "error"  # {"message", "diagnostics"?}: the verb failed
EVENT_WARNING = "warning"
EVENT_ALIVE = "alive"  # the heartbeat
EVENT_HOST = "host"  # controller side: {"host", "state"}
EVENT_VM = "vm"  # {"vm", "state"}
EVENT_EXEC = "exec"  # one command finished: {"vm", "command", "exit_code", "output"}; a VM
# that cannot run the sequence: {"vm", "exit_code": null, "error"}
EVENT_EXEC_VM = "exec-vm"  # a VM's whole sequence finished: {"vm", "exit_code"}
EVENT_SESSION = "session"  # ``session`` mode: {"pid", "version"}, its first line
EVENT_DONE = "done"  # ``session`` mode: {"status"}: a request ended with this exit status
EVENTS = (EVENT_RESULT, EVENT_ERROR, EVENT_WARNING, EVENT_ALIVE, EVENT_HOST, EVENT_VM,
          EVENT_EXEC, EVENT_EXEC_VM, EVENT_SESSION, EVENT_DONE)

# -- verbs and exit codes ----------------------------------------------------------------------
# ediv-host vm VM ACTION
VM_ACTIONS = ("start", "stop", "reboot", "reset", "shutdown", "pause", "resume")
# the verbs one ``ediv-host session`` may run (never console: it is interactive)
SESSION_VERBS = ("probe", "receive", "deploy", "exec", "release", "purge", "status", "vm")
SESSION_LINE_MAX = 1 << 16  # bytes of one request line
EXIT_OK = 0
EXIT_ERROR = 1  # bad input, refused, failed deploy (rolled back)
EXIT_INTERNAL = 2  # an agent bug (traceback on stderr)
EXIT_FAILED = 3  # the verb ran, its result says ok: false (a command of exec failed)
EXIT_WRONG_STATE = 4  # the request does not apply to a VM's state
EXIT_INTERRUPTED = 130


class ProtocolError(InputError):
    """A client sent the agent something the protocol does not allow."""

    def __init__(self, message: str, source: str = "deploy.json"):
        super().__init__(message, source)


def _str(value: Any, what: str, source: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{what} must be a string, not {_kind(value)}", source)
    if not empty and not value:
        raise ProtocolError(f"{what} must not be empty", source)
    if len(value) > _NAME_MAX or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ProtocolError(f"{what} {value[:40]!r} is too long or has control characters",
                            source)
    return value


def _opt_str(data: dict[str, Any], name: str, what: str, source: str) -> str | None:
    value = data.get(name)
    return None if value is None else _str(value, what, source)


def _obj(value: Any, what: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object, not {_kind(value)}", source)
    return value


def _list(value: Any, what: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"{what} must be a JSON array, not {_kind(value)}", source)
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "?")


def check_key(key: Any, source: str = "deploy.json") -> str:
    """A scenario key: [a-z0-9]{1,6} (it becomes part of interface and directory names)."""
    if not isinstance(key, str):
        raise ProtocolError(f"scenario key must be a string, not {_kind(key)}", source)
    if not KEY_RE.match(key):
        raise ProtocolError(f"scenario key {key[:40]!r} must match [a-z0-9]{{1,6}}", source)
    return key


def parse_json_object(text: str | bytes, source: str) -> dict[str, Any] | None:
    """A JSON object from ``text``; None for blank text; ProtocolError for anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"not UTF-8 (byte {e.start})", source) from None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"line {e.lineno}: not JSON: {e.msg}", source) from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply", source) from None
    return _obj(data, "the input", source)


@dataclass(frozen=True)
class KeyRequest:
    """``{"key": K}`` or ``{"scenario": NAME}``: which scenario a verb acts on."""

    key: str | None = None
    scenario: str | None = None

    @classmethod
    def from_json(cls, data: Any, source: str = "stdin") -> KeyRequest:
        if data is None:
            return cls()
        data = _obj(data, "the input", source)
        unknown = sorted(set(data) - {"key", "scenario"})
        if unknown:
            raise ProtocolError(f"unknown field(s) {', '.join(map(repr, unknown))} (expected "
                                "'key' or 'scenario')", source)
        key = data.get("key")
        return cls(check_key(key, source) if key is not None else None,
                   _opt_str(data, "scenario", "scenario", source))


@dataclass(frozen=True)
class SessionRequest:
    """One request line of ``ediv-host session``: ``{"verb", "args", "deadline"?,
    "bytes"?}``; ``bytes`` raw bytes follow the line (the verb's stdin: a ``receive``'s
    bundle). The agent's own options (state dir, config, heartbeat) are the session's and
    cannot be set by a request."""

    verb: str
    args: tuple[str, ...] = ()
    deadline: float | None = None
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"verb": self.verb, "args": list(self.args)}
        if self.deadline:
            data["deadline"] = self.deadline
        if self.size:
            data["bytes"] = self.size
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "session") -> SessionRequest:
        data = _obj(data, "a request", source)
        unknown = sorted(set(data) - {"verb", "args", "deadline", "bytes"})
        if unknown:
            raise ProtocolError(f"unknown field(s) {', '.join(map(repr, unknown))} in a "
                                "request", source)
        verb = _str(data.get("verb"), "verb", source)
        if verb not in SESSION_VERBS:
            raise ProtocolError(f"verb {verb[:40]!r} is not one a session runs "
                                f"({', '.join(SESSION_VERBS)})", source)
        args = tuple(_str(a, "an argument", source, empty=True)
                     for a in _list(data.get("args"), "args", source))
        deadline = data.get("deadline")
        if deadline is not None and (isinstance(deadline, bool)
                                     or not isinstance(deadline, (int, float))
                                     or not 0 < deadline < 10**7):
            raise ProtocolError("deadline must be a number of seconds in (0, 10^7)", source)
        size = data.get("bytes", 0)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError("bytes must be a whole number >= 0", source)
        return cls(verb, args, float(deadline) if deadline is not None else None, size)


@dataclass
class Segment:
    net: str
    kind: str  # vxlan | vlan
    id: int
    local: str | None = None
    peers: list[str] = field(default_factory=list)
    dev: str | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Segment:
        raw = _obj(raw, where, "deploy.json")
        if "net" not in raw or "id" not in raw:
            raise ProtocolError(f"{where}: needs 'net' and 'id'")
        net = _str(raw["net"], f"{where}.net", "deploy.json")
        kind = raw.get("kind", "vxlan")
        if kind not in SEGMENT_KINDS:
            raise ProtocolError(f"{where}: kind must be vxlan or vlan, not {kind!r}")
        seg_id = raw["id"]
        if isinstance(seg_id, str) and seg_id.strip().isdigit():
            seg_id = int(seg_id)
        if isinstance(seg_id, bool) or not isinstance(seg_id, int):
            raise ProtocolError(f"{where}: id {seg_id!r} is not a whole number")
        limit = VNI_MAX if kind == "vxlan" else VLAN_MAX
        if not 1 <= seg_id <= limit:
            raise ProtocolError(f"{where}: {kind} id {seg_id} outside 1..{limit}")
        local = _ip(raw["local"], f"{where}.local") if raw.get("local") is not None else None
        if kind == "vxlan" and local is None:
            raise ProtocolError(f"{where}: vxlan needs 'local'")
        dev = raw.get("dev")
        if kind == "vlan" and not dev:
            raise ProtocolError(f"{where}: vlan needs 'dev'")
        if dev is not None and (not isinstance(dev, str) or not _IFNAME_RE.match(dev)):
            raise ProtocolError(f"{where}: bad dev {dev!r} (an interface name)")
        peers = [_ip(p, f"{where}.peers[{i}]")
                 for i, p in enumerate(_list(raw.get("peers"), f"{where}.peers", "deploy.json"))]
        return cls(net, kind, seg_id, local, peers, dev)

    def to_json(self) -> dict[str, Any]:
        return {"net": self.net, "kind": self.kind, "id": self.id, "local": self.local,
                "peers": list(self.peers), "dev": self.dev}


@dataclass
class MgmtAddr:
    host: str  # CIDR of the host end, e.g. 198.18.128.1/30
    vm: str  # CIDR of the VM end

    @classmethod
    def from_json(cls, raw: Any, where: str) -> MgmtAddr:
        raw = _obj(raw, where, "deploy.json")
        if "host" not in raw or "vm" not in raw:
            raise ProtocolError(f"{where}: needs 'host' and 'vm'")
        return cls(_cidr(raw["host"], f"{where}.host"), _cidr(raw["vm"], f"{where}.vm"))

    def to_json(self) -> dict[str, str]:
        return {"host": self.host, "vm": self.vm}


@dataclass
class DeployInfo:
    """``deploy.json``: what the splitter adds to a host's sub-scenario."""

    scenario: str
    key: str | None  # None only before the controller gives the part its key
    segments: list[Segment] = field(default_factory=list)
    mgmt: dict[str, MgmtAddr] = field(default_factory=dict)
    vm_type: str = "container"  # the driver of VMs that name no type
    # <vm_mgmt><host_mapping/>: name -> address of every VM of the whole scenario (and of
    # the <host> section as "host"), written into each VM's /etc/hosts
    hosts: dict[str, str] = field(default_factory=dict)
    parent: str | None = None  # the whole scenario's name (informative)
    host: str | None = None  # the cluster host this part is for (informative)

    def with_key(self, key: str) -> DeployInfo:
        return replace(self, key=check_key(key))

    def to_json(self) -> dict[str, Any]:
        """deploy.json as the controller writes it (what from_json reads back)."""
        out: dict[str, Any] = {"scenario": self.scenario}
        if self.parent is not None:
            out["parent"] = self.parent
        if self.host is not None:
            out["host"] = self.host
        out.update({"key": self.key, "vm_type": self.vm_type,
                    "segments": [s.to_json() for s in self.segments],
                    "mgmt": {vm: m.to_json() for vm, m in self.mgmt.items()}})
        if self.hosts:
            out["hosts"] = dict(self.hosts)
        return out

    def segment(self, net: str) -> Segment | None:
        return next((s for s in self.segments if s.net == net), None)

    @classmethod
    def from_json(cls, data: Any, scenario_name: str) -> DeployInfo:
        from ediv.agent.naming import derive_key  # the agent's rule for a missing key

        data = _obj(data if data is not None else {}, "deploy.json", "deploy.json")
        name = data.get("scenario") or scenario_name
        name = _str(name, "scenario", "deploy.json") if name else ""
        if not name:
            raise ProtocolError("no scenario name (deploy.json 'scenario' or <simulation_name>)")
        key = check_key(data["key"]) if data.get("key") is not None else derive_key(name)
        segments = [Segment.from_json(raw, f"segments[{i}]")
                    for i, raw in enumerate(_list(data.get("segments"), "segments",
                                                  "deploy.json"))]
        mgmt_raw = data.get("mgmt")
        mgmt = {vm: MgmtAddr.from_json(raw, f"mgmt.{vm}")
                for vm, raw in _obj(mgmt_raw if mgmt_raw is not None else {}, "mgmt",
                                    "deploy.json").items()}
        vm_type = data.get("vm_type") or "container"
        vm_type = _str(vm_type, "vm_type", "deploy.json")
        hosts_raw = data.get("hosts")
        hosts = {_hostname(n): _ip(a, f"hosts.{n}") for n, a in _obj(
            hosts_raw if hosts_raw is not None else {}, "hosts", "deploy.json").items()}
        parent = _opt_str(data, "parent", "parent", "deploy.json")
        host = _opt_str(data, "host", "host", "deploy.json")
        return cls(name, key, segments, mgmt, vm_type, hosts, parent, host)


_HOSTNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$")


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ProtocolError(f"hosts: {value!r} is not a host name")
    return value


def _ip(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(_str(value, what, "deploy.json")))
    except ValueError:
        raise ProtocolError(f"{what}: {value!r} is not an IP address") from None


def _cidr(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_interface(_str(value, what, "deploy.json")))
    except ValueError:
        raise ProtocolError(f"{what}: {value!r} is not an address/prefix") from None


def check_scenario(scenario: Any) -> None:
    """What the agent's layout takes for granted in a bundle's scenario, checked up front
    (``ediv validate`` refuses the same through ediv.scenario.checks)."""
    problems: list[Diagnostic] = []
    for vm in scenario.vms:
        for itf in vm.interfaces:
            if not 0 <= itf.id <= MAX_IF_ID:
                problems.append(Diagnostic(scenario.source, itf.line,
                                           f"vm {vm.name}: interface id {itf.id} outside "
                                           f"0..{MAX_IF_ID}"))
    if problems:
        raise InputError(problems)
