"""Build real OVF packages for tests: descriptor, raw disk, manifest, signing cert, OVA tar."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"


def descriptor(*, system_id: str = "router1", name: str = "Router One", mem_mb: int = 256,
               mem_units: str = "byte * 2^20", cpus: int = 2,
               networks: tuple[str, ...] = ("mgmt", "lan"), disk_href: str = "disk1.img",
               disk_size: int = 4096, capacity_gib: int = 1,
               properties: dict[str, str] | None = None, extra_sections: str = "",
               namespace: str = OVF_NS) -> str:
    """An OVF 1.x descriptor with one system, one disk, one NIC per network."""
    props = properties if properties is not None else {"hostname": "r1", "domain": "lab"}
    nets = "".join(f'<Network ovf:name="{n}"><Description>{n} net</Description></Network>'
                   for n in networks)
    nics = "".join(f"""
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{n}</rasd:Connection>
        <rasd:ElementName>eth{i}</rasd:ElementName>
        <rasd:InstanceID>{10 + i}</rasd:InstanceID>
        <rasd:ResourceSubType>virtio</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>""" for i, n in enumerate(networks))
    prop_xml = "".join(f'<Property ovf:key="{k}" ovf:type="string" ovf:value="{v}" '
                       f'ovf:userConfigurable="true"><Label>{k}</Label></Property>'
                       for k, v in props.items())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="{namespace}" xmlns:ovf="{namespace}"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:href="{disk_href}" ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:capacity="{capacity_gib}" ovf:capacityAllocationUnits="byte * 2^30"
          ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Networks</Info>
    {nets}
  </NetworkSection>
  {extra_sections}
  <VirtualSystem ovf:id="{system_id}">
    <Info>A router appliance</Info>
    <Name>{name}</Name>
    <ProductSection>
      <Info>Product</Info>
      <Product>Test Router</Product>
      {prop_xml}
    </ProductSection>
    <OperatingSystemSection ovf:id="36">
      <Info>Guest OS</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{cpus} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>{mem_units}</rasd:AllocationUnits>
        <rasd:ElementName>memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem_mb}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:ElementName>SCSI controller</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>{nics}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def collection_descriptor(system_ids: tuple[str, ...], **kwargs) -> str:
    """``descriptor()`` whose system is repeated once per id inside one
    VirtualSystemCollection (``kwargs`` go to ``descriptor``)."""
    text = descriptor(system_id="SYSTEM", **kwargs)
    start, end = text.index("<VirtualSystem "), text.index("</VirtualSystem>")
    system = text[start:end + len("</VirtualSystem>")]
    members = "".join(system.replace('ovf:id="SYSTEM"', f'ovf:id="{sid}"')
                      for sid in system_ids)
    collection = (f'<VirtualSystemCollection ovf:id="lab"><Info>A collection</Info>'
                  f"{members}</VirtualSystemCollection>")
    return text[:start] + collection + text[end + len("</VirtualSystem>"):]


def raw_disk(size: int = 4096, seed: int = 1) -> bytes:
    """Deterministic, non-repeating bytes standing in for a disk image."""
    out = bytearray()
    block = seed.to_bytes(4, "big")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def manifest(files: dict[str, bytes], algorithm: str = "SHA256", spaced: bool = False) -> bytes:
    """``SHA256(name)= hex`` lines (``SHA1 (name) = hex`` when ``spaced``)."""
    lines = []
    for name, data in files.items():
        digest = hashlib.new(algorithm.lower(), data).hexdigest()
        lines.append(f"{algorithm} ({name}) = {digest}" if spaced
                     else f"{algorithm}({name})= {digest}")
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Signer:
    key: object
    cert: x509.Certificate
    ca_key: object | None = None
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def bundle_pem(self) -> bytes:
        return self.cert_pem + b"".join(c.public_bytes(serialization.Encoding.PEM)
                                        for c in self.chain)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ediv tests")])


def _cert(subject: str, key, issuer: str, issuer_key, *, expired: bool, ca: bool,
          algorithm=None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    start, end = ((now - dt.timedelta(days=400), now - dt.timedelta(days=35)) if expired
                  else (now - dt.timedelta(days=1), now + dt.timedelta(days=365)))
    usage = key_usage(sign=True, cert_sign=True) if subject == issuer else True
    return issue(subject, key, issuer, issuer_key, ca=ca, not_before=start, not_after=end,
                 algorithm=algorithm, usage=usage)


def key_usage(*, sign: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def issue(subject: str, key, issuer: str, issuer_key, *, ca: bool,
          path_length: int | None = None, usage: x509.KeyUsage | bool | None = True,
          eku: list | None = None, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None, algorithm=None) -> x509.Certificate:
    """A certificate for ``key`` signed by ``issuer_key``. ``usage`` True: the keyUsage a CA
    (keyCertSign, cRLSign) or a signer (digitalSignature) has; None/False: none."""
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - dt.timedelta(days=1))
               .not_valid_after(not_after or now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                              critical=True))
    if usage is True:
        usage = key_usage(cert_sign=True) if ca else key_usage(sign=True)
    if usage:
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, algorithm if algorithm is not None else hashes.SHA256())


def make_key(kind: str = "rsa", bits: int = 2048):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def self_signed(cn: str = "Appliance Vendor", *, kind: str = "rsa", bits: int = 2048,
                expired: bool = False) -> Signer:
    key = make_key(kind, bits)
    return Signer(key, _cert(cn, key, cn, key, expired=expired, ca=True))


def ca_signed(cn: str = "Appliance Vendor", ca_cn: str = "Test Root CA") -> tuple[Signer, bytes]:
    """A signer whose cert is issued by a fresh CA; returns (signer, CA PEM)."""
    ca_key = make_key()
    ca_cert = _cert(ca_cn, ca_key, ca_cn, ca_key, expired=False, ca=True)
    key = make_key()
    leaf = _cert(cn, key, ca_cn, ca_key, expired=False, ca=False)
    return Signer(key, leaf, ca_key), ca_cert.public_bytes(serialization.Encoding.PEM)


def sign(signer: Signer, data: bytes, algorithm: str = "SHA256") -> bytes:
    h = {"SHA1": hashes.SHA1(), "SHA256": hashes.SHA256(), "SHA512": hashes.SHA512()}[algorithm]
    if isinstance(signer.key, ec.EllipticCurvePrivateKey):
        return signer.key.sign(data, ec.ECDSA(h))
    return signer.key.sign(data, padding.PKCS1v15(), h)


def cert_file(manifest_name: str, manifest_bytes: bytes, signer: Signer,
              algorithm: str = "SHA256", signature: bytes | None = None) -> bytes:
    sig = signature if signature is not None else sign(signer, manifest_bytes, algorithm)
    return f"{algorithm}({manifest_name})= {sig.hex()}\n".encode() + signer.bundle_pem()


def write_ova(path: Path, members: list[tuple[str, bytes]], *, gzip: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gzip else "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def add_special_member(path: Path, name: str, kind: bytes, linkname: str = "") -> None:
    """Append a link/device member (``tarfile.SYMTYPE``, ``LNKTYPE``, ``CHRTYPE``...)."""
    with tarfile.open(path, "a", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tar.addfile(info)


@dataclass
class Built:
    path: Path
    trust: Path | None  # PEM a test passes as --trust
    members: dict[str, bytes]


def build_package(tmp: Path, *, stem: str = "router", sign_with: Signer | None = None,
                  trust_pem: bytes | None = None, algorithm: str = "SHA256",
                  tamper_disk: bool = False, tamper_descriptor: bool = False,
                  wrong_signature: bool = False, disk_size: int = 4096,
                  gzip: bool = False, descriptor_text: str | None = None) -> Built:
    """A complete OVA (descriptor, manifest, optional cert, disk) in spec order.

    The manifest and signature are computed first; tampering happens afterwards, the way
    a corrupted download or a malicious edit would.
    """
    disk = raw_disk(disk_size)
    ovf = (descriptor_text or descriptor(disk_href=f"{stem}-disk1.img", disk_size=disk_size)
           ).encode()
    mf_name, ovf_name, disk_name = f"{stem}.mf", f"{stem}.ovf", f"{stem}-disk1.img"
    mf = manifest({ovf_name: ovf, disk_name: disk}, algorithm)
    members = {ovf_name: ovf, mf_name: mf}
    trust = None
    if sign_with is not None:
        bad = sign(sign_with, mf + b"tampered", algorithm) if wrong_signature else None
        members[f"{stem}.cert"] = cert_file(mf_name, mf, sign_with, algorithm, bad)
        trust = tmp / "trust.pem"
        trust.write_bytes(trust_pem if trust_pem is not None else sign_with.cert_pem)
    if tamper_disk:
        disk = disk[:100] + bytes([disk[100] ^ 0xFF]) + disk[101:]
    if tamper_descriptor:
        members[ovf_name] = ovf.replace(b"<rasd:VirtualQuantity>256<",
                                        b"<rasd:VirtualQuantity>8192<")
    members[disk_name] = disk
    path = write_ova(tmp / f"{stem}.ova", list(members.items()), gzip=gzip)
    return Built(path, trust, members)


# -- appliances with real disk images (tests of convert/import/boot) -----------------------
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
QCOW2 = "http://www.gnome.org/~markmc/qcow-image-format.html"
RAW = "http://en.wikipedia.org/wiki/Byte"
FORMAT_URI = {"vmdk": VMDK_STREAM, "qcow2": QCOW2, "raw": RAW}


def ext2_image(path: Path, files: dict[str, str] | None = None, size: str = "1M") -> Path:
    """A small ext2 image made with ``mkfs.ext2 -d`` holding ``files`` (name -> text)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, text in (files or {"etc/motd": "ediv appliance\n"}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        subprocess.run(["mkfs.ext2", "-q", "-F", "-d", str(root), str(path), size], check=True,
                       capture_output=True)
    return path


def disk_as(raw: Path, fmt: str, out: Path) -> Path:
    """``raw`` converted with qemu-img: "vmdk" (streamOptimized), "qcow2" or "raw"."""
    import shutil
    import subprocess

    if fmt == "raw":
        shutil.copyfile(raw, out)
        return out
    opts = ["-o", "subformat=streamOptimized"] if fmt == "vmdk" else []
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, *opts, str(raw),
                    str(out)], check=True)
    return out


def appliance_descriptor(*, system_id: str = "router1", disk_href: str = "router-disk1.vmdk",
                         disk_size: int = 0, fmt: str = "vmdk", mem_mb: int = 256,
                         networks: tuple[str, ...] = ("mgmt", "lan"),
                         properties: dict[str, str] | None = None,
                         capacity_bytes: int = 2**20) -> str:
    """``descriptor()`` with the disk's real size, format URI and capacity."""
    text = descriptor(system_id=system_id, disk_href=disk_href, disk_size=disk_size,
                      mem_mb=mem_mb, networks=networks, properties=properties)
    text = text.replace(f'ovf:format="{VMDK_STREAM}"', f'ovf:format="{FORMAT_URI[fmt]}"')
    return text.replace('ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"',
                        f'ovf:capacity="{capacity_bytes}" ovf:capacityAllocationUnits="byte"')


def build_appliance(tmp: Path, raw: Path, *, stem: str = "router", fmt: str = "vmdk",
                    sign_with: Signer | None = None, trust_pem: bytes | None = None,
                    tamper_disk: bool = False, tamper_descriptor: bool = False,
                    wrong_signature: bool = False, with_manifest: bool = True,
                    properties: dict[str, str] | None = None, mem_mb: int = 256,
                    networks: tuple[str, ...] = ("mgmt", "lan"), system_id: str = "router1",
                    extra_members: list[tuple[str, bytes]] = ()) -> Built:
    """An OVA whose disk is the ext2 image ``raw`` stored as ``fmt``; manifest (SHA256) and
    optional signature computed before any tampering."""
    ext = {"vmdk": "vmdk", "qcow2": "qcow2", "raw": "img"}[fmt]
    disk_name = f"{stem}-disk1.{ext}"
    stored = disk_as(raw, fmt, tmp / f"{stem}.stored.{ext}").read_bytes()
    ovf = appliance_descriptor(system_id=system_id, disk_href=disk_name, disk_size=len(stored),
                               fmt=fmt, mem_mb=mem_mb, networks=networks, properties=properties,
                               capacity_bytes=raw.stat().st_size).encode()
    mf_name, ovf_name = f"{stem}.mf", f"{stem}.ovf"
    mf = manifest({ovf_name: ovf, disk_name: stored})
    members = {ovf_name: ovf}
    if with_manifest:
        members[mf_name] = mf
    trust = None
    if sign_with is not None:
        bad = sign(sign_with, mf + b"tampered") if wrong_signature else None
        members[f"{stem}.cert"] = cert_file(mf_name, mf, sign_with, "SHA256", bad)
        trust = tmp / "trust.pem"
        trust.write_bytes(trust_pem if trust_pem is not None else sign_with.cert_pem)
    if tamper_disk:
        mid = len(stored) // 2
        stored = stored[:mid] + bytes([stored[mid] ^ 0xFF]) + stored[mid + 1:]
    if tamper_descriptor:
        members[ovf_name] = ovf.replace(f"<rasd:VirtualQuantity>{mem_mb}<".encode(),
                                        b"<rasd:VirtualQuantity>8192<")
    members[disk_name] = stored
    path = write_ova(tmp / f"{stem}.ova", [*members.items(), *extra_members])
    return Built(path, trust, members)


def build_stored(tmp: Path, stored: bytes, *, fmt: str = "raw", stem: str = "router",
                 chunk_size: int | None = None, compression: str | None = None,
                 capacity_bytes: int = 2**20, with_manifest: bool = True,
                 drop_chunks: tuple[int, ...] = (), descriptor_text: str | None = None
                 ) -> Built:
    """An OVA whose disk file holds exactly ``stored`` (already compressed when
    ``compression``), stored whole or, with ``chunk_size``, as DSP0243 chunks
    ``href.000000000``... (``drop_chunks`` leaves some out after the manifest is made)."""
    ext = {"vmdk": "vmdk", "qcow2": "qcow2", "raw": "img"}[fmt]
    href = f"{stem}-disk1.{ext}"
    ovf = descriptor_text or appliance_descriptor(disk_href=href, disk_size=len(stored),
                                                  fmt=fmt, capacity_bytes=capacity_bytes)
    attrs = "".join([f' ovf:chunkSize="{chunk_size}"' if chunk_size else "",
                     f' ovf:compression="{compression}"' if compression else ""])
    ovf_bytes = ovf.replace(f'ovf:href="{href}"', f'ovf:href="{href}"{attrs}').encode()
    if chunk_size:
        disk_members = [(f"{href}.{i:09d}", stored[off:off + chunk_size])
                        for i, off in enumerate(range(0, max(len(stored), 1), chunk_size))]
    else:
        disk_members = [(href, stored)]
    members = [(f"{stem}.ovf", ovf_bytes)]
    if with_manifest:
        members.append((f"{stem}.mf", manifest(dict([members[0], *disk_members]))))
    members += [m for i, m in enumerate(disk_members) if i not in drop_chunks]
    path = write_ova(tmp / f"{stem}.ova", members)
    return Built(path, None, dict(members))
