"""``<vm appliance="router.ova">`` in scenarios: fill the VM from a verified OVF package.

Documented extension of the scenario language (docs/ovf.md). For each VM with ``appliance``
(a path relative to the scenario's folder), the package is verified (manifest, signature)
under the trust policy of ``ovf.policy`` (``$EDIV_OVF_TRUST``, ``$EDIV_OVF_REQUIRE_SIGNATURE``)
and the VM takes from it what its own element does not say:

- ``<mem>`` from the memory item;
- ``<filesystem type="cow">`` on the package's boot disk, converted to raw once and kept in
  a cache (``$EDIV_APPLIANCE_CACHE``, default ``~/.cache/ediv/appliances``) under a key made
  of the descriptor and manifest digests;
- type ``uml`` when the package has a disk and the VM names no type;
- interfaces: the package's NICs, numbered from 1, on the scenario net of the same name; the
  scenario's own ``<if id=N>`` replaces the package's NIC N (net, MAC, addresses); a package
  NIC whose network is not a net of the scenario is left unconnected (warning);
- ``/ovf-env.xml`` with the ProductSection properties (ovfenv:id = the VM's name), put in the
  guest by a ``<filetree seq="on_boot" root="/">``.

A package holding several systems must have one whose name is the VM's. Any failure is an
error diagnostic at the VM's line; nothing is imported for that VM.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ediv.errors import Diagnostic, EdivError, InputError
from ediv.scenario.model import VM, Filesystem, Filetree, Interface, Scenario

from . import envelope as m
from . import policy
from .environment import ENV_FILE, environment_xml, system_properties
from .importer import ENV_SEQ, Appliance, convert_disk, open_appliance
from .package import open_package
from .translate import boot_disk

TRUST_VAR = policy.TRUST_VAR
CACHE_VAR = "EDIV_APPLIANCE_CACHE"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def cache_dir() -> Path:
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ediv" / "appliances"


def resolve_appliances(scenario: Scenario, *, trust: str | Path | None = None,
                       cache: str | Path | None = None) -> list[Diagnostic]:
    """Fill every VM of ``scenario`` that has ``appliance`` (in place); diagnostics for
    what went wrong (errors) or was left out (warnings)."""
    found: list[Diagnostic] = []
    trust = trust if trust is not None else policy.active().trust
    opened: dict[Path, Appliance | EdivError] = {}
    for vm in scenario.vms:
        if not vm.appliance:
            continue
        path = Path(vm.appliance)
        if not path.is_absolute():
            path = Path(scenario.basedir) / path
        path = path.resolve()
        where = f"vm {vm.name!r}: appliance {vm.appliance}"
        if path not in opened:
            try:
                opened[path] = open_appliance(path, trust=trust)
            except EdivError as exc:
                opened[path] = exc
        appliance = opened[path]
        if isinstance(appliance, EdivError):
            found.append(Diagnostic(scenario.source, vm.line, f"{where}: {_one_line(appliance)}"))
            continue
        try:
            _fill(scenario, vm, appliance, Path(cache) if cache else cache_dir(), found)
        except EdivError as exc:
            found.append(Diagnostic(scenario.source, vm.line, f"{where}: {_one_line(exc)}"))
            continue
        vm.appliance = str(path)
    return found


def _fill(scenario: Scenario, vm: VM, appliance: Appliance, cache: Path,
          found: list[Diagnostic]) -> None:
    vs, packaged = _system_for(vm, appliance)
    env = appliance.envelope
    for w in appliance.warnings:
        found.append(Diagnostic(scenario.source, vm.line, f"appliance {vm.appliance}: {w}",
                                "warning"))
    if vm.mem is None:
        vm.mem = packaged.mem
    disk = boot_disk(env, vs)
    if not vm.type and disk is not None:
        vm.type = "uml"
    entry = cache / _cache_key(appliance)
    if vm.filesystem is None and disk is not None and vm.type != "container":
        vm.filesystem = Filesystem(path=str(_cached_disk(appliance, disk, entry)), type="cow")
    vm.interfaces = _merged_interfaces(scenario, vm, packaged, found)
    props = system_properties(env, vs)
    if props:
        vm.filetrees.append(Filetree(source=str(_cached_env(vm.name, props, entry)), root="/",
                                     seq=ENV_SEQ, line=vm.line))


def _system_for(vm: VM, appliance: Appliance) -> tuple[m.VirtualSystem, VM]:
    if len(appliance.pairs) == 1:
        return appliance.pairs[0]
    for vs, packaged in appliance.pairs:
        if vm.name in (packaged.name, vs.id):
            return vs, packaged
    raise EdivError("the package holds several systems ("
                    + ", ".join(p.name for _vs, p in appliance.pairs)
                    + "); name the VM after one of them")


def _merged_interfaces(scenario: Scenario, vm: VM, packaged: VM,
                       found: list[Diagnostic]) -> list[Interface]:
    own = {i.id: i for i in vm.interfaces}
    merged: list[Interface] = []
    for iface in packaged.interfaces:
        if iface.id in own:
            merged.append(own.pop(iface.id))
        elif scenario.net(iface.net) is not None:
            merged.append(Interface(id=iface.id, net=iface.net, mac=iface.mac, line=vm.line))
        else:
            found.append(Diagnostic(scenario.source, vm.line,
                                    f"vm {vm.name!r}: the appliance's NIC {iface.id} is on "
                                    f"network {iface.net!r}, which is not a net of the "
                                    f"scenario; left unconnected (add <if id=\"{iface.id}\" "
                                    "net=...> to connect it)", "warning"))
    merged.extend(own.values())
    return sorted(merged, key=lambda i: i.id)


def _cache_key(appliance: Appliance) -> str:
    """Content key: the verified digests when there is a manifest, else the package file's
    identity (path, size, mtime)."""
    h = hashlib.sha256()
    for name, (alg, digest) in sorted(appliance.digests.items()):
        h.update(f"{name}\0{alg}\0{digest}\n".encode())
    if not appliance.digests:
        st = os.stat(appliance.source)
        h.update(f"{appliance.source}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _cached_disk(appliance: Appliance, disk: m.Disk, entry: Path) -> Path:
    image = entry / f"{_SAFE.sub('_', disk.file_ref or disk.disk_id)}.img"
    if image.is_file():
        return image
    entry.mkdir(mode=0o700, parents=True, exist_ok=True)  # derived from private images
    fd, tmp = tempfile.mkstemp(prefix=".convert-", dir=entry)
    os.close(fd)
    try:
        with open_package(appliance.source) as pkg:
            convert_disk(pkg, appliance, disk, Path(tmp))
        os.replace(tmp, image)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return image


def _cached_env(vm_name: str, props: list[tuple[str, str]], entry: Path) -> Path:
    data = environment_xml(vm_name, props)
    folder = entry / "env" / hashlib.sha256(data).hexdigest()[:16]
    if not (folder / ENV_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".env-", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / ENV_FILE)
    return folder


def _one_line(exc: EdivError) -> str:
    """The error without the package path the appliance attribute already names."""
    if isinstance(exc, InputError):
        return "; ".join(d.message for d in exc.diagnostics)
    return " ".join(str(exc).split("\n"))
