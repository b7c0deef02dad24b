"""``ediv ovf inspect``: read a package, verify what it carries, summarise it.

The JSON form is a contract (docs/ARCHITECTURE.md, "Command line"): the keys of
``Inspection.to_json()`` and of its ``systems`` entries must not change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from . import envelope as m
from . import policy
from .diskcheck import check_package_disks
from .limits import check_envelope
from .package import Package, open_package
from .policy import Decision
from .reader import read_envelope
from .schema import SchemaReport, validate
from .signature import SignatureReport, verify_signature
from .units import byte_multiplier
from .verify import ManifestReport, check_sizes, verify_manifest
from .xmlload import load_descriptor

MIB = 2**20


@dataclass
class Inspection:
    source: str
    package_kind: str
    descriptor: str
    envelope: m.Envelope
    manifest: ManifestReport
    signature: SignatureReport
    schema: SchemaReport | None = None
    warnings: list[str] = field(default_factory=list)
    trust_decision: Decision | None = None  # what the trust policy (ovf.policy) decided

    @property
    def failed(self) -> bool:
        """The trust policy refuses the package (exit status 2)."""
        return self.decision.refused

    def failures(self) -> list[str]:
        """One line per failed check (manifest, signature), with the detail that says why."""
        return list(self.decision.reasons)

    @property
    def decision(self) -> Decision:
        if self.trust_decision is None:
            self.trust_decision = decide(policy.active(), self.manifest, self.signature)
        return self.trust_decision

    @property
    def configuration(self) -> str | None:
        return self.envelope.default_configuration()

    def systems(self) -> list[dict]:
        return [system_summary(self.envelope, vs, self.configuration, self.warnings)
                for vs in self.envelope.systems()]

    def to_json(self) -> dict:
        env = self.envelope
        out = {
            "ovf_version": env.ovf_version,
            "systems": self.systems(),
            "networks": [n.name for n in env.networks],
            "properties": [{"key": p.full_key, "value": p.value_for(self.configuration)}
                           for prod in env.products() for p in prod.properties],
            "manifest": self.manifest.to_json(),
            "signature": self.signature.to_json(),
            "warnings": list(dict.fromkeys(self.warnings)),
            # extra keys (allowed by the contract)
            "policy": self.decision.to_json(),
            "package": {"path": self.source, "kind": self.package_kind,
                        "descriptor": self.descriptor},
            "declared_version": env.declared_version,
            "dialect": env.dialect,
            "configuration": self.configuration,
            "deployment_options": [o.id for o in env.deployment_options],
            "files": [{"id": f.id, "href": f.href, "size": f.size,
                       "compression": f.compression, "chunk_size": f.chunk_size}
                      for f in env.files],
            "unknown_required_sections": env.unknown_required,
        }
        if self.schema is not None:
            out["schema"] = self.schema.to_json()
        return out


def inspect_package(path: str | Path, *, trust: str | Path | None = None,
                    schema_dir: str | Path | None = None,
                    now: dt.datetime | None = None) -> Inspection:
    """Read and verify ``path`` (OVA, descriptor or package folder).

    Raises InputError when the package or its descriptor cannot be read; verification
    failures are reported in the result (``Inspection.failed``), not raised.
    """
    with open_package(path) as pkg:
        return _inspect(pkg, trust, schema_dir, now)


def _inspect(pkg: Package, trust, schema_dir, now) -> Inspection:
    source = f"{pkg.source}:{pkg.descriptor_name}" if pkg.kind == "ova" else pkg.source
    root, xml_warnings = load_descriptor(pkg.descriptor_bytes(), source)
    env = read_envelope(root, source)
    check_envelope(env, source)
    warnings = [*pkg.warnings, *xml_warnings, *env.warnings]
    manifest = verify_manifest(pkg, env)
    warnings.extend(manifest.warnings)
    check_sizes(pkg, env, warnings)
    check_package_disks(pkg, env, warnings)
    trust_policy = policy.active()
    signature = verify_signature(pkg, manifest.names,
                                 trust if trust is not None else trust_policy.trust, now)
    warnings.extend(signature.warnings)
    decision = decide(trust_policy, manifest, signature)
    warnings.extend(decision.warnings)
    schema = None
    if schema_dir is not None:
        schema = validate(root, env.namespace, schema_dir)
        warnings.extend(f"schema: {e}" for e in schema.errors)
    return Inspection(source=pkg.source, package_kind=pkg.kind, descriptor=pkg.descriptor_name,
                      envelope=env, manifest=manifest, signature=signature, schema=schema,
                      warnings=warnings, trust_decision=decision)


def decide(trust_policy: policy.TrustPolicy, manifest: ManifestReport,
           signature: SignatureReport) -> Decision:
    """The policy's decision, with the detail of each report that says why."""
    details = manifest.details
    manifest_detail = next((d for d in details if "mismatch" in d or "not covered" in d
                            or "not in the package" in d), details[0] if details else "")
    signature_detail = next((d for d in reversed(signature.details)
                             if not d.startswith("weak:")), "")
    return trust_policy.decide(manifest.status, manifest_detail, signature.status,
                               signature_detail)


def system_summary(env: m.Envelope, vs: m.VirtualSystem, configuration: str | None,
                   warnings: list[str]) -> dict:
    items = vs.items(configuration)
    return {
        "id": vs.id,
        "name": vs.name or vs.id,
        "memory_mb": memory_mb(vs, items, warnings),
        "cpus": _first_quantity(items, m.RT_PROCESSOR),
        "nics": [{"network": i.connections[0] if i.connections else None}
                 for i in items if i.resource_type == m.RT_ETHERNET],
        "disks": [disk_summary(env, i) for i in items if _is_disk(i)],
    }


def memory_mb(vs: m.VirtualSystem, items: list[m.Item], warnings: list[str]) -> int | None:
    item = next((i for i in items if i.resource_type == m.RT_MEMORY
                 and i.virtual_quantity is not None), None)
    if item is None:
        return None
    units = item.allocation_units
    if units is None:
        warnings.append(f"system {vs.id!r}: memory item has no AllocationUnits; assumed MB")
        units = "byte * 2^20"
    factor = byte_multiplier(units)
    if factor is None:
        warnings.append(f"system {vs.id!r}: memory AllocationUnits {units!r} not understood")
        return None
    return (item.virtual_quantity * factor) // MIB


def disk_summary(env: m.Envelope, item: m.Item) -> dict:
    for resource in item.host_resources:
        kind, _, ident = resource.removeprefix("ovf:").lstrip("/").partition("/")
        if kind == "disk":
            disk = env.disk(ident)
            if disk is not None:
                ref = env.file(disk.file_ref)
                return {"file": ref.href if ref else None,
                        "capacity_bytes": disk.capacity_bytes, "format": disk.format}
        elif kind == "file":
            ref = env.file(ident)
            if ref is not None:
                return {"file": ref.href, "capacity_bytes": ref.size, "format": None}
    return {"file": None, "capacity_bytes": None, "format": None}


def _is_disk(item: m.Item) -> bool:
    if item.resource_type in m.DISK_DRIVE_TYPES:
        return True
    return any(r.removeprefix("ovf:").lstrip("/").startswith("disk/")
               for r in item.host_resources)


def _first_quantity(items: list[m.Item], resource_type: int) -> int | None:
    return next((i.virtual_quantity for i in items if i.resource_type == resource_type
                 and i.virtual_quantity is not None), None)
