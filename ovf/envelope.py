"""The OVF envelope as plain dataclasses, independent of the XML it was read from.

The reader (``ediv.ovf.reader``) fills these from any OVF dialect (0.9, 1.x, 2.x, oVirt);
the inspector, the translators and the importers only ever see this model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# CIM_ResourceAllocationSettingData.ResourceType values used by OVF descriptors.
RT_PROCESSOR = 3
RT_MEMORY = 4
RT_IDE_CONTROLLER = 5
RT_SCSI_CONTROLLER = 6
RT_ETHERNET = 10
RT_FLOPPY = 14
RT_CDROM = 15
RT_DVD = 16
RT_DISK = 17
RT_SATA_CONTROLLER = 20
RT_USB_CONTROLLER = 23
DISK_DRIVE_TYPES = frozenset({RT_DISK, 19, 31})  # disk drive, storage extent, logical disk
CONTROLLER_TYPES = frozenset({RT_IDE_CONTROLLER, RT_SCSI_CONTROLLER, RT_SATA_CONTROLLER, 7, 8})


@dataclass
class FileRef:
    """A ``References/File``: a file of the package (or an external URL)."""

    id: str
    href: str
    size: int | None = None
    compression: str | None = None  # "gzip" when the stored file is compressed
    chunk_size: int | None = None  # the file is stored as href.000000000, href.000000001, ...


@dataclass
class Disk:
    """A ``DiskSection/Disk``: a virtual disk, backed by a file or blank."""

    disk_id: str
    file_ref: str | None = None
    capacity: str | None = None  # as written (may be "${prop}" or a placeholder)
    capacity_units: str | None = None  # ovf:capacityAllocationUnits, e.g. "byte * 2^30"
    capacity_bytes: int | None = None  # resolved, None when it cannot be known
    populated_size: int | None = None
    format: str | None = None  # format URI, e.g. ...vmdk.html#streamOptimized
    parent_ref: str | None = None


@dataclass
class Network:
    name: str
    description: str | None = None


@dataclass
class Item:
    """One resource of a VirtualHardwareSection (Item, EthernetPortItem or StorageItem)."""

    resource_type: int | None
    instance_id: str | None = None
    element_name: str | None = None
    description: str | None = None
    resource_subtype: str | None = None
    virtual_quantity: int | None = None
    allocation_units: str | None = None
    connections: list[str] = field(default_factory=list)
    host_resources: list[str] = field(default_factory=list)
    parent: str | None = None
    address: str | None = None
    address_on_parent: str | None = None
    automatic_allocation: bool | None = None
    configurations: list[str] = field(default_factory=list)  # ovf:configuration, empty = all
    required: bool = True
    bound: str | None = None  # ovf:bound: min | max | normal (ranges), None otherwise
    kind: str = "Item"
    line: int = 0

    def applies_to(self, configuration: str | None) -> bool:
        """True when the item belongs to deployment option ``configuration``."""
        if self.bound not in (None, "normal"):
            return False
        return not self.configurations or configuration in self.configurations


@dataclass
class VirtualHardware:
    id: str | None = None
    system_type: str | None = None  # vssd:VirtualSystemType, e.g. "vmx-07"
    transport: str | None = None  # ovf:transport, e.g. "iso com.vmware.guestInfo"
    items: list[Item] = field(default_factory=list)


@dataclass
class Property:
    """A ProductSection property; ``values`` holds per-configuration overrides."""

    key: str
    type: str | None = None
    value: str | None = None
    user_configurable: bool = False
    qualifiers: str | None = None
    label: str | None = None
    description: str | None = None
    password: bool = False
    values: dict[str, str] = field(default_factory=dict)
    product_class: str | None = None
    product_instance: str | None = None
    override: str | None = None  # set at deploy time (--prop), checked by ediv.ovf.properties

    @property
    def full_key(self) -> str:
        """``class.key.instance`` as the OVF environment names it (DSP0243 9.5)."""
        parts = [p for p in (self.product_class, self.key, self.product_instance) if p]
        return ".".join(parts)

    def value_for(self, configuration: str | None) -> str | None:
        if self.override is not None:
            return self.override
        if configuration is not None and configuration in self.values:
            return self.values[configuration]
        return self.value


@dataclass
class Product:
    product_class: str | None = None
    instance: str | None = None
    product: str | None = None
    vendor: str | None = None
    version: str | None = None
    full_version: str | None = None
    product_url: str | None = None
    vendor_url: str | None = None
    properties: list[Property] = field(default_factory=list)


@dataclass
class OperatingSystem:
    id: int | None = None  # CIM_OperatingSystem.OSType
    version: str | None = None
    description: str | None = None
    os_type: str | None = None  # vendor hint, e.g. vmw:osType="ubuntu64Guest"


@dataclass
class DeploymentOption:
    id: str
    label: str | None = None
    description: str | None = None
    default: bool = False


@dataclass
class Extension:
    """A section or element the reader does not model, kept by name."""

    name: str  # "prefix:local" when the prefix is known, else "{namespace}local"
    namespace: str | None
    required: bool
    line: int = 0


@dataclass
class _Content:
    id: str | None = None
    name: str | None = None
    info: str | None = None
    products: list[Product] = field(default_factory=list)
    eulas: list[str] = field(default_factory=list)
    annotation: str | None = None
    operating_system: OperatingSystem | None = None
    extensions: list[Extension] = field(default_factory=list)
    line: int = 0


@dataclass
class VirtualSystem(_Content):
    hardware: list[VirtualHardware] = field(default_factory=list)

    def items(self, configuration: str | None) -> list[Item]:
        """Items of the first hardware section under deployment option ``configuration``.

        An Item of that configuration replaces the generic Item with the same InstanceID,
        in the generic one's place (DSP0243 9.8, as ovftool and vSphere apply it)."""
        if not self.hardware:
            return []
        out: list[Item] = []
        where: dict[str, int] = {}
        for item in self.hardware[0].items:
            if not item.applies_to(configuration):
                continue
            key = item.instance_id
            if key is None or key not in where:
                if key is not None:
                    where[key] = len(out)
                out.append(item)
            elif item.configurations and not out[where[key]].configurations:
                out[where[key]] = item  # the configuration's own Item wins
            elif not item.configurations and out[where[key]].configurations:
                continue  # generic Item after the configuration's one
            else:
                out.append(item)  # a repeated InstanceID of the same kind: keep both
        return out


@dataclass
class StartupEntry:
    """A StartupSection Item: when member ``id`` starts (ascending ``order``)."""

    id: str
    order: int
    start_delay: int | None = None
    stop_delay: int | None = None


@dataclass
class VirtualSystemCollection(_Content):
    members: list[VirtualSystem | VirtualSystemCollection] = field(default_factory=list)
    startup: list[StartupEntry] = field(default_factory=list)


@dataclass
class Envelope:
    ovf_version: str  # "0.9" | "1.0" | "2.0", from the root namespace
    namespace: str
    declared_version: str | None = None  # ovf:version attribute, as written
    dialect: str | None = None  # "ovirt" | "draft" | None for the DMTF form
    files: list[FileRef] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    deployment_options: list[DeploymentOption] = field(default_factory=list)
    content: VirtualSystem | VirtualSystemCollection | None = None
    extensions: list[Extension] = field(default_factory=list)
    unknown_required: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    selected: str | None = None  # deployment option chosen by the user (select_configuration)
    ediv: Any = None  # ediv.ovf.edivsection.EdivScenario of packages ediv exported

    def systems(self) -> list[VirtualSystem]:
        """Every VirtualSystem, nested collections flattened in document order."""
        return list(_walk_systems(self.content))

    def products(self) -> list[Product]:
        """ProductSections of the whole tree (collections first, then their members)."""
        out: list[Product] = []
        stack = [self.content] if self.content is not None else []
        while stack:
            node = stack.pop(0)
            out.extend(node.products)
            if isinstance(node, VirtualSystemCollection):
                stack[0:0] = node.members
        return out

    def default_configuration(self) -> str | None:
        """The deployment option in effect: the one selected, else the package's default."""
        return self.selected or self.package_default()

    def package_default(self) -> str | None:
        """The DeploymentOptionSection's ovf:default="true" option, else its first."""
        for opt in self.deployment_options:
            if opt.default:
                return opt.id
        return self.deployment_options[0].id if self.deployment_options else None

    def select_configuration(self, name: str | None) -> None:
        """Use deployment option ``name`` (None: the package's default); ValueError naming
        the options when the package has no such option."""
        if name is None:
            self.selected = None
            return
        ids = [o.id for o in self.deployment_options]
        if name not in ids:
            have = ", ".join(ids) if ids else "none: the package has no DeploymentOptionSection"
            raise ValueError(f"no deployment option {name!r} (options: {have})")
        self.selected = name

    def file(self, file_id: str | None) -> FileRef | None:
        return next((f for f in self.files if f.id == file_id), None)

    def disk(self, disk_id: str) -> Disk | None:
        return next((d for d in self.disks if d.disk_id == disk_id), None)


def _walk_systems(node: VirtualSystem | VirtualSystemCollection | None) -> Iterator[VirtualSystem]:
    if isinstance(node, VirtualSystem):
        yield node
    elif isinstance(node, VirtualSystemCollection):
        for member in node.members:
            yield from _walk_systems(member)
