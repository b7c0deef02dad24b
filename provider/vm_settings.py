"""A VNUML <vm> from CIM settings: EDIV_VirtualSystemSettingData plus RASDs (what OVF carries
and what ``ediv.ovf.translate.to_cim`` produces). The property names are in docs/cim.md.

- VSSD: VirtualSystemIdentifier (else ElementName) = VM name; VirtualSystemType "uml" or
  "container"; Filesystem / FilesystemType / Kernel for UML.
- Memory RASD (ResourceType 4): VirtualQuantity in AllocationUnits (default "byte*2^20").
- Processor RASD (ResourceType 3): accepted; VNUML has no CPU count, so it changes nothing.
- Ethernet port RASD (ResourceType 10 or 33): Connection[0] (else NetworkName) = net name,
  Address = MAC, InterfaceIndex = <if id> (else the next free one), IPAddresses = addresses
  in prefix notation ("198.18.1.10/24", "2001:db8::1/64").
- Storage RASD (ResourceType 17, 31 or 19): HostResource[0] = filesystem image, and
  ResourceSubType (cow | direct | hostfs) its use.
"""

from __future__ import annotations

import ipaddress
import re

from pywbem import CIM_ERR_INVALID_PARAMETER, CIMError, CIMInstance

from ediv.errors import InputError
from ediv.ovf.namespaces import OVF_ENVIRONMENT
from ediv.scenario.model import VM, Address, Filesystem, Interface, Kernel
from ediv.xmlsafe import parse_bytes

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
_UNITS = {"byte": 1 / 2**20, "kilobyte": 1 / 1024, "megabyte": 1, "gigabyte": 1024}
_POWER = re.compile(r"^\s*byte\s*\*\s*2\s*\^\s*(\d+)\s*$", re.I)
PROCESSOR, MEMORY = 3, 4
ETHERNET = (10, 33)  # OVF Ethernet Adapter, DSP1050 Ethernet Connection
STORAGE = (17, 19, 31)  # disk drive, storage extent, logical disk
FILESYSTEM_TYPES = ("cow", "direct", "hostfs")


def _bad(message: str) -> CIMError:
    return CIMError(CIM_ERR_INVALID_PARAMETER, message)


def memory_mb(quantity: int, units: str | None) -> int:
    """VirtualQuantity in AllocationUnits (DSP0004 programmatic units) -> MB, rounded up."""
    units = (units or "byte*2^20").strip()
    m = _POWER.match(units)
    if m:
        factor = 2 ** int(m.group(1)) / 2**20
    elif units.lower() in _UNITS:
        factor = _UNITS[units.lower()]
    else:
        raise _bad(f"memory AllocationUnits {units!r} is not understood (use 'byte*2^20')")
    mb = quantity * factor
    return max(1, int(-(-mb // 1)))


def vm_from_settings(vssd: CIMInstance, rasds: list[CIMInstance]) -> VM:
    name = _str(vssd, "VirtualSystemIdentifier") or _str(vssd, "ElementName")
    if not name:
        raise _bad("SystemSettings needs VirtualSystemIdentifier or ElementName (the VM name)")
    if "OvfEulaAccepted" in vssd.properties and vssd["OvfEulaAccepted"] is False:
        raise _bad(f"{name}: the OVF package's license agreements were not accepted "
                   "(OvfEulaAccepted is false)")
    vm_type = _str(vssd, "VirtualSystemType") or "uml"
    if vm_type not in ("uml", "container"):
        raise _bad(f"VirtualSystemType {vm_type!r} is not supported (uml or container)")
    vm = VM(name=name, type=vm_type)
    if _str(vssd, "Filesystem"):
        vm.filesystem = Filesystem(_str(vssd, "Filesystem"),
                                   filesystem_type(_str(vssd, "FilesystemType"), "SystemSettings"))
    if _str(vssd, "Kernel"):
        vm.kernel = Kernel(_str(vssd, "Kernel"))
    for i, rasd in enumerate(rasds):
        where = f"ResourceSettings[{i}] ({rasd.classname})"
        rtype = resource_type(rasd, where)
        if rtype == MEMORY:
            vm.mem = memory_from_rasd(rasd, where)
        elif rtype == PROCESSOR:
            continue
        elif rtype in ETHERNET:
            vm.interfaces.append(interface_from_rasd(rasd, where, vm))
        elif rtype in STORAGE:
            vm.filesystem = filesystem_from_rasd(rasd, where) or vm.filesystem
        else:
            raise _bad(f"{where}: ResourceType {rtype} is not supported "
                       "(3 processor, 4 memory, 10/33 ethernet, 17/19/31 storage)")
    return vm


def resource_type(rasd: CIMInstance, where: str) -> int:
    rtype = rasd["ResourceType"] if "ResourceType" in rasd.properties else None
    if rtype is None:
        raise _bad(f"{where} has no ResourceType")
    return int(rtype)


def memory_from_rasd(rasd: CIMInstance, where: str) -> str:
    """A memory RASD's VirtualQuantity in AllocationUnits as a VNUML mem ("1024M")."""
    quantity = _str(rasd, "VirtualQuantity")
    if quantity is None or not quantity.isdigit():
        raise _bad(f"{where}: memory needs VirtualQuantity")
    return f"{memory_mb(int(quantity), _str(rasd, 'AllocationUnits'))}M"


def filesystem_from_rasd(rasd: CIMInstance, where: str) -> Filesystem | None:
    """HostResource[0] and ResourceSubType of a storage RASD; None without HostResource."""
    images = _list(rasd, "HostResource")
    if not images:
        return None
    return Filesystem(images[0], filesystem_type(_str(rasd, "ResourceSubType"), where))


def filesystem_type(value: str | None, where: str) -> str:
    if value is not None and value not in FILESYSTEM_TYPES:
        raise _bad(f"{where}: filesystem type {value!r} is not one of "
                   f"{', '.join(FILESYSTEM_TYPES)}")
    return value or "cow"


def interface_from_rasd(rasd: CIMInstance, where: str, vm: VM) -> Interface:
    """An <if> from an Ethernet port RASD; ``vm``'s interfaces give the ids already used."""
    conn = _list(rasd, "Connection")
    net = conn[0] if conn else _str(rasd, "NetworkName")
    if not net:
        raise _bad(f"{where}: an Ethernet port needs Connection (the net name)")
    used = {i.id for i in vm.interfaces}
    index = rasd["InterfaceIndex"] if "InterfaceIndex" in rasd.properties else None
    ifid = int(index) if index is not None else next(i for i in range(1, 10000) if i not in used)
    if ifid in used:
        raise _bad(f"{where}: InterfaceIndex {ifid} is used twice")
    mac = _str(rasd, "Address")
    if mac and not _MAC.match(mac):
        raise _bad(f"{where}: Address {mac!r} is not a MAC address")
    if mac and ":" not in mac:
        mac = ":".join(mac.replace("-", "")[i:i + 2] for i in range(0, 12, 2))
    addresses = []
    for text in _list(rasd, "IPAddresses"):
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise _bad(f"{where}: IPAddresses entry {text!r} is not an address/prefix") from None
        addresses.append(Address(iface.version, str(iface.with_prefixlen)))
    return Interface(id=ifid, net=net, mac=mac.lower() if mac else None, addresses=addresses)


MAX_ENVIRONMENT_BYTES = 1 << 20


def ovf_environment(vssd: CIMInstance) -> bytes | None:
    """The VSSD's OvfEnvironment (a DSP0243 environment document for the VM's /ovf-env.xml),
    checked: well-formed, parsed without entities, an ovfenv Environment, at most 1 MiB."""
    text = _str(vssd, "OvfEnvironment")
    if text is None:
        return None
    data = text.encode("utf-8")
    if len(data) > MAX_ENVIRONMENT_BYTES:
        raise _bad(f"OvfEnvironment is larger than {MAX_ENVIRONMENT_BYTES} bytes")
    try:
        root = parse_bytes(data, "OvfEnvironment").getroot()
    except InputError as exc:
        raise _bad(f"OvfEnvironment is not a usable XML document: {exc}") from None
    if root.tag != f"{{{OVF_ENVIRONMENT}}}Environment":
        raise _bad("OvfEnvironment must be an OVF environment document "
                   f"(<Environment xmlns=\"{OVF_ENVIRONMENT}\">)")
    return data


def _str(inst: CIMInstance, name: str) -> str | None:
    if name not in inst.properties or inst[name] is None:
        return None
    return str(inst[name]).strip() or None


def _list(inst: CIMInstance, name: str) -> list[str]:
    if name not in inst.properties or inst[name] is None:
        return []
    value = inst[name]
    return [str(v) for v in (value if isinstance(value, list) else [value]) if v]
