"""The deploy bundle: ``scenario.xml`` + ``deploy.json`` + ``files/`` (see docs/agent-protocol.md).

Accepted as a tar stream (plain or gzip) on stdin, a tar file, or a directory. Tar members are
extracted with the ``data`` filter: no absolute paths, no ``..``, no links leaving the bundle,
no device files.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ediv.agent.naming import check_key, derive_key
from ediv.errors import InputError
from ediv.scenario.model import Scenario

SEGMENT_KINDS = ("vxlan", "vlan")


@dataclass
class Segment:
    net: str
    kind: str  # vxlan | vlan
    id: int
    local: str | None = None
    peers: list[str] = field(default_factory=list)
    dev: str | None = None


@dataclass
class MgmtAddr:
    host: str  # CIDR of the host end, e.g. 198.18.128.1/30
    vm: str  # CIDR of the VM end


@dataclass
class DeployInfo:
    scenario: str
    key: str
    segments: list[Segment] = field(default_factory=list)
    mgmt: dict[str, MgmtAddr] = field(default_factory=dict)
    vm_type: str = "container"

    def segment(self, net: str) -> Segment | None:
        return next((s for s in self.segments if s.net == net), None)


def _err(msg: str) -> InputError:
    return InputError(msg, "deploy.json")


def _ip(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise _err(f"{what}: {value!r} is not an IP address") from None


def _cidr(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_interface(str(value)))
    except ValueError:
        raise _err(f"{what}: {value!r} is not an address/prefix") from None


def parse_deploy_info(data: dict[str, Any] | None, scenario_name: str) -> DeployInfo:
    data = data or {}
    if not isinstance(data, dict):
        raise _err("must be a JSON object")
    name = str(data.get("scenario") or scenario_name)
    if not name:
        raise _err("no scenario name (deploy.json 'scenario' or <simulation_name>)")
    key = check_key(str(data["key"])) if data.get("key") else derive_key(name)
    segments = []
    for i, raw in enumerate(data.get("segments") or []):
        where = f"segments[{i}]"
        if not isinstance(raw, dict) or "net" not in raw or "id" not in raw:
            raise _err(f"{where}: needs 'net' and 'id'")
        kind = raw.get("kind", "vxlan")
        if kind not in SEGMENT_KINDS:
            raise _err(f"{where}: kind must be vxlan or vlan, not {kind!r}")
        try:
            seg_id = int(raw["id"])
        except (TypeError, ValueError):
            raise _err(f"{where}: id {raw['id']!r} is not a number") from None
        limit = 16777215 if kind == "vxlan" else 4094
        if not 1 <= seg_id <= limit:
            raise _err(f"{where}: {kind} id {seg_id} outside 1..{limit}")
        local = _ip(raw["local"], f"{where}.local") if raw.get("local") else None
        if kind == "vxlan" and local is None:
            raise _err(f"{where}: vxlan needs 'local'")
        dev = raw.get("dev")
        if kind == "vlan" and not dev:
            raise _err(f"{where}: vlan needs 'dev'")
        if dev is not None and (not isinstance(dev, str) or not 0 < len(dev) <= 15
                                or "/" in dev or " " in dev):
            raise _err(f"{where}: bad dev {dev!r}")
        peers = [_ip(p, f"{where}.peers") for p in raw.get("peers") or []]
        segments.append(Segment(str(raw["net"]), kind, seg_id, local, peers, dev))
    mgmt = {}
    for vm, raw in (data.get("mgmt") or {}).items():
        if not isinstance(raw, dict) or "host" not in raw or "vm" not in raw:
            raise _err(f"mgmt.{vm}: needs 'host' and 'vm'")
        mgmt[str(vm)] = MgmtAddr(_cidr(raw["host"], f"mgmt.{vm}.host"),
                                 _cidr(raw["vm"], f"mgmt.{vm}.vm"))
    vm_type = str(data.get("vm_type") or "container")
    return DeployInfo(name, key, segments, mgmt, vm_type)


def _strict_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The ``data`` filter, plus: absolute member names are refused, not silently rebased."""
    if member.name.startswith("/") or member.name.startswith("\\"):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def extract_tar(stream: IO[bytes] | str | Path, dest: Path) -> None:
    """Extract a (possibly gzipped) tar from a stream or file into ``dest``, safely."""
    try:
        kwargs = ({"name": stream, "mode": "r:*"} if isinstance(stream, (str, Path))
                  else {"fileobj": stream, "mode": "r|*"})
        with tarfile.open(**kwargs) as tf:
            tf.extractall(dest, filter=_strict_filter)
    except tarfile.FilterError as e:
        raise InputError(f"unsafe bundle member: {e}", "bundle") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InputError(f"cannot read bundle: {e}", "bundle") from None


def stage_bundle(source: IO[bytes] | str | Path, staging_parent: Path) -> Path:
    """Copy or extract the bundle into a fresh directory under ``staging_parent``."""
    staging_parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=staging_parent))
    try:
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            shutil.copytree(source, staging, dirs_exist_ok=True, symlinks=True)
        elif isinstance(source, (str, Path)) and not Path(source).exists():
            raise InputError(f"bundle {source} not found", "bundle")
        else:
            extract_tar(source, staging)
        inner = [p for p in staging.iterdir()]
        # a tar made of one top directory ("bundle/scenario.xml") is accepted too
        if not (staging / "scenario.xml").exists() and len(inner) == 1 and inner[0].is_dir():
            top = inner[0]
            for p in top.iterdir():
                p.rename(staging / p.name)
            top.rmdir()
        if not (staging / "scenario.xml").is_file():
            raise InputError("bundle has no scenario.xml", "bundle")
        return staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_bundle(bundle_dir: Path) -> tuple[Scenario, DeployInfo]:
    """Parse ``scenario.xml`` (relative paths resolve in ``files/``) and ``deploy.json``."""
    from ediv.scenario.loader import parse_string  # lazy: the loader is a separate module

    xml = (bundle_dir / "scenario.xml").read_bytes()
    scenario = parse_string(xml, source="scenario.xml", basedir=str(bundle_dir / "files"))
    raw = None
    dj = bundle_dir / "deploy.json"
    if dj.exists():
        try:
            raw = json.loads(dj.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"deploy.json:{e.lineno}: {e.msg}") from None
    return scenario, parse_deploy_info(raw, scenario.name)
