"""Export a scenario's VMs as an OVF 2.0 package (``ediv ovf export``).

The package is an OVA (ustar): the descriptor first, then the manifest (SHA256 of every
file), the optional signature (``.cert``: ``SHA256(name.mf)= <signature>`` and the signer's
PEM certificates, DSP0243 5.4), then the disks. The descriptor holds one
VirtualSystemCollection (the scenario) with one VirtualSystem per VM: memory, one CPU, one
EthernetPortItem per interface (Connection = the net, Address = the MAC if set) and a
StorageItem for the root filesystem image when the VM has one. Images are written as
streamOptimized VMDK (qemu-img) or, with ``disk_format="raw"``, as they are. A filesystem
image shared by several VMs (usual in VNUML) is stored once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from ediv.errors import InputError
from ediv.scenario.model import VM, Scenario

from .convert import RAW_URI, VMDK_STREAM_URI, copy_sparse, raw_to_vmdk
from .edivsection import build_section
from .environment import ENV_FILE, read_environment
from .namespaces import OVF_2, RASD, VSSD, XSI

EPASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData"
SASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
NSMAP = {None: OVF_2, "ovf": OVF_2, "rasd": RASD, "vssd": VSSD, "epasd": EPASD, "sasd": SASD,
         "xsi": XSI}
SYSTEM_TYPE = {"uml": "ediv-uml", "container": "ediv-container", "": "ediv"}
OS_LINUX = "36"  # CIM_OperatingSystem.OSType LINUX
_MEM = re.compile(r"^\s*(\d+)\s*([KkMmGg]?)[Bb]?\s*$")


@dataclass
class ExportResult:
    path: Path
    vms: list[str]
    nets: list[str]
    disks: list[str]
    signed: bool
    warnings: list[str] = field(default_factory=list)


def mem_mb(text: str | None) -> int | None:
    """VNUML ``<mem>`` ("64M", "131072K", "1G", "96MB") in MiB; None when absent or odd."""
    m = _MEM.match(text or "")
    if not m:
        return None
    value, unit = int(m.group(1)), m.group(2).upper()
    return {"K": value // 1024, "M": value, "G": value * 1024, "": value // 2**20}[unit]


def export_scenario(scenario: Scenario, out: str | Path, *, disk_format: str = "vmdk",
                    sign_key: str | Path | None = None, cert: str | Path | None = None,
                    key_password: bytes | None = None, deployed: bool = False) -> ExportResult:
    """Write ``scenario``'s VMs to the OVA ``out`` (replaced only when complete).

    ``deployed``: the scenario runs, so its images may be open (and locked) by UML; they
    are read without taking qemu's locks, and VMs that write to their image directly
    (``<filesystem type="direct">``) get a warning (the copy may be inconsistent)."""
    if disk_format not in ("vmdk", "raw"):
        raise InputError(f"disk format {disk_format!r}: use vmdk or raw", str(out))
    if (sign_key is None) != (cert is None):
        raise InputError("signing needs both a private key and a certificate", str(out))
    if not scenario.vms:
        raise InputError("the scenario has no VMs to export", scenario.source)
    signer = _load_signer(sign_key, cert, key_password) if sign_key and cert else None
    out = Path(out).resolve()
    stem = out.stem or "scenario"
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".ediv-export-", dir=out.parent) as tmp:
        work = Path(tmp)
        if deployed:
            warnings.extend(f"vm {vm.name}: its image {vm.filesystem.path} is in use by the "
                            "running VM (filesystem type direct): the copy may be "
                            "inconsistent; release the scenario or use type cow for a clean "
                            "export" for vm in scenario.vms
                            if vm.filesystem is not None and vm.filesystem.type == "direct")
        disks = _disk_files(scenario, work, stem, disk_format, warnings)
        descriptor = build_descriptor(scenario, disks, disk_format)
        files: list[tuple[str, Path]] = [(f"{stem}.ovf", _write(work / f"{stem}.ovf",
                                                               descriptor))]
        files += [(d.name, d.path) for d in _unique_disks(disks)]
        manifest = "".join(f"SHA256({name})= {_sha256(path)}\n" for name, path in files)
        members = [files[0], (f"{stem}.mf", _write(work / f"{stem}.mf", manifest.encode()))]
        if signer is not None:
            members.append((f"{stem}.cert", _write(work / f"{stem}.cert",
                                                   _cert_file(f"{stem}.mf", manifest.encode(),
                                                              *signer))))
        members += files[1:]
        partial = work / "package.ova"
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            for name, path in members:
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with path.open("rb") as f:
                    tar.addfile(info, f)
        os.replace(partial, out)
    return ExportResult(out, [vm.name for vm in scenario.vms],
                        [n.name for n in scenario.nets], [d.name for d in _unique_disks(disks)],
                        signer is not None, warnings)


@dataclass
class _Disk:
    file_id: str
    disk_id: str
    name: str  # member name
    path: Path
    capacity: int


def _disk_files(scenario: Scenario, work: Path, stem: str, disk_format: str,
                warnings: list[str]) -> dict[str, _Disk]:
    """VM name -> its disk, converted once per distinct image."""
    by_image: dict[str, _Disk] = {}
    out: dict[str, _Disk] = {}
    for vm in scenario.vms:
        fs = vm.filesystem
        if fs is None:
            continue
        if fs.type == "hostfs":
            warnings.append(f"vm {vm.name}: hostfs root {fs.path} is a directory; not exported")
            continue
        image = Path(fs.path) if Path(fs.path).is_absolute() else Path(scenario.basedir) / fs.path
        if not image.is_file():
            raise InputError(f"vm {vm.name}: filesystem image {image} not found", scenario.source)
        key = str(image.resolve())
        if key not in by_image:
            n = len(by_image) + 1
            ext = "vmdk" if disk_format == "vmdk" else "img"
            name = f"{stem}-disk{n}.{ext}"
            target = work / name
            if disk_format == "vmdk":
                raw_to_vmdk(image, target)
            else:
                copy_sparse(image, target)
            by_image[key] = _Disk(f"file{n}", f"disk{n}", name, target, image.stat().st_size)
        out[vm.name] = by_image[key]
    return out


def _unique_disks(disks: dict[str, _Disk]) -> list[_Disk]:
    return list({d.file_id: d for d in disks.values()}.values())


def build_descriptor(scenario: Scenario, disks: dict[str, _Disk], disk_format: str) -> bytes:
    """The OVF 2.0 descriptor of the scenario's VMs."""
    E = _Maker()
    root = etree.Element(E.ovf("Envelope"), nsmap=NSMAP)
    root.set(E.ovf("version"), "2.0")
    refs = E.sub(root, "References")
    for d in _unique_disks(disks):
        E.sub(refs, "File", id=d.file_id, href=d.name, size=str(d.path.stat().st_size))
    if disks:
        section = E.sub(root, "DiskSection")
        E.sub(section, "Info").text = "Root filesystems of the VMs"
        uri = VMDK_STREAM_URI if disk_format == "vmdk" else RAW_URI
        for d in _unique_disks(disks):
            E.sub(section, "Disk", diskId=d.disk_id, fileRef=d.file_id, capacity=str(d.capacity),
                  capacityAllocationUnits="byte", format=uri)
    nets = E.sub(root, "NetworkSection")
    E.sub(nets, "Info").text = "The nets of the scenario"
    for net in scenario.nets:
        n = E.sub(nets, "Network", name=net.name)
        E.sub(n, "Description").text = f"{net.type} net {net.name}"
    coll = E.sub(root, "VirtualSystemCollection", id=scenario.name or "scenario")
    E.sub(coll, "Info").text = f"ediv scenario {scenario.name}"
    E.sub(coll, "Name").text = scenario.name
    build_section(coll, OVF_2, scenario)
    ordered = [vm for vm in scenario.vms if vm.order is not None]
    if ordered:
        startup = E.sub(coll, "StartupSection")
        E.sub(startup, "Info").text = "VNUML boot order (vm order)"
        for vm in sorted(ordered, key=lambda v: v.order):
            E.sub(startup, "Item", id=vm.name, order=str(vm.order))
    for vm in scenario.vms:
        _system(E, coll, vm, disks.get(vm.name), scenario.basedir)
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _system(E: _Maker, parent: etree._Element, vm: VM, disk: _Disk | None,
            basedir: str = ".") -> None:
    vs = E.sub(parent, "VirtualSystem", id=vm.name)
    E.sub(vs, "Info").text = f"VM {vm.name}"
    E.sub(vs, "Name").text = vm.name
    properties = vm_properties(vm, basedir)
    if properties:
        product = E.sub(vs, "ProductSection")
        E.sub(product, "Info").text = "Properties the VM gets in /ovf-env.xml"
        for key, value in properties.items():
            E.sub(product, "Property", key=key, type="string", value=value,
                  userConfigurable="true")
    os_section = E.sub(vs, "OperatingSystemSection", id=OS_LINUX)
    E.sub(os_section, "Info").text = "Linux"
    hw = E.sub(vs, "VirtualHardwareSection")
    E.sub(hw, "Info").text = "Virtual hardware"
    system = E.sub(hw, "System")
    E.cim(system, VSSD, ElementName="Virtual Hardware Family", InstanceID="0",
          VirtualSystemIdentifier=vm.name, VirtualSystemType=SYSTEM_TYPE.get(vm.type, "ediv"))
    E.cim(E.sub(hw, "Item"), RASD, ElementName="1 virtual CPU", InstanceID="1",
          ResourceType="3", VirtualQuantity="1")
    mem = mem_mb(vm.mem)
    if mem is not None:
        E.cim(E.sub(hw, "Item"), RASD, AllocationUnits="byte * 2^20",
              ElementName=f"{mem} MB of memory", InstanceID="2", ResourceType="4",
              VirtualQuantity=str(mem))
    for n, iface in enumerate(vm.interfaces):
        E.cim(E.sub(hw, "EthernetPortItem"), EPASD, Address=iface.mac,
              Connection=iface.net, ElementName=f"eth{iface.id}", InstanceID=str(10 + n),
              ResourceType="10")
    if disk is not None:
        E.cim(E.sub(hw, "StorageItem"), SASD, ElementName="root filesystem",
              HostResource=f"ovf:/disk/{disk.disk_id}", InstanceID="5", ResourceType="17")


def vm_properties(vm: VM, basedir: str = ".") -> dict[str, str]:
    """The ProductSection properties a VM was given: those of the ``ovf-env.xml`` its
    filetrees put in the guest (an imported appliance's), later filetrees winning."""
    out: dict[str, str] = {}
    for tree in vm.filetrees:
        folder = Path(tree.source)
        if not folder.is_absolute():
            folder = Path(basedir) / folder
        env = folder / ENV_FILE
        if tree.root == "/" and env.is_file():
            _id, values = read_environment(env.read_bytes(), str(env))
            out.update(values)
    return out


class _Maker:
    """Element helpers: OVF elements with ovf: attributes, CIM elements in sorted order."""

    @staticmethod
    def ovf(local: str) -> str:
        return f"{{{OVF_2}}}{local}"

    def sub(self, parent: etree._Element, local: str, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, self.ovf(local))
        for key, value in attrs.items():
            el.set(self.ovf(key), value)
        return el

    @staticmethod
    def cim(parent: etree._Element, namespace: str, **values: str | None) -> None:
        # The CIM XML schemas define each class's properties as an alphabetical sequence.
        for key in sorted(values):
            if values[key] is not None:
                etree.SubElement(parent, f"{{{namespace}}}{key}").text = values[key]


def _load_signer(key_path: str | Path, cert_path: str | Path, password: bytes | None):
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read the signing key: {exc}", str(key_path)) from None
    try:
        certs = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the certificate: {exc}", str(cert_path)) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError("signing keys must be RSA or EC", str(key_path))
    if certs[0].public_key().public_numbers() != key.public_key().public_numbers():
        raise InputError("the certificate does not belong to the signing key", str(cert_path))
    return key, certs


def _cert_file(manifest_name: str, manifest: bytes, key, certs: list[x509.Certificate]) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(manifest, ec.ECDSA(hashes.SHA256()))
    else:
        signature = key.sign(manifest, padding.PKCS1v15(), hashes.SHA256())
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return f"SHA256({manifest_name})= {signature.hex()}\n".encode() + pem


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
