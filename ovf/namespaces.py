"""Namespaces of OVF descriptors: the envelope versions and the usual vendor extensions."""

from __future__ import annotations

OVF_1 = "http://schemas.dmtf.org/ovf/envelope/1"
OVF_2 = "http://schemas.dmtf.org/ovf/envelope/2"
OVF_09_VMWARE = "http://www.vmware.com/schema/ovf/1/envelope"
OVF_DRAFT = "http://schemas.dmtf.org/ovf/envelope"  # pre-1.0 DMTF drafts, no version
OVF_1_OVIRT = OVF_1 + "/"  # oVirt/RHV and virt-v2v -o ovirt write a trailing slash
OVF_ENVIRONMENT = "http://schemas.dmtf.org/ovf/environment/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
XML = "http://www.w3.org/XML/1998/namespace"

# Root namespace -> (ovf_version, dialect).
ENVELOPE_NAMESPACES: dict[str, tuple[str, str | None]] = {
    OVF_1: ("1.0", None),
    OVF_2: ("2.0", None),
    OVF_09_VMWARE: ("0.9", None),
    OVF_1_OVIRT: ("1.0", "ovirt"),
    OVF_DRAFT: ("0.9", "draft"),
}

# Prefixes real descriptors use, for undeclared-prefix repair and for naming extensions.
WELL_KNOWN_PREFIXES: dict[str, str] = {
    "ovf": OVF_1,
    "ovfstr": OVF_1,
    "ovfenv": OVF_ENVIRONMENT,
    "rasd": RASD,
    "vssd": VSSD,
    "cim": "http://schemas.dmtf.org/wbem/wscim/1/common",
    "epasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
    "CIM_EthernetPortAllocationSettingData",
    "sasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData",
    "pasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
    "CIM_ProcessorAllocationSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
    "vbox": "http://www.virtualbox.org/ovf/machine",
    "ovirt": "http://www.ovirt.org/ovf",
    "xenovf": "http://schemas.citrix.com/ovf/envelope/1",
    "xci": "http://www.citrix.com/xenclient/ovf/1",
    "vcloud": "http://www.vmware.com/vcloud/v1.5",
    "xsi": XSI,
    "xs": XS,
}
PREFIX_OF = {uri: prefix for prefix, uri in reversed(WELL_KNOWN_PREFIXES.items())}
