"""The bundle a host agent receives: its sub-scenario, deploy.json and the files it refers to.

A gzip'd tar with ``scenario.xml``, ``deploy.json`` and ``files/<path>``. Files the scenario
names by a relative path (filetree sources, ``<exec type="file">`` scripts) keep that path
under ``files/``; absolute paths are carried under ``files/_abs/`` and rewritten in the
sub-scenario, so the agent never reads the controller's filesystem layout.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

from ediv.errors import Diagnostic, InputError
from ediv.scenario import to_xml
from ediv.scenario.model import Scenario

MAX_BUNDLE_FILES_BYTES = 2 * 1024**3


def referenced_paths(scenario: Scenario) -> list[tuple[object, str, str]]:
    """(model object, attribute, path) for every host-side path the scenario names."""
    refs = []
    for vm in scenario.vms:
        refs += [(ft, "source", ft.source) for ft in vm.filetrees]
        refs += [(ex, "command", ex.command) for ex in vm.execs if ex.type == "file"]
    if scenario.host:
        refs += [(ex, "command", ex.command) for ex in scenario.host.execs if ex.type == "file"]
    return refs


def _member_name(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute():
        return str(PurePosixPath("_abs", *p.parts[1:]))
    if ".." in p.parts:
        raise ValueError(path)
    return str(p)


def build_bundle(sub: Scenario, deploy: dict, basedir: str | Path) -> bytes:
    """The bundle for one host; missing referenced files are one error listing them all."""
    sub = copy.deepcopy(sub)
    base = Path(basedir)
    files: dict[str, Path] = {}
    problems: list[Diagnostic] = []
    for obj, attr, path in referenced_paths(sub):
        try:
            member = _member_name(path)
        except ValueError:
            problems.append(Diagnostic(sub.source, obj.line, f"path {path!r} leaves the scenario "
                                       "directory ('..'); use a path below it"))
            continue
        local = Path(path) if Path(path).is_absolute() else base / path
        if not local.exists():
            problems.append(Diagnostic(sub.source, obj.line, f"{path}: no such file or directory "
                                       f"(looked in {local})"))
            continue
        files[member] = local
        setattr(obj, attr, member)
    if problems:
        raise InputError(problems)

    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
        _add_bytes(tar, "scenario.xml", to_xml(sub))
        _add_bytes(tar, "deploy.json", json.dumps(deploy, indent=2).encode())
        for member, local in sorted(files.items()):
            for path in [local, *sorted(local.rglob("*"))] if local.is_dir() else [local]:
                if path.is_file():
                    total += path.stat().st_size
                    if total > MAX_BUNDLE_FILES_BYTES:
                        raise InputError(Diagnostic(sub.source, 0, "the files the scenario "
                                                    "refers to exceed 2 GiB"))
                rel = path.relative_to(local)
                name = str(PurePosixPath("files", member, *rel.parts))
                tar.add(path, arcname=name, recursive=False)
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
