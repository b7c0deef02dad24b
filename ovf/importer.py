"""Import an OVF package: verify it, translate it, and write the files its VMs need.

Order matters, so that a bad package changes nothing:

1. the package is read and verified (manifest digests, signature and certificate chain);
   any failure, an unknown required section or a path-traversal member stops here;
2. the systems are translated to VNUML VMs (``ediv.ovf.translate``);
3. for each VM, its boot disk is streamed out of the package into a staging folder, its
   digest compared again with the verified manifest (the package could change between the
   checks and the copy), converted to raw with qemu-img, and its ProductSection properties
   written as ``ovf-env.xml`` (``ediv.ovf.environment``);
4. only when everything succeeded are the staged files renamed into the output folder.

The VMs get ``<filesystem type="cow">`` on the raw image (absolute path: the uml driver opens
it on the host as written), the default kernel, and a ``<filetree seq="on_boot" root="/">``
that puts ``/ovf-env.xml`` in the guest.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ediv import xmlsafe
from ediv.errors import InputError
from ediv.scenario import load_string, to_xml, validate_tree
from ediv.scenario.model import VM, Filesystem, Filetree, Net, Scenario

from . import envelope as m
from .convert import extract_file, to_raw
from .environment import ENV_FILE, environment_xml, system_properties
from .inspect import Inspection, _inspect
from .manifest import entry_target, parse_manifest
from .package import Package, open_package
from .stream import stored_members
from .translate import boot_disk, translate_systems
from .verify import MAX_MANIFEST_BYTES

ENV_SEQ = "on_boot"
DISK_SUFFIX = ".img"
ENV_DIR_SUFFIX = ".ovfenv"


@dataclass
class Appliance:
    """A verified, translated package; ``files`` are the paths written (empty until
    ``materialize``)."""

    source: str
    inspection: Inspection
    pairs: list[tuple[m.VirtualSystem, VM]]
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    # package name -> (algorithm, digest), read with the verified manifest
    digests: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def envelope(self) -> m.Envelope:
        return self.inspection.envelope

    @property
    def vms(self) -> list[VM]:
        return [vm for _vs, vm in self.pairs]


def verification_error(result: Inspection) -> str | None:
    """Why ``result`` must not be used, or None when it may."""
    problems = result.failures()
    if result.envelope.unknown_required:
        problems.append("the descriptor has required sections ediv does not understand: "
                        + ", ".join(result.envelope.unknown_required))
    if not result.envelope.systems():
        problems.append("the descriptor has no VirtualSystem")
    return "; ".join(problems) or None


def open_appliance(path: str | Path, *, net_map: dict[str, str] | None = None,
                   vm_type: str | None = None, trust: str | Path | None = None,
                   now: dt.datetime | None = None) -> Appliance:
    """Read, verify and translate ``path``; InputError when verification fails.

    ``vm_type`` None: "uml" for systems with a disk, "container" for those without.
    """
    with open_package(path) as pkg:
        return _open(pkg, net_map, vm_type, trust, now)


def _open(pkg: Package, net_map, vm_type, trust, now) -> Appliance:
    result = _inspect(pkg, trust, None, now)
    reason = verification_error(result)
    if reason is not None:
        raise InputError(f"package refused, nothing imported: {reason}", pkg.source)
    warnings = list(result.warnings)
    if result.manifest.status == "absent":
        warnings.append("the package has no manifest: its files are not integrity-checked")
    env = result.envelope
    known = {n.name for n in env.networks} | {c for vs in env.systems() for hw in vs.hardware
                                              for i in hw.items for c in i.connections}
    for ovf_net in net_map or {}:
        if ovf_net not in known:
            raise InputError(f"--net {ovf_net}=...: the package has no network {ovf_net!r} "
                             f"(it has: {', '.join(sorted(known)) or 'none'})", pkg.source)
    pairs = translate_systems(env, net_map, vm_type=vm_type or "uml", appliance=None,
                              warnings=warnings)
    for vs, vm in pairs:
        if vm_type is None and boot_disk(env, vs) is None:
            vm.type = "container"
    return Appliance(pkg.source, result, pairs, warnings,
                     digests=_manifest_digests(pkg, result))


def materialize(appliance: Appliance, out_dir: str | Path, *,
                names: dict[str, str] | None = None) -> None:
    """Write the disks and environment files of ``appliance``'s VMs into ``out_dir`` and
    point the VMs at them. ``names``: VM name -> file stem (default: the VM name).

    Nothing is left in ``out_dir`` on failure; existing files are never overwritten.
    """
    staged = stage(appliance, out_dir, names=names)
    staged.commit()


@dataclass
class Staged:
    """Files converted into a staging folder, not yet in place (``commit`` / ``discard``)."""

    appliance: Appliance
    staging: Path
    moves: list[tuple[Path, Path]]  # staged -> final

    def commit(self) -> list[Path]:
        """Rename the staged files into place; all or nothing."""
        try:
            clash = [str(final) for _s, final in self.moves if final.exists()]
            if clash:
                raise InputError(f"refusing to overwrite {', '.join(clash)}",
                                 str(self.staging.parent))
            done: list[Path] = []
            try:
                for src, final in self.moves:
                    os.rename(src, final)
                    done.append(final)
            except OSError as exc:
                remove_paths(done)
                raise InputError(f"cannot write {exc.filename}: {exc.strerror}",
                                 str(self.staging.parent)) from None
            self.appliance.files.extend(done)
            return done
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def stage(appliance: Appliance, out_dir: str | Path, *,
          names: dict[str, str] | None = None) -> Staged:
    """Convert disks and write environment files into a staging folder inside ``out_dir``;
    the VMs already point at the final paths."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ediv-import-", dir=out))
    result = Staged(appliance, staging, [])
    try:
        with open_package(appliance.source) as pkg:
            converted: dict[str, Path] = {}  # file id -> final image path (shared disks)
            for vs, vm in appliance.pairs:
                stem = (names or {}).get(vm.name, vm.name)
                disk = boot_disk(appliance.envelope, vs)
                if disk is not None and vm.type == "container":
                    appliance.warnings.append(f"{vm.name}: container VMs do not use the "
                                              "appliance's disk image")
                elif disk is not None and not _stored(pkg, appliance.envelope, disk):
                    appliance.warnings.append(f"{vm.name}: disk file of {disk.disk_id!r} is "
                                              "not in the package; the VM has no filesystem")
                elif disk is not None:
                    final = converted.get(disk.file_ref or "")
                    if final is None:
                        final = out / f"{stem}{DISK_SUFFIX}"
                        convert_disk(pkg, appliance, disk, staging / final.name)
                        result.moves.append((staging / final.name, final))
                        converted[disk.file_ref or ""] = final
                    vm.filesystem = Filesystem(path=str(final), type="cow")
                props = system_properties(appliance.envelope, vs)
                if props:
                    final_dir = out / f"{stem}{ENV_DIR_SUFFIX}"
                    (staging / final_dir.name).mkdir()
                    (staging / final_dir.name / ENV_FILE).write_bytes(
                        environment_xml(vm.name, props))
                    result.moves.append((staging / final_dir.name, final_dir))
                    vm.filetrees.append(Filetree(source=str(final_dir), root="/",
                                                 seq=ENV_SEQ))
        clash = [str(final) for _s, final in result.moves if final.exists()]
        if clash:
            raise InputError(f"refusing to overwrite {', '.join(clash)}", str(out))
    except BaseException:
        result.discard()
        raise
    return result


def _stored(pkg: Package, env: m.Envelope, disk: m.Disk) -> bool:
    """The disk's file is in the package (descriptors are often shipped without disks)."""
    ref = env.file(disk.file_ref)
    target = pkg.resolve(ref.href) if ref is not None else None
    if target is None:
        return False
    return bool(pkg.find(target) or (ref.chunk_size and pkg.chunks(target)))


def remove_paths(paths: list[Path]) -> None:
    """Undo ``materialize`` (files and environment folders it wrote)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def convert_disk(pkg: Package, appliance: Appliance, disk: m.Disk, dest: Path) -> None:
    """Stream ``disk`` out of ``pkg`` (open on ``appliance.source``), check it against the
    verified manifest, and write it as a raw image at ``dest``."""
    digests = appliance.digests
    ref = appliance.envelope.file(disk.file_ref)
    assert ref is not None  # boot_disk only returns disks whose file is referenced
    algorithms = tuple(sorted({alg for alg, _d in digests.values()})) or ("SHA256",)
    stored = dest.with_name(dest.name + ".stored")
    try:
        got = extract_file(pkg, ref, stored, algorithms)
        _recheck(pkg, ref, got.digests, digests)
        try:
            to_raw(stored, dest, disk.format, appliance.warnings)
        except InputError as exc:  # name the package's file, not the temporary copy
            raise InputError("; ".join(f"disk {ref.href}: " + d.message.replace(str(stored),
                                                                               ref.href)
                                       for d in exc.diagnostics), pkg.source) from None
    finally:
        stored.unlink(missing_ok=True)


def _recheck(pkg: Package, ref: m.FileRef, got: dict[str, str],
             verified: dict[str, tuple[str, str]]) -> None:
    """The bytes copied out must be the ones the manifest (already verified) lists."""
    if not verified:
        return
    for member in stored_members(pkg, ref):
        if member not in verified:
            continue
        alg, digest = verified[member]
        if got.get(f"{alg}:{member}") != digest:
            raise InputError(f"{member} changed while it was being imported (its {alg} digest "
                             "no longer matches the manifest): refused", pkg.source)


def _manifest_digests(pkg: Package, result: Inspection) -> dict[str, tuple[str, str]]:
    """Package name -> (algorithm, digest) from the manifest(s) verification read."""
    out: dict[str, tuple[str, str]] = {}
    for name in result.manifest.names:
        mf = parse_manifest(pkg.read(name, MAX_MANIFEST_BYTES), name)
        for entry in mf.entries:
            target = entry_target(entry, name)
            out[pkg.find(target) or target] = (entry.algorithm, entry.digest)
    return out


# -- adding an appliance to a scenario file --------------------------------------------------
@dataclass
class ScenarioImport:
    scenario_file: Path
    backup: Path
    vms: list[str]
    nets_added: list[str]
    files: list[Path]
    warnings: list[str]


def import_into_scenario(package: str | Path, scenario_file: str | Path, *,
                         net_map: dict[str, str] | None = None, vm_type: str | None = None,
                         trust: str | Path | None = None,
                         now: dt.datetime | None = None) -> ScenarioImport:
    """Add the VMs of ``package`` (and the nets they need) to ``scenario_file``.

    The file is edited as XML, so its comments and layout stay; the previous version is kept
    as ``FILE.bak``. Disks and environment files go beside the scenario. The scenario must be
    valid before and after; on any error nothing is written.
    """
    path = Path(scenario_file)
    tree = xmlsafe.parse_file(path)
    base = str(path.resolve().parent)
    current, _ = validate_tree(tree, str(path), base)
    appliance = open_appliance(package, net_map=net_map, vm_type=vm_type, trust=trust, now=now)
    taken = [vm.name for vm in appliance.vms if current.vm(vm.name) is not None]
    if taken:
        raise InputError(f"the scenario already has VMs named {', '.join(taken)}: nothing "
                         "imported", str(path))
    staged = stage(appliance, path.resolve().parent)
    try:
        new_nets = [n for n in dict.fromkeys(n for vm in appliance.vms for n in vm.nets)
                    if current.net(n) is None]
        merged = _merged_xml(tree, appliance.vms, new_nets)
        load_string(merged, str(path), base, appliances=True)  # the result must be a valid scenario
    except BaseException:
        staged.discard()
        raise
    files = staged.commit()
    backup = path.with_name(path.name + ".bak")
    try:
        shutil.copy2(path, backup)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(merged)
        os.replace(partial, path)
    except OSError as exc:
        remove_paths(files)
        raise InputError(f"cannot write the scenario: {exc.strerror}", str(path)) from None
    return ScenarioImport(path, backup, [vm.name for vm in appliance.vms], new_nets, files,
                          appliance.warnings)


def _merged_xml(tree: etree._ElementTree, vms: list[VM], nets: list[str]) -> bytes:
    """``tree`` with ``<net>`` elements after its nets and ``<vm>`` elements after its VMs."""
    tree = copy.deepcopy(tree)
    root = tree.getroot()
    generated = xmlsafe.parse_bytes(to_xml(Scenario(nets=[Net(name=n) for n in nets],
                                                    vms=vms, root=root.tag)))
    for tag, new in (("net", generated.getroot().findall("net")),
                     ("vm", generated.getroot().findall("vm"))):
        children = [c for c in root if isinstance(c.tag, str)]
        same = [c for c in children if c.tag == tag]
        anchor = same[-1] if same else next(
            (c for c in reversed(children) if c.tag in ("global", "net")), children[0])
        for elem in new:
            elem.tail = anchor.tail
            anchor.addnext(elem)
            anchor = elem
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8") + b"\n"
