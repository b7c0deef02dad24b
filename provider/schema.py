"""The product's CIM schema: the MOF in ``ediv.mof`` compiled per namespace, cached on disk.

Compiling the MOF (pywbem's MOFCompiler into a pywbem_mock repository, which resolves
inheritance) takes a fraction of a second per namespace; the result is pickled under a cache
directory keyed by a hash of the MOF files and the pywbem version, so a server start reads it
back instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pywbem
from pywbem_mock import FakedWBEMConnection

from ediv.cim_names import NAMESPACE

EDIV_NAMESPACE = NAMESPACE
INTEROP_NAMESPACE = "interop"

# MOF files (relative to the ediv.mof package) compiled into each namespace, in order.
NAMESPACE_FILES: dict[str, tuple[str, ...]] = {
    EDIV_NAMESPACE: ("dmtf/qualifiers.mof", "dmtf/cim_base.mof", "ediv.mof"),
    INTEROP_NAMESPACE: ("dmtf/qualifiers.mof", "dmtf/cim_base.mof", "ediv_interop.mof"),
}

_CACHE_FORMAT = 2


class SchemaError(Exception):
    """The shipped MOF does not compile."""


@dataclass
class NamespaceSchema:
    """Resolved classes (inherited features present, ``propagated`` set) of one namespace."""

    name: str
    classes: dict[str, pywbem.CIMClass] = field(default_factory=dict)  # by lowercase name
    qualifiers: dict[str, pywbem.CIMQualifierDeclaration] = field(default_factory=dict)
    _children: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._children = {}
        for cls in self.classes.values():
            parent = cls.superclass.lower() if cls.superclass else ""
            self._children.setdefault(parent, []).append(cls.classname)

    def get_class(self, classname: str) -> pywbem.CIMClass | None:
        return self.classes.get(classname.lower())

    def subclass_names(self, classname: str | None, deep: bool = True) -> list[str]:
        """Direct (or all, with ``deep``) subclasses; ``None`` means the top-level classes."""
        out: list[str] = []
        pending = list(self._children.get((classname or "").lower(), []))
        while pending:
            name = pending.pop(0)
            out.append(name)
            if deep:
                pending.extend(self._children.get(name.lower(), []))
        return out

    def is_subclass(self, classname: str, of: str) -> bool:
        """True when ``classname`` is ``of`` or derives from it."""
        target = of.lower()
        cls = self.get_class(classname)
        while cls is not None:
            if cls.classname.lower() == target:
                return True
            cls = self.get_class(cls.superclass) if cls.superclass else None
        return False

    def superclass_chain(self, classname: str) -> list[str]:
        """``classname`` and its ancestors, most derived first."""
        chain: list[str] = []
        cls = self.get_class(classname)
        while cls is not None:
            chain.append(cls.classname)
            cls = self.get_class(cls.superclass) if cls.superclass else None
        return chain

    def association_names(self) -> list[str]:
        return [c.classname for c in self.classes.values() if is_association(c)]


@dataclass
class Schema:
    namespaces: dict[str, NamespaceSchema]  # by lowercase namespace name

    def namespace(self, name: str) -> NamespaceSchema | None:
        return self.namespaces.get(name.strip("/").lower())

    def __iter__(self) -> Iterator[NamespaceSchema]:
        return iter(self.namespaces.values())


def is_association(cls: pywbem.CIMClass) -> bool:
    qual = cls.qualifiers.get("Association")
    return bool(qual is not None and qual.value)


def mof_dir() -> Path:
    return Path(str(resources.files("ediv.mof")))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ediv" / "schema"


def mof_digest(root: Path, namespace_files: dict[str, tuple[str, ...]]) -> str:
    h = hashlib.sha256(f"{_CACHE_FORMAT}:{pywbem.__version__}".encode())
    for ns, files in sorted(namespace_files.items()):
        h.update(ns.encode())
        for rel in files:
            h.update(rel.encode())
            h.update((root / rel).read_bytes())
    return h.hexdigest()


def compile_namespace(
    namespace: str, files: Iterable[Path], search_paths: Iterable[Path] = ()
) -> NamespaceSchema:
    """Compile MOF files into a fresh repository and return its resolved classes."""
    conn = FakedWBEMConnection(default_namespace=namespace)
    paths = [str(p) for p in search_paths]
    for path in files:
        try:
            conn.compile_mof_file(str(path), namespace=namespace, search_paths=paths or None,
                                  verbose=False)
        except pywbem.Error as exc:
            raise SchemaError(f"{path}: {exc}") from exc
    repo = conn.cimrepository
    classes = {
        c.classname.lower(): c
        for c in repo.get_class_store(namespace).iter_values()
    }
    quals = {
        q.name.lower(): dsp0201_scopes(q)
        for q in repo.get_qualifier_store(namespace).iter_values()
    }
    return NamespaceSchema(namespace, classes, quals)


_SCOPES = ("CLASS", "ASSOCIATION", "INDICATION", "PROPERTY", "REFERENCE", "METHOD", "PARAMETER")


def dsp0201_scopes(qual: pywbem.CIMQualifierDeclaration) -> pywbem.CIMQualifierDeclaration:
    """MOF's Scope(any) becomes every DSP0201 scope: the SCOPE element has no ANY attribute."""
    scopes = dict(qual.scopes)
    any_scope = scopes.pop("ANY", False)
    qual.scopes = {s: bool(any_scope or scopes.get(s, False)) for s in _SCOPES}
    return qual


def compile_schema(root: Path | None = None) -> Schema:
    root = root or mof_dir()
    return Schema({
        ns.lower(): compile_namespace(ns, [root / rel for rel in files])
        for ns, files in NAMESPACE_FILES.items()
    })


def load_schema(cache_dir: Path | None = None, *, use_cache: bool = True) -> Schema:
    """The compiled product schema, from the cache when the MOF files are unchanged."""
    root = mof_dir()
    if not use_cache:
        return compile_schema(root)
    cache_dir = cache_dir or default_cache_dir()
    cache_file = cache_dir / f"schema-{mof_digest(root, NAMESPACE_FILES)}.pickle"
    try:
        with cache_file.open("rb") as f:
            schema = pickle.load(f)  # our own file, written below
        if isinstance(schema, Schema):
            return schema
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    schema = compile_schema(root)
    _write_cache(cache_file, schema)
    return schema


def _write_cache(cache_file: Path, schema: Schema) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".schema-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(schema, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache only costs start time
