"""The bundle a host agent receives: its sub-scenario, deploy.json and the files it refers to.

A gzip'd tar with ``scenario.xml``, ``deploy.json`` and ``files/<path>``. Files the scenario
names by a relative path (filetree sources, ``<exec type="file">`` scripts) keep that path
under ``files/``; absolute paths are carried under ``files/_abs/`` and rewritten in the
sub-scenario, so the agent never reads the controller's filesystem layout.

Which controller files a scenario may name is decided here, once, for every front end (CLI,
server, ediv-ctl): a :class:`FileScope` holds the scenario's own directory (its directory on
the CLI, its extracted Archive on the server) and the directories an admin listed
(``file_dirs`` in cluster.conf or the server config, ``--allow-files`` on the CLI). A
reference resolves — symlinks followed — to a path inside one of them, or it is refused with
``file:line``; inside a filetree directory, a symlink that leads out of the scope is refused
too. Nothing else on the controller is ever read (docs/threat-model.md).
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ediv.errors import Diagnostic, InputError
from ediv.scenario import to_xml
from ediv.scenario.model import Scenario

MAX_BUNDLE_FILES_BYTES = 2 * 1024**3


@dataclass
class KeyRef:
    """One ``<ssh_key>`` path of a key list, so it can be rewritten like the other
    references (its ``path`` attribute is the list item)."""

    keys: list[str]
    index: int
    line: int

    @property
    def path(self) -> str:
        return self.keys[self.index]

    @path.setter
    def path(self, value: str) -> None:
        self.keys[self.index] = value


def _key_refs(keys: list[str], line: int) -> list[tuple[object, str, str]]:
    return [(KeyRef(keys, i, line), "path", _home(k)) for i, k in enumerate(keys)]


def referenced_paths(scenario: Scenario) -> list[tuple[object, str, str]]:
    """(model object, attribute, path) for every host-side path the scenario names."""
    g = scenario.global_
    refs = _key_refs(g.ssh_keys, g.line)
    defaults = g.vm_defaults
    if defaults is not None:
        refs += [(ft, "source", ft.source) for ft in defaults.filetrees]
        refs += [r for u in defaults.users for r in _key_refs(u.ssh_keys, u.line)]
    for vm in scenario.vms:
        refs += [(ft, "source", ft.source) for ft in vm.filetrees]
        refs += [(ex, "command", ex.command) for ex in vm.execs if ex.type == "file"]
        refs += [r for u in vm.users for r in _key_refs(u.ssh_keys, u.line)]
    if scenario.host:
        refs += [(ex, "command", ex.command) for ex in scenario.host.execs if ex.type == "file"]
    return refs


def _member_name(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute():
        return str(PurePosixPath("_abs", *p.parts[1:]))
    return str(p)


class OutOfScope(ValueError):
    """A file reference that resolves outside the scenario's files and the allowed dirs."""


@dataclass(frozen=True)
class FileScope:
    """The directories a scenario's file references may resolve into."""

    basedir: Path
    allowed: tuple[Path, ...] = ()

    @classmethod
    def of(cls, basedir: str | Path, allowed: Iterable[str | Path] = ()) -> FileScope:
        return cls(Path(basedir).resolve(), tuple(Path(d).resolve() for d in allowed))

    def roots(self) -> tuple[Path, ...]:
        return (self.basedir, *self.allowed)

    def contains(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots())

    def resolve(self, path: str) -> Path:
        """The real path of reference ``path``; OutOfScope (with the reason) or
        FileNotFoundError when it cannot be used."""
        p = PurePosixPath(path)
        if ".." in p.parts:
            raise OutOfScope("leaves the scenario directory ('..'); use a path below it")
        local = Path(path) if p.is_absolute() else self.basedir / path
        real = local.resolve()  # symlinks followed: where the bytes really come from
        if not self.contains(real):
            where = ("is outside the scenario's files" if p.is_absolute()
                     else f"leads to {real}, outside the scenario's files")
            allowed = (", ".join(str(d) for d in self.allowed) if self.allowed
                       else "none listed")
            raise OutOfScope(f"{where}; a scenario may only name its own files (below "
                             f"{self.basedir}) or files in the directories an admin allowed "
                             f"(file_dirs: {allowed})")
        if not real.exists():
            raise FileNotFoundError(real)
        return real

    def walk(self, top: Path) -> list[Path]:
        """``top`` and everything below it (symlinks not followed); a symlink that leads
        out of the scope is OutOfScope."""
        out = [top]
        if not top.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            for name in sorted(dirnames) + sorted(filenames):
                entry = Path(dirpath, name)
                if entry.is_symlink() and not self.contains(entry.resolve()):
                    raise OutOfScope(f"{entry.relative_to(top)} is a symlink to "
                                     f"{entry.resolve()}, outside the scenario's files")
                out.append(entry)
            dirnames.sort()
        return out


def check_references(scenario: Scenario, scope: FileScope) -> dict[str, Path]:
    """Resolve every file reference of ``scenario`` inside ``scope``: member name -> real
    path; every problem is one ``file:line`` diagnostic, all raised together."""
    files: dict[str, Path] = {}
    problems: list[Diagnostic] = []
    for obj, _attr, path in referenced_paths(scenario):
        what = _what(obj)
        try:
            files[_member_name(path)] = scope.resolve(path)
        except OutOfScope as exc:
            problems.append(Diagnostic(scenario.source, obj.line, f"{what} {path!r}: {exc}"))
        except FileNotFoundError as exc:
            problems.append(Diagnostic(scenario.source, obj.line, f"{what} {path}: no such file "
                                       f"or directory (looked in {exc.args[0]})"))
    if problems:
        raise InputError(problems)
    return files


def _what(obj: object) -> str:
    if isinstance(obj, KeyRef):
        return "<ssh_key>"
    return "<filetree>" if hasattr(obj, "root") else '<exec type="file">'


def _home(path: str) -> str:
    """VNUML wrote keys as ``~/.ssh/id.pub``: the controller user's home (which the file
    scope then accepts only if an admin listed it)."""
    return str(Path(path).expanduser()) if path.startswith("~") else path


def build_bundle(sub: Scenario, deploy: dict, basedir: str | Path,
                 allowed_dirs: Iterable[str | Path] = ()) -> bytes:
    """The bundle for one host; references outside the scope or missing are one error
    listing them all."""
    scope = FileScope.of(basedir, allowed_dirs)
    files = check_references(sub, scope)
    if files:
        # member names replace the local paths in this host's copy only (a deep copy of a
        # 250-VM part takes 0.1 s: none where nothing is referenced, the common case)
        sub = copy.deepcopy(sub)
        for obj, attr, path in referenced_paths(sub):
            setattr(obj, attr, _member_name(path))

    buf = io.BytesIO()
    total = 0
    # dereference: a symlink inside the scope (checked by walk) is carried as the file it
    # names, so the agent, which refuses links, gets plain files
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3, dereference=True) as tar:
        _add_bytes(tar, "scenario.xml", to_xml(sub))
        _add_bytes(tar, "deploy.json", json.dumps(deploy, indent=2).encode())
        for member, local in sorted(files.items()):
            try:
                entries = scope.walk(local)
            except OutOfScope as exc:
                raise InputError(Diagnostic(sub.source, 0, f"{member}: {exc}")) from None
            for path in entries:
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
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))
