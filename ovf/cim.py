"""OVF virtual systems -> CIM settings: what ``DefineSystem`` takes to add a VM to a scenario.

``to_cim`` returns an ``EDIV_VirtualSystemSettingData`` and the RASDs of one system as
``pywbem.CIMInstance`` objects (no paths: they travel as embedded instances). The mapping is
documented in docs/ovf.md:

- VSSD: ElementName = VirtualSystemIdentifier = VM name; VirtualSystemType "uml" or
  "container"; Filesystem / FilesystemType / Kernel when the VM has them.
- EDIV_ProcessorRASD: ResourceType 3, VirtualQuantity = CPUs of the OVF system (VNUML has no
  CPU count; the value is informative), AllocationUnits "count".
- EDIV_MemoryRASD: ResourceType 4, VirtualQuantity in MiB, AllocationUnits "byte*2^20".
- EDIV_EthernetPortAllocationSettingData per interface: ResourceType 10 (as in OVF),
  Connection = [net], NetworkName = net, InterfaceIndex = ``<if id>``, Address = MAC,
  IPAddresses = addresses in prefix notation.
- EDIV_StorageAllocationSettingData for the root filesystem: ResourceType 31 (logical disk),
  HostResource = [image path], ResourceSubType = cow | direct | hostfs.
"""

from __future__ import annotations

import ipaddress

from pywbem import CIMInstance, CIMProperty, Uint16, Uint32, Uint64

from ediv.errors import InputError
from ediv.scenario.model import VM, Address, Filesystem

from . import envelope as m
from .environment import environment_xml, system_properties
from .export import mem_mb
from .requirements import eulas
from .translate import translate_systems, vm_name

VSSD_CLASS = "EDIV_VirtualSystemSettingData"
PROCESSOR_CLASS = "EDIV_ProcessorRASD"
MEMORY_CLASS = "EDIV_MemoryRASD"
ETHERNET_CLASS = "EDIV_EthernetPortAllocationSettingData"
STORAGE_CLASS = "EDIV_StorageAllocationSettingData"
RT_LOGICAL_DISK = 31


def to_cim(envelope: m.Envelope, system_id: str | None = None,
           net_map: dict[str, str] | None = None, *, vm_type: str = "uml",
           image_path: str | None = None,
           eula_accepted: bool = False) -> tuple[CIMInstance, list[CIMInstance]]:
    """(VSSD, [RASD...]) of the system ``system_id`` (its ovf:id or VM name; may be omitted
    when the package has one system). ``image_path``: the converted root filesystem, when
    the caller has materialized it (``ediv.ovf.importer``). The deployment option in
    effect (``Envelope.select_configuration``) goes in OvfDeploymentOption, the user's
    answer to the package's EULAs in OvfEulaAccepted (only when it has some)."""
    pairs = translate_systems(envelope, net_map, vm_type=vm_type)
    if not pairs:
        raise InputError("the descriptor has no VirtualSystem")
    if system_id is None:
        if len(pairs) > 1:
            raise InputError("the package has several systems ("
                             + ", ".join(vm.name for _vs, vm in pairs) + "); name one")
        vs, vm = pairs[0]
    else:
        found = [(vs, vm) for vs, vm in pairs if system_id in (vs.id, vm.name, vm_name(vs))]
        if not found:
            raise InputError(f"no system {system_id!r} in the package (it has: "
                             + ", ".join(vm.name for _vs, vm in pairs) + ")")
        vs, vm = found[0]
    if image_path is not None:
        vm.filesystem = Filesystem(path=image_path, type="cow")
    items = vs.items(envelope.default_configuration())
    cpus = next((i.virtual_quantity for i in items if i.resource_type == m.RT_PROCESSOR
                 and i.virtual_quantity), 1)
    vssd, rasds = vm_to_cim(vm, cpus=cpus)
    properties = system_properties(envelope, vs)
    if properties:  # the server stores it and the VM finds it as /ovf-env.xml
        vssd["OvfEnvironment"] = environment_xml(vm.name, properties).decode("utf-8")
    if envelope.default_configuration() is not None:
        vssd["OvfDeploymentOption"] = envelope.default_configuration()
    if eulas(envelope):
        vssd["OvfEulaAccepted"] = bool(eula_accepted)
    return vssd, rasds


def vm_to_cim(vm: VM, *, cpus: int = 1) -> tuple[CIMInstance, list[CIMInstance]]:
    """(VSSD, [RASD...]) of a VNUML VM."""
    vssd = CIMInstance(VSSD_CLASS, properties={
        "InstanceID": f"ediv:{vm.name}",
        "ElementName": vm.name,
        "VirtualSystemIdentifier": vm.name,
        "VirtualSystemType": vm.type or "uml",
    })
    if vm.filesystem is not None:
        vssd["Filesystem"] = vm.filesystem.path
        vssd["FilesystemType"] = vm.filesystem.type
    if vm.kernel is not None:
        vssd["Kernel"] = vm.kernel.path
    rasds = [CIMInstance(PROCESSOR_CLASS, properties={
        "InstanceID": f"ediv:{vm.name}:cpu", "ElementName": f"{cpus} virtual CPU",
        "ResourceType": Uint16(m.RT_PROCESSOR), "VirtualQuantity": Uint64(cpus),
        "AllocationUnits": "count"})]
    mem = mem_mb(vm.mem)
    if mem is not None:
        rasds.append(CIMInstance(MEMORY_CLASS, properties={
            "InstanceID": f"ediv:{vm.name}:mem", "ElementName": f"{mem} MB of memory",
            "ResourceType": Uint16(m.RT_MEMORY), "VirtualQuantity": Uint64(mem),
            "AllocationUnits": "byte*2^20"}))
    for iface in vm.interfaces:
        port = CIMInstance(ETHERNET_CLASS, properties={
            "InstanceID": f"ediv:{vm.name}:if{iface.id}",
            "ElementName": iface.name or f"eth{iface.id}",
            "ResourceType": Uint16(m.RT_ETHERNET),
            "InterfaceIndex": Uint32(iface.id),
            "NetworkName": iface.net,
            "Connection": [iface.net]})
        port.properties["IPAddresses"] = CIMProperty(
            "IPAddresses", [address_text(a) for a in iface.addresses], type="string",
            is_array=True)
        if iface.mac:
            port["Address"] = iface.mac
        rasds.append(port)
    if vm.filesystem is not None:
        rasds.append(CIMInstance(STORAGE_CLASS, properties={
            "InstanceID": f"ediv:{vm.name}:disk", "ElementName": "root filesystem",
            "ResourceType": Uint16(RT_LOGICAL_DISK), "HostResource": [vm.filesystem.path],
            "ResourceSubType": vm.filesystem.type}))
    return vssd, rasds


def address_text(addr: Address) -> str:
    """An ``<ipv4>``/``<ipv6>`` in prefix notation (mask "255.255.255.0" -> "/24")."""
    text = addr.address
    if "/" not in text and addr.mask:
        mask = addr.mask.lstrip("/")
        text = f"{text}/{mask}"
    try:
        return ipaddress.ip_interface(text).with_prefixlen
    except ValueError:
        return text
