"""The OVF environment document (DSP0243 section 11): ProductSection properties for the guest.

ediv delivers it as ``/ovf-env.xml`` in the VM's root filesystem (a ``<filetree>`` run on
sequence ``on_boot``, see docs/ovf.md), the file an ``iso`` transport would carry::

    <Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
                 xmlns:ovfenv="http://schemas.dmtf.org/ovf/environment/1" ovfenv:id="router1">
      <PlatformSection><Kind>ediv</Kind>...</PlatformSection>
      <PropertySection><Property ovfenv:key="hostname" ovfenv:value="r1"/></PropertySection>
    </Environment>
"""

from __future__ import annotations

from lxml import etree

from ediv import xmlsafe

from . import envelope as m
from .namespaces import OVF_ENVIRONMENT, XSI

ENV_FILE = "ovf-env.xml"
PLATFORM_KIND = "ediv"
_NSMAP = {None: OVF_ENVIRONMENT, "ovfenv": OVF_ENVIRONMENT, "xsi": XSI}
_KEY = f"{{{OVF_ENVIRONMENT}}}key"
_VALUE = f"{{{OVF_ENVIRONMENT}}}value"
_ID = f"{{{OVF_ENVIRONMENT}}}id"


def system_properties(envelope: m.Envelope, system: m.VirtualSystem,
                      configuration: str | None = None) -> list[tuple[str, str]]:
    """(key, value) of the properties ``system`` sees: those of the collections that enclose
    it, then its own (DSP0243 9.5), under ``configuration`` (default: the envelope's)."""
    if configuration is None:
        configuration = envelope.default_configuration()
    chain = _ancestry(envelope.content, system) or [system]
    out: dict[str, str] = {}
    for node in chain:
        for product in node.products:
            for prop in product.properties:
                value = prop.value_for(configuration)
                out[prop.full_key] = "" if value is None else value
    return list(out.items())


def environment_xml(vm_id: str, properties: list[tuple[str, str]], *,
                    version: str | None = None, locale: str = "en") -> bytes:
    """The environment document for the VM ``vm_id``."""
    root = etree.Element(f"{{{OVF_ENVIRONMENT}}}Environment", nsmap=_NSMAP)
    root.set(_ID, vm_id)
    platform = etree.SubElement(root, f"{{{OVF_ENVIRONMENT}}}PlatformSection")
    for tag, text in (("Kind", PLATFORM_KIND), ("Version", version or _version()),
                      ("Vendor", "ediv"), ("Locale", locale)):
        etree.SubElement(platform, f"{{{OVF_ENVIRONMENT}}}{tag}").text = text
    section = etree.SubElement(root, f"{{{OVF_ENVIRONMENT}}}PropertySection")
    for key, value in properties:
        prop = etree.SubElement(section, f"{{{OVF_ENVIRONMENT}}}Property")
        prop.set(_KEY, key)
        prop.set(_VALUE, value)
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def read_environment(data: bytes, source: str = ENV_FILE) -> tuple[str | None, dict[str, str]]:
    """(ovfenv:id, {key: value}) of an environment document."""
    root = xmlsafe.parse_bytes(data, source).getroot()
    props = {p.get(_KEY): p.get(_VALUE) or "" for p in root.iter(f"{{{OVF_ENVIRONMENT}}}Property")
             if p.get(_KEY)}
    return root.get(_ID), props


def _ancestry(node: m.VirtualSystem | m.VirtualSystemCollection | None,
              target: m.VirtualSystem) -> list | None:
    if node is None:
        return None
    if node is target:
        return [node]
    if isinstance(node, m.VirtualSystemCollection):
        for member in node.members:
            below = _ancestry(member, target)
            if below is not None:
                return [node, *below]
    return None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ediv")
    except Exception:  # not installed (source tree): the environment is still valid
        return "0"
