"""Advisory XSD validation of descriptors against the DMTF DSP8023 schemas (xmlschema).

Most real descriptors fail strict validation (vendor sections, element order), so results
are reported as warnings, never as a failure. Schemas are loaded from a user folder only:
remote imports are mapped onto the folder (``host/path`` or the file's base name) and
anything else outside it is blocked (``allow="sandbox"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import xmlschema
from lxml import etree

from ediv.errors import InputError

ENVELOPE_SCHEMA_NAMES = ("dsp8023*.xsd", "ovf-envelope.xsd", "DSP8023*.xsd", "*envelope*.xsd")
MAX_REPORTED = 10
_TARGET_NS = re.compile(rb"targetNamespace\s*=\s*[\"']([^\"']+)[\"']")


@dataclass
class SchemaReport:
    status: str  # valid | invalid | skipped | error
    schema: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": self.status, "schema": self.schema, "errors": self.errors}


def find_envelope_schema(schema_dir: Path, namespace: str) -> Path | None:
    """The schema file in ``schema_dir`` whose targetNamespace is ``namespace``."""
    for pattern in ENVELOPE_SCHEMA_NAMES:
        for candidate in sorted(schema_dir.rglob(pattern)):
            m = _TARGET_NS.search(candidate.read_bytes()[:65536])
            if m and m.group(1).decode() == namespace:
                return candidate
    return None


@lru_cache(maxsize=8)
def load_schema(path: Path) -> xmlschema.XMLSchema:
    base = path.parent
    root = _schema_root(path)

    def to_local(url: str) -> str:
        if url.startswith(("http://", "https://")):
            rest = url.split("://", 1)[1]
            for candidate in (root / rest, base / Path(rest).name):
                if candidate.is_file():
                    return candidate.as_uri()
        return url

    locations = []
    for xsd in root.rglob("*.xsd"):
        m = _TARGET_NS.search(xsd.read_bytes()[:65536])
        if m:
            locations.append((m.group(1).decode(), xsd.as_uri()))
    return xmlschema.XMLSchema(str(path), allow="sandbox", base_url=str(root),
                               uri_mapper=to_local, locations=locations)


def _schema_root(path: Path) -> Path:
    """Folder the sandbox covers: the schema's own, or the one holding host-named mirrors."""
    for parent in (path.parent, path.parent.parent):
        if (parent / "schemas.dmtf.org").is_dir() or (parent / "www.w3.org").is_dir():
            return parent
    return path.parent


def validate(root: etree._Element, namespace: str, schema_dir: str | Path) -> SchemaReport:
    folder = Path(schema_dir)
    if not folder.is_dir():
        raise InputError(f"schema folder {folder} not found", str(folder))
    path = find_envelope_schema(folder, namespace)
    if path is None:
        return SchemaReport("skipped", errors=[f"no envelope schema for {namespace} in {folder}"])
    try:
        schema = load_schema(path.resolve())
    except (xmlschema.XMLSchemaException, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return SchemaReport("error", str(path), [f"schema {path.name} does not compile: {first}"])
    errors = []
    for err in schema.iter_errors(root.getroottree(), use_location_hints=False):
        line = getattr(err.elem, "sourceline", None) if err.elem is not None else None
        reason = (err.reason or str(err)).strip().splitlines()[0]
        errors.append(f"line {line}: {reason}" if line else reason)
        if len(errors) >= MAX_REPORTED:
            errors.append("(further schema errors not shown)")
            break
    return SchemaReport("invalid" if errors else "valid", str(path), errors)
