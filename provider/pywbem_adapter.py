"""The one place that uses pywbem's private modules: its DSP0201 element parser.

The request body is parsed by ``ediv.xmlsafe`` (hardened lxml); the resulting tree is handed
to pywbem's TupleParser, which turns CIM-XML elements into pywbem objects (CIMInstanceName,
CIMInstance, CIMClass, typed values...). Keeping the import here means a pywbem upgrade that
moves these internals breaks one small module.

Also re-exported: ``atomic_to_cim_xml`` (DSP0201 text of a scalar value), used by the fast
instance writer in ``cimxml``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from pywbem._cim_types import atomic_to_cim_xml
from pywbem._exceptions import CIMXMLParseError, XMLParseError
from pywbem._tupleparse import TupleParser

from ediv import xmlsafe
from ediv.errors import InputError

__all__ = [
    "CIMXMLParseError", "InputError", "MultipleRequests", "TupleParser", "UnsupportedVersion",
    "XMLParseError",
    "atomic_to_cim_xml", "parse_cim_message", "to_tupletree",
]


class MultipleRequests(Exception):
    """A MULTIREQ message (DSP0200 lets a server refuse them)."""


class UnsupportedVersion(Exception):
    """A CIMVERSION, DTDVERSION or PROTOCOLVERSION this server does not speak (DSP0200 501)."""

    def __init__(self, cimerror_header: str, message: str):
        super().__init__(message)
        self.cimerror_header = cimerror_header


# attribute -> (element path from CIM, the one major version accepted, CIMError header)
_VERSIONS = (
    ("CIMVERSION", ".", "2", "unsupported-cim-version"),
    ("DTDVERSION", ".", "2", "unsupported-dtd-version"),
    ("PROTOCOLVERSION", "MESSAGE", "1", "unsupported-protocol-version"),
)


def _check_versions(root: etree._Element) -> None:
    for attr, where, major, header in _VERSIONS:
        elem = root if where == "." else root.find(where)
        value = elem.get(attr) if elem is not None else None
        if value is not None and value.strip().split(".")[0] != major:
            raise UnsupportedVersion(header, f"{attr}={value!r} (this server speaks {major}.x)")


TupleTree = tuple[str, dict[str, str], list[Any]]


def to_tupletree(elem: etree._Element) -> TupleTree:
    """lxml element -> pywbem tuple tree ``(name, attrs, children-and-text)``."""
    children: list[Any] = []
    if elem.text:
        children.append(elem.text)
    for child in elem:
        if isinstance(child.tag, str):
            children.append(to_tupletree(child))
        if child.tail:
            if children and isinstance(children[-1], str):
                children[-1] += child.tail
            else:
                children.append(child.tail)
    return elem.tag, dict(elem.attrib), children


def _check_embedded(root: etree._Element) -> None:
    # pywbem parses embedded objects with its own SAX parser: let xmlsafe see them first.
    for value in root.iter("VALUE", "VALUE.ARRAY"):
        parent = value.getparent()
        if parent is not None and (parent.get("EmbeddedObject") or parent.get("EMBEDDEDOBJECT")):
            for text in value.itertext():
                if text.strip():
                    xmlsafe.parse_bytes(text.encode("utf-8"), "<embedded object>")


def _plain_method_parameters(root: etree._Element) -> None:
    """Extrinsic method parameters keep embedded objects as text: the method decides how to
    read them (CIM-XML or MOF, as clients send either) and reports a bad one as an invalid
    parameter instead of a request the server cannot read."""
    for param in root.iterfind("MESSAGE/SIMPLEREQ/METHODCALL/PARAMVALUE"):
        for attr in ("EmbeddedObject", "EMBEDDEDOBJECT"):
            param.attrib.pop(attr, None)


def parse_cim_message(body: bytes) -> tuple:
    """Parse a CIM-XML request body into pywbem's nested tuples (see TupleParser.parse_cim).

    Raises InputError for XML that is not well-formed or not safe, UnsupportedVersion for
    a CIM/DTD/protocol version other than 2.x/2.x/1.x, MultipleRequests for a MULTIREQ,
    CIMXMLParseError for XML that is not valid CIM-XML.
    """
    root = xmlsafe.parse_bytes(body, "<request>").getroot()
    if root.tag == "CIM":
        _check_versions(root)
    if root.find("MESSAGE/MULTIREQ") is not None:
        raise MultipleRequests("MULTIREQ is not supported")
    _plain_method_parameters(root)
    _check_embedded(root)
    return TupleParser().parse_cim(to_tupletree(root))
