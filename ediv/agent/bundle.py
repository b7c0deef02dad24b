"""The deploy bundle: ``scenario.xml`` + ``deploy.json`` + ``files/`` (see docs/agent-protocol.md).

Accepted as a tar stream (plain or gzip) on stdin, a tar file, or a directory. Tar members are
extracted with the ``data`` filter: no absolute paths, no ``..``, no links leaving the bundle,
no device files.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from ediv.errors import InputError
from ediv.protocol import DeployInfo, MgmtAddr, Segment, check_scenario, parse_json_object
from ediv.scenario.model import Scenario

# the protocol's types, re-exported for the agent modules that take them from here
__all__ = ["DeployInfo", "MgmtAddr", "Segment", "parse_deploy_info", "read_bundle",
           "stage_bundle"]


def parse_deploy_info(data: Any, scenario_name: str) -> DeployInfo:
    """``deploy.json`` -> DeployInfo (the typed protocol lives in ediv.protocol)."""
    return DeployInfo.from_json(data, scenario_name)


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
    check_scenario(scenario)
    dj = bundle_dir / "deploy.json"
    raw = parse_json_object(dj.read_bytes(), "deploy.json") if dj.is_file() else None
    return scenario, DeployInfo.from_json(raw, scenario.name)
