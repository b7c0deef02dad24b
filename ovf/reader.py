"""Read an OVF descriptor (0.9, 1.x, 2.x, oVirt dialect) into the ``envelope`` model.

Elements and attributes are matched by local name, in any order: real descriptors mix
prefixed, default-namespace and namespace-less elements (oVirt), and 0.9 types its sections
with ``xsi:type`` instead of naming them. Sections the model does not cover are kept as
``Extension`` records; an unknown one that does not say ``ovf:required="false"`` is reported,
since DSP0243 says a consumer that does not understand a required section must not deploy.
"""

from __future__ import annotations

from lxml import etree

from ediv.errors import Diagnostic, InputError

from . import envelope as m
from .edivsection import EDIV_OVF, SECTION, parse_section
from .namespaces import ENVELOPE_NAMESPACES, OVF_1, PREFIX_OF, XML, XS, XSI
from .units import byte_multiplier, parse_int
from .xmlload import load_descriptor

# Sections defined by DSP0243 (any version) and understood or knowingly skipped here.
DMTF_SECTIONS = frozenset({
    "References", "DiskSection", "NetworkSection", "DeploymentOptionSection",
    "VirtualSystem", "VirtualSystemCollection", "VirtualHardwareSection", "ProductSection",
    "OperatingSystemSection", "EulaSection", "AnnotationSection", "StartupSection",
    "ResourceAllocationSection", "InstallSection", "EnvironmentFilesSection",
    "BootDeviceSection", "SharedDiskSection", "ScaleOutSection", "PlacementGroupSection",
    "PlacementSection", "EncryptionSection", "Strings", "Info", "Name",
})
# Attributes in these namespaces never carry OVF data.
_FOREIGN_ATTR_NS = (XSI, XS, XML)


def read_descriptor(data: bytes, source: str = "<descriptor>") -> m.Envelope:
    """Parse descriptor bytes into an Envelope; raises InputError when it is not OVF."""
    root, warnings = load_descriptor(data, source)
    env = read_envelope(root, source)
    env.warnings[0:0] = warnings
    return env


def read_envelope(root: etree._Element, source: str = "<descriptor>") -> m.Envelope:
    qname = etree.QName(root)
    namespace = qname.namespace or ""
    if qname.localname != "Envelope":
        raise InputError(Diagnostic(source, root.sourceline or 0,
                                    f"not an OVF descriptor: root element is <{qname.localname}>"))
    early: list[str] = []
    if not namespace:
        # ovftool 3.5 wrote namespace-less elements once, with xmlns:ovf declared on the root.
        declared = [uri for uri in root.nsmap.values() if uri in ENVELOPE_NAMESPACES]
        if declared:
            namespace = declared[0]
            early.append(f"root <Envelope> is in no namespace; read as {namespace} "
                         "(declared on it for attributes)")
    if namespace not in ENVELOPE_NAMESPACES:
        raise InputError(Diagnostic(source, root.sourceline or 0,
                                    f"unknown OVF envelope namespace {namespace!r}"))
    version, dialect = ENVELOPE_NAMESPACES[namespace]
    env = m.Envelope(ovf_version=version, namespace=namespace,
                     declared_version=_attr(root, "version"), dialect=dialect, warnings=early)
    if dialect == "ovirt":
        env.warnings.append("oVirt dialect (envelope namespace with a trailing slash): "
                            "read as OVF 1.0, engine-specific elements ignored")
    elif dialect == "draft":
        env.warnings.append("pre-1.0 DMTF draft envelope namespace: read as OVF 0.9")
    _Reader(env, source).read_root(root)
    return env


class _Reader:
    def __init__(self, env: m.Envelope, source: str):
        self.env = env
        self.source = source

    def warn(self, el: etree._Element | None, message: str) -> None:
        line = el.sourceline if el is not None else None
        self.env.warnings.append(f"line {line}: {message}" if line else message)

    # -- envelope level -------------------------------------------------------------------
    def read_root(self, root: etree._Element) -> None:
        contents = []
        for el in _elements(root):
            kind = _section_kind(el)
            if kind in ("VirtualSystem", "VirtualSystemCollection"):
                contents.append(el)
            elif not self.read_shared(el, kind):
                self.other(el, kind, self.env.extensions)
        if len(contents) > 1:
            self.warn(contents[1], f"{len(contents)} top-level VirtualSystem/Collection "
                                   "elements; only the first is the envelope's content")
        if contents:
            self.env.content = self.read_content(contents[0])
        self._check_references()

    def read_shared(self, el: etree._Element, kind: str) -> bool:
        """Sections that may appear at any level in real files; True when handled."""
        if kind == "References":
            self.env.files.extend(self.read_file(f) for f in _children(el, "File"))
        elif kind == "DiskSection":
            self.env.disks.extend(self.read_disk(d) for d in _children(el, "Disk"))
        elif kind == "NetworkSection":
            for net in _children(el, "Network"):
                name = _attr(net, "name")
                if name is None:
                    self.warn(net, "Network without ovf:name ignored")
                else:
                    self.env.networks.append(m.Network(name, _text(net, "Description")))
        elif kind == "DeploymentOptionSection":
            for conf in _children(el, "Configuration"):
                self.env.deployment_options.append(m.DeploymentOption(
                    id=_attr(conf, "id") or "", label=_text(conf, "Label"),
                    description=_text(conf, "Description"),
                    default=_bool(_attr(conf, "default"), False)))
        elif kind in ("Strings", "Info", "Name"):
            pass
        else:
            return False
        return True

    def other(self, el: etree._Element, kind: str, into: list[m.Extension]) -> None:
        """A section this level does not model: keep its name; report if required."""
        qname = etree.QName(el)
        ns = qname.namespace
        prefix = PREFIX_OF.get(ns or "", el.prefix)
        name = f"{prefix}:{kind}" if prefix else kind
        required = _bool(_attr(el, "required"), True)
        into.append(m.Extension(name=name, namespace=ns, required=required,
                                line=el.sourceline or 0))
        if kind in DMTF_SECTIONS:
            return
        in_ovf_ns = ns is None or ns == self.env.namespace or ns == OVF_1
        if self.env.dialect == "ovirt" and in_ovf_ns and not kind.endswith("Section"):
            return  # oVirt engine fields (Name, TemplateId, ...): part of the dialect
        if required:
            self.env.unknown_required.append(name)
            self.warn(el, f"unknown section {name} is required (no ovf:required=\"false\"); "
                          "a strict OVF consumer would refuse to deploy it")

    def read_file(self, el: etree._Element) -> m.FileRef:
        f = m.FileRef(id=_attr(el, "id") or "", href=_attr(el, "href") or "",
                      size=parse_int(_attr(el, "size")),
                      compression=_attr(el, "compression"),
                      chunk_size=parse_int(_attr(el, "chunkSize")))
        if not f.href:
            self.warn(el, f"File {f.id!r} has no ovf:href")
        if _attr(el, "size") is not None and f.size is None:
            self.warn(el, f"File {f.id!r}: ovf:size {_attr(el, 'size')!r} is not a number")
        if f.compression not in (None, "", "identity", "gzip"):
            self.warn(el, f"File {f.id!r}: unknown compression {f.compression!r}")
        return f

    def read_disk(self, el: etree._Element) -> m.Disk:
        d = m.Disk(disk_id=_attr(el, "diskId") or "", file_ref=_attr(el, "fileRef") or None,
                   capacity=_attr(el, "capacity"),
                   capacity_units=_attr(el, "capacityAllocationUnits"),
                   populated_size=parse_int(_attr(el, "populatedSize")),
                   format=_attr(el, "format"), parent_ref=_attr(el, "parentRef") or None)
        number = parse_int(d.capacity)
        unit = byte_multiplier(d.capacity_units) if d.capacity_units else 1
        if d.capacity is None:
            self.warn(el, f"Disk {d.disk_id!r} has no ovf:capacity")
        elif number is None:
            self.warn(el, f"Disk {d.disk_id!r}: capacity {d.capacity!r} is not a number "
                          "(property reference or placeholder); size unknown")
        elif unit is None:
            self.warn(el, f"Disk {d.disk_id!r}: unknown capacityAllocationUnits "
                          f"{d.capacity_units!r}")
        else:
            d.capacity_bytes = number * unit
        return d

    # -- virtual systems -------------------------------------------------------------------
    def read_content(self, el: etree._Element) -> m.VirtualSystem | m.VirtualSystemCollection:
        kind = _section_kind(el)
        node: m.VirtualSystem | m.VirtualSystemCollection
        if kind == "VirtualSystemCollection":
            node = m.VirtualSystemCollection()
        else:
            node = m.VirtualSystem()
        node.id = _attr(el, "id")
        node.line = el.sourceline or 0
        for child in _elements(el):
            ckind = _section_kind(child)
            if ckind == "Info":
                node.info = _own_text(child)
            elif ckind == "Name":
                node.name = _own_text(child)
            elif ckind in ("VirtualSystem", "VirtualSystemCollection"):
                if isinstance(node, m.VirtualSystemCollection):
                    node.members.append(self.read_content(child))
                else:
                    self.warn(child, f"{ckind} inside a VirtualSystem ignored")
            elif ckind == "VirtualHardwareSection" and isinstance(node, m.VirtualSystem):
                node.hardware.append(self.read_hardware(child))
            elif ckind == "ProductSection":
                node.products.append(self.read_product(child))
            elif ckind == "OperatingSystemSection":
                node.operating_system = m.OperatingSystem(
                    id=parse_int(_attr(child, "id")), version=_attr(child, "version"),
                    description=_text(child, "Description"), os_type=_attr(child, "osType"))
            elif ckind == "EulaSection":
                node.eulas.append(_text(child, "License") or "")
            elif ckind == "AnnotationSection":
                node.annotation = _text(child, "Annotation")
            elif ckind == SECTION and etree.QName(child).namespace == EDIV_OVF:
                self.env.ediv = parse_section(child)
            elif ckind == "StartupSection" and isinstance(node, m.VirtualSystemCollection):
                node.startup.extend(self.read_startup(child))
            elif not self.read_shared(child, ckind):
                self.other(child, ckind, node.extensions)
        return node

    def read_startup(self, el: etree._Element) -> list[m.StartupEntry]:
        out = []
        for item in _children(el, "Item"):
            ident, order = _attr(item, "id"), parse_int(_attr(item, "order"))
            if not ident or order is None or order < 0:
                self.warn(item, "StartupSection Item without ovf:id or a valid ovf:order "
                                "ignored")
                continue
            out.append(m.StartupEntry(ident, order, parse_int(_attr(item, "startDelay")),
                                      parse_int(_attr(item, "stopDelay"))))
        return out

    def read_hardware(self, el: etree._Element) -> m.VirtualHardware:
        hw = m.VirtualHardware(id=_attr(el, "id"), transport=_attr(el, "transport"))
        for child in _elements(el):
            local = etree.QName(child).localname
            if local == "System":
                hw.system_type = _text(child, "VirtualSystemType")
                if hw.id is None:
                    hw.id = _text(child, "VirtualSystemIdentifier")
            elif local in ("Item", "EthernetPortItem", "StorageItem"):
                hw.items.append(self.read_item(child, local))
        return hw

    def read_item(self, el: etree._Element, kind: str) -> m.Item:
        rtype_text = _text(el, "ResourceType")
        item = m.Item(
            resource_type=parse_int(rtype_text),
            instance_id=_text(el, "InstanceID") or _text(el, "InstanceId"),
            element_name=_text(el, "ElementName") or _text(el, "Caption"),
            description=_text(el, "Description"),
            resource_subtype=_text(el, "ResourceSubType"),
            virtual_quantity=parse_int(_text(el, "VirtualQuantity")),
            allocation_units=_text(el, "AllocationUnits") or _text(el, "VirtualQuantityUnits"),
            connections=[t for t in _texts(el, "Connection") if t],
            host_resources=[t for t in _texts(el, "HostResource") if t],
            parent=_text(el, "Parent"), address=_text(el, "Address"),
            address_on_parent=_text(el, "AddressOnParent"),
            automatic_allocation=_bool(_text(el, "AutomaticAllocation"), None),
            configurations=(_attr(el, "configuration") or "").split(),
            required=_bool(_attr(el, "required"), True),
            bound=_attr(el, "bound"), kind=kind, line=el.sourceline or 0)
        if item.resource_type is None:
            self.warn(el, f"{kind} {item.instance_id or '?'} has no valid ResourceType "
                          f"({rtype_text!r}); ignored for sizing")
        return item

    def read_product(self, el: etree._Element) -> m.Product:
        p = m.Product(product_class=_attr(el, "class"), instance=_attr(el, "instance"),
                      product=_text(el, "Product"), vendor=_text(el, "Vendor"),
                      version=_text(el, "Version"), full_version=_text(el, "FullVersion"),
                      product_url=_text(el, "ProductUrl"), vendor_url=_text(el, "VendorUrl"))
        for prop in el.iter():
            if not isinstance(prop.tag, str) or etree.QName(prop).localname != "Property":
                continue
            key = _attr(prop, "key")
            if not key:
                self.warn(prop, "Property without ovf:key ignored")
                continue
            values = {}
            for v in _children(prop, "Value"):
                conf, val = _attr(v, "configuration"), _attr(v, "value")
                if conf is not None and val is not None:
                    for c in conf.split():
                        values[c] = val
            p.properties.append(m.Property(
                key=key, type=_attr(prop, "type"), value=_attr(prop, "value"),
                user_configurable=_bool(_attr(prop, "userConfigurable"), False),
                qualifiers=_attr(prop, "qualifiers"), label=_text(prop, "Label"),
                description=_text(prop, "Description"),
                password=_bool(_attr(prop, "password"), False), values=values,
                product_class=p.product_class, product_instance=p.instance))
        return p

    def _check_references(self) -> None:
        ids = {f.id for f in self.env.files}
        for d in self.env.disks:
            if d.file_ref and d.file_ref not in ids:
                self.warn(None, f"Disk {d.disk_id!r} refers to file {d.file_ref!r} "
                                "which is not in References")
        known = {n.name for n in self.env.networks}
        for vs in self.env.systems():
            for hw in vs.hardware:
                for item in hw.items:
                    for conn in item.connections:
                        if known and conn not in known:
                            self.warn(None, f"system {vs.id!r}: NIC connected to {conn!r}, "
                                            "which is not in NetworkSection")


# -- small XML helpers (local-name based) ---------------------------------------------------
def _elements(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _children(el: etree._Element, local: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == local]


def _own_text(el: etree._Element) -> str | None:
    text = (el.text or "").strip()
    return text or None


def _text(el: etree._Element, local: str) -> str | None:
    for c in _children(el, local):
        return _own_text(c)
    return None


def _texts(el: etree._Element, local: str) -> list[str]:
    return [(c.text or "").strip() for c in _children(el, local)]


def _attr(el: etree._Element, local: str) -> str | None:
    """Attribute by local name, whatever its prefix (ovf:, none, or a stray one)."""
    value = el.get(local)
    if value is not None:
        return value
    for key, val in el.attrib.items():
        if key.endswith("}" + local) and not key.startswith(tuple("{" + n for n in
                                                                  _FOREIGN_ATTR_NS)):
            return val
    return None


def _bool(text: str | None, default):
    if text is None:
        return default
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    return default


def _section_kind(el: etree._Element) -> str:
    """Local name, or for 0.9 ``<Section xsi:type="ovf:DiskSection_Type">`` the typed name."""
    local = etree.QName(el).localname
    if local in ("Section", "Content"):
        typed = el.get(f"{{{XSI}}}type") or el.get(f"{{{XS}}}name")
        if typed:
            name = typed.rsplit(":", 1)[-1]
            return name.removesuffix("_Type")
    return local
