"""Check a package's manifest against its descriptor and files.

Status (contract of ``ediv ovf inspect --json``):
``absent`` no manifest; ``invalid`` the manifest cannot be read as one; ``mismatch`` a digest
differs, a listed file is missing, or a file of the package is not covered; ``ok`` otherwise.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from ediv.errors import InputError

from .envelope import Envelope
from .manifest import Manifest, entry_target, hash_stream, parse_manifest
from .package import Package

MAX_MANIFEST_BYTES = 16 * 2**20


@dataclass
class FileCheck:
    name: str
    algorithm: str | None
    status: str  # ok | mismatch | missing | not-listed | skipped | deferred
    detail: str = ""


@dataclass
class ManifestReport:
    status: str
    names: list[str] = field(default_factory=list)  # manifest files read
    files: list[FileCheck] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": self.status, "name": self.names[0] if len(self.names) == 1 else
                self.names or None, "details": self.details,
                "files": [{"name": f.name, "algorithm": f.algorithm, "status": f.status}
                          for f in self.files]}


def find_manifests(pkg: Package) -> list[str]:
    """``<descriptor>.mf`` per DSP0243; otherwise any .mf beside the descriptor (real tools
    write other base names, or one per disk)."""
    stem = posixpath.splitext(pkg.descriptor_name)[0]
    exact = pkg.find(stem + ".mf")
    if exact:
        return [exact]
    folder = pkg.base_dir
    others = [n for n in pkg.names()
              if n.lower().endswith(".mf") and posixpath.dirname(n) == folder]
    if pkg.kind == "directory" and len([n for n in pkg.names() if n.lower().endswith(".ovf")
                                        and posixpath.dirname(n) == folder]) > 1:
        return []  # a folder of many descriptors: a stray .mf belongs to another one
    return others


def expected_files(pkg: Package, env: Envelope, report: ManifestReport) -> dict[str, str]:
    """Package names a manifest must cover -> why (descriptor, file id)."""
    wanted = {pkg.descriptor_name: "descriptor"}
    for ref in env.files:
        target = pkg.resolve(ref.href)
        if target is None:
            if ref.href:
                report.details.append(f"file {ref.id!r}: href {ref.href!r} is external or leaves "
                                      "the package; not checked")
            continue
        if ref.chunk_size:
            parts = pkg.chunks(target)
            if parts:
                for part in parts:
                    wanted[part] = f"file {ref.id} (chunk)"
                continue
        found = pkg.find(target)
        if found is not None and found != target:
            report.warnings.append(f"file {ref.id!r}: href {ref.href!r} matches {found!r} only "
                                   "when case is ignored")
        wanted[found or target] = f"file {ref.id}"
    return wanted


def check_sizes(pkg: Package, env: Envelope, warnings: list[str]) -> None:
    """Declared ovf:size against the stored size; referenced files missing from the package."""
    for ref in env.files:
        target = pkg.resolve(ref.href)
        if target is None:
            continue
        parts = pkg.chunks(target) if ref.chunk_size else []
        names = parts or ([pkg.find(target)] if pkg.find(target) else [])
        if not names:
            warnings.append(f"file {ref.id!r} ({ref.href}) is referenced but not in the package")
            continue
        actual = sum(pkg.size(n) or 0 for n in names)
        if ref.size is not None and actual != ref.size:
            warnings.append(f"file {ref.id!r} ({ref.href}): ovf:size says {ref.size} bytes, "
                            f"the package holds {actual}")


def verify_manifest(pkg: Package, env: Envelope, deferred: frozenset[str] = frozenset()
                    ) -> ManifestReport:
    """``deferred``: package names not hashed here (status "deferred") because the caller
    hashes them while it copies them out and compares with the manifest then."""
    names = find_manifests(pkg)
    report = ManifestReport(status="absent", names=names)
    if not names:
        return report
    if len(names) > 1 or posixpath.splitext(names[0])[0] != \
            posixpath.splitext(pkg.descriptor_name)[0]:
        report.warnings.append(f"manifest name {', '.join(names)} does not match the "
                               f"descriptor {pkg.descriptor_name}")
    manifests: list[Manifest] = []
    for name in names:
        try:
            data = pkg.read(name, MAX_MANIFEST_BYTES)
        except InputError as exc:
            report.status = "invalid"
            report.details.append(str(exc))
            return report
        manifests.append(parse_manifest(data, name))
    errors = [e for mf in manifests for e in mf.errors]
    report.details.extend(n for mf in manifests for n in mf.notes)
    if errors:
        report.status = "invalid"
        report.details.extend(errors)
        return report

    wanted = expected_files(pkg, env, report)
    listed: dict[str, tuple[str, str]] = {}  # package name -> (algorithm, digest)
    self_names = {n.lower() for n in names}
    for mf in manifests:
        for entry in mf.entries:
            target = entry_target(entry, mf.name)
            if target.lower() in self_names or target.lower().endswith(".cert"):
                report.details.append(f"{mf.name}: entry for {entry.name!r} (the manifest or "
                                      "certificate itself) ignored")
                continue
            found = pkg.find(target) or target
            if found != target:
                report.warnings.append(f"{mf.name}: {entry.name!r} matches {found!r} only when "
                                       "case is ignored")
            listed[found] = (entry.algorithm, entry.digest)

    failed = False
    for name in pkg.storage_order([n for n in listed if pkg.exists(n)]):
        alg, digest = listed[name]
        if name in deferred:
            report.files.append(FileCheck(name, alg, "deferred"))
            continue
        with pkg.open(name) as stream:
            digests, _size = hash_stream(stream, [alg])
        if digests[alg] == digest:
            report.files.append(FileCheck(name, alg, "ok"))
        else:
            failed = True
            report.files.append(FileCheck(name, alg, "mismatch"))
            report.details.append(f"{name}: {alg} digest mismatch (manifest {digest[:16]}..., "
                                  f"file {digests[alg][:16]}...)")
    for name, (alg, _digest) in listed.items():
        if not pkg.exists(name):
            failed = True
            report.files.append(FileCheck(name, alg, "missing"))
            report.details.append(f"{name}: listed in the manifest but not in the package")
        elif name not in wanted:
            report.details.append(f"{name}: listed in the manifest but not referenced by the "
                                  "descriptor")
    for name, why in wanted.items():
        if name not in listed and pkg.exists(name):
            failed = True
            report.files.append(FileCheck(name, None, "not-listed"))
            report.details.append(f"{name} ({why}) is not covered by the manifest")
    report.status = "mismatch" if failed else "ok"
    return report
