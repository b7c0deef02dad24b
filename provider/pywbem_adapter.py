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

import pywbem
from lxml import etree
from pywbem._cim_types import atomic_to_cim_xml
from pywbem._exceptions import CIMXMLParseError, XMLParseError
from pywbem._tupleparse import TupleParser

from ediv import xmlsafe
from ediv.errors import InputError

__all__ = [
    "CIMXMLParseError", "InputError", "MultipleRequests", "TupleParser", "UnsupportedVersion",
    "XMLParseError",
    "atomic_to_cim_xml", "parse_cim_message", "parse_tree", "read_tree", "simple_imethodcall",
    "to_tupletree",
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
    return parse_tree(read_tree(body))


def read_tree(body: bytes) -> etree._Element:
    """The request's root element, the checks that come before element parsing done
    (safe XML, versions, no MULTIREQ); raises as ``parse_cim_message``."""
    root = xmlsafe.parse_bytes(body, "<request>").getroot()
    if root.tag == "CIM":
        _check_versions(root)
    if root.find("MESSAGE/MULTIREQ") is not None:
        raise MultipleRequests("MULTIREQ is not supported")
    return root


def parse_tree(root: etree._Element) -> tuple:
    """pywbem's element parser on a root from ``read_tree``."""
    _plain_method_parameters(root)
    _check_embedded(root)
    return TupleParser().parse_cim(to_tupletree(root))


# ---------------------------------------------------------------- the common requests, fast
#
# Most requests are an IMETHODCALL whose parameters are plain values, class names and
# instance names with KEYVALUE keys (GetInstance, the enumerations, associations, pulls).
# ``simple_imethodcall`` reads exactly those into the objects pywbem's parser would make
# (a third of a GetInstance's server time went to that parser); anything else -- another
# element, an attribute pywbem would refuse, stray text -- returns None and goes through
# pywbem, which then also gives its usual error. tests/provider/test_cimxml_codec.py
# compares both on many requests.

_FAST = TupleParser()
_BOOL_PARAMS = frozenset(("deepinheritance", "localonly", "includequalifiers",
                          "includeclassorigin"))


class _NotSimple(Exception):
    pass


def _attrs(elem: etree._Element, required: tuple[str, ...], optional: tuple[str, ...] = ()
           ) -> Any:
    attrib = elem.attrib
    for key in required:
        if key not in attrib:
            raise _NotSimple
    if len(attrib) > len(required):
        for key in attrib:
            if key not in required and key not in optional:
                raise _NotSimple
    return attrib


def _blank(text: str | None) -> None:
    if text and not text.isspace():
        raise _NotSimple


def _kids(elem: etree._Element) -> list[etree._Element]:
    """Element children; refuses text between them (pywbem would) and comments or PIs."""
    _blank(elem.text)
    out = []
    for child in elem:
        if not isinstance(child.tag, str):
            raise _NotSimple
        _blank(child.tail)
        out.append(child)
    return out


def _text(elem: etree._Element) -> str:
    if len(elem):
        raise _NotSimple
    return elem.text or ""


def _keyvalue(elem: etree._Element) -> Any:
    attrib = _attrs(elem, (), ("VALUETYPE", "TYPE"))
    cimtype = attrib.get("TYPE") or None
    if cimtype is None:
        valuetype = attrib.get("VALUETYPE")
        if valuetype is None or valuetype == "string":
            cimtype = "string"
        elif valuetype == "boolean":
            cimtype = "boolean"
        elif valuetype != "numeric":
            raise _NotSimple
    try:
        return _FAST.unpack_single_value(_text(elem), cimtype)
    except (CIMXMLParseError, ValueError, TypeError):
        raise _NotSimple from None


def _instancename(elem: etree._Element) -> Any:
    classname = _attrs(elem, ("CLASSNAME",))["CLASSNAME"]
    keys = {}
    kids = _kids(elem)
    if not kids:
        raise _NotSimple  # keyless: pywbem warns
    for kb in kids:
        if kb.tag != "KEYBINDING":
            raise _NotSimple
        name = _attrs(kb, ("NAME",))["NAME"]
        value = _kids(kb)
        if len(value) != 1 or value[0].tag != "KEYVALUE":
            raise _NotSimple
        keys[name] = _keyvalue(value[0])
    try:
        return pywbem.CIMInstanceName(classname, keys)
    except (TypeError, ValueError):
        raise _NotSimple from None


def _iparam(elem: etree._Element) -> tuple[str, Any]:
    if elem.tag != "IPARAMVALUE":
        raise _NotSimple
    name = _attrs(elem, ("NAME",))["NAME"]
    kids = _kids(elem)
    if not kids:
        return name, None
    if len(kids) > 1:
        raise _NotSimple
    child = kids[0]
    tag = child.tag
    if tag == "VALUE":
        _attrs(child, ())
        value: Any = _text(child)
        if name.lower() in _BOOL_PARAMS and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        return name, value
    if tag == "CLASSNAME":
        _kids(child)  # none allowed
        if len(child):
            raise _NotSimple
        return name, pywbem.CIMClassName(_attrs(child, ("NAME",))["NAME"])
    if tag == "INSTANCENAME":
        return name, _instancename(child)
    if tag == "VALUE.ARRAY":
        _attrs(child, ())
        values = []
        for item in _kids(child):
            if item.tag != "VALUE":
                raise _NotSimple
            _attrs(item, ())
            values.append(_text(item))
        return name, values
    raise _NotSimple


def simple_imethodcall(root: etree._Element) -> tuple[str, str, str, list] | None:
    """(message ID, method, namespace, [(param, value)]) of a plain IMETHODCALL, else None."""
    try:
        if root.tag != "CIM":
            return None
        attrib = _attrs(root, ("CIMVERSION", "DTDVERSION"))
        if not (attrib["CIMVERSION"].startswith("2.") and attrib["DTDVERSION"].startswith("2.")):
            return None
        (message,) = _kids(root)
        if message.tag != "MESSAGE":
            return None
        attrib = _attrs(message, ("ID", "PROTOCOLVERSION"))
        if not attrib["PROTOCOLVERSION"].startswith("1."):
            return None
        msg_id = attrib["ID"]
        (simplereq,) = _kids(message)
        if simplereq.tag != "SIMPLEREQ" or simplereq.attrib:
            return None
        (call,) = _kids(simplereq)
        if call.tag != "IMETHODCALL":
            return None
        method = _attrs(call, ("NAME",))["NAME"]
        kids = _kids(call)
        if not kids or kids[0].tag != "LOCALNAMESPACEPATH" or kids[0].attrib:
            return None
        parts = []
        for ns in _kids(kids[0]):
            if ns.tag != "NAMESPACE" or len(ns):
                return None
            _blank(ns.text)
            parts.append(_attrs(ns, ("NAME",))["NAME"])
        if not parts:
            return None
        return msg_id, method, "/".join(parts), [_iparam(k) for k in kids[1:]]
    except (_NotSimple, ValueError):
        return None
