"""CIM-XML (DSP0201) requests in, responses out.

Requests are parsed by the adapter (hardened lxml + pywbem's element parser). Responses:
instances and instance paths are written straight from the providers' rows by
``InstanceWriter`` (one per class and request shape, its fixed text prepared once) and the
path writers below; classes, qualifiers and method values from pywbem's public object model
(``tocimxmlstr()``); all inside a small envelope. tests/provider/test_fast_xml.py checks
that pywbem parses both writers' output to equal objects.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pywbem
from pywbem import CIMError

from ediv.provider import pywbem_adapter


class RequestNotValid(Exception):
    """The body is not a CIM-XML request we can read: HTTP ``status`` (400, or 501 for what
    DSP0200 calls unsupported) with a CIMError header."""

    def __init__(self, cimerror_header: str, message: str, status: int = 400):
        super().__init__(message)
        self.cimerror_header = cimerror_header
        self.status = status


@dataclass
class CIMRequest:
    message_id: str
    method: str
    intrinsic: bool
    namespace: str
    params: pywbem.NocaseDict = field(default_factory=pywbem.NocaseDict)
    # extrinsic calls: the object the method is invoked on
    target: pywbem.CIMInstanceName | pywbem.CIMClassName | None = None


def parse_request(body: bytes) -> CIMRequest:
    try:
        root = pywbem_adapter.read_tree(body)
        simple = pywbem_adapter.simple_imethodcall(root)
        if simple is not None:
            msg_id, method, namespace, params = simple
            return CIMRequest(msg_id, method, True, namespace, pywbem.NocaseDict(params))
        tree = pywbem_adapter.parse_tree(root)
    except pywbem_adapter.InputError as exc:
        raise RequestNotValid("request-not-well-formed", str(exc)) from None
    except pywbem_adapter.MultipleRequests as exc:
        raise RequestNotValid("multiple-requests-unsupported", str(exc), 501) from None
    except pywbem_adapter.UnsupportedVersion as exc:
        raise RequestNotValid(exc.cimerror_header, str(exc), 501) from None
    except (pywbem_adapter.CIMXMLParseError, pywbem_adapter.XMLParseError) as exc:
        raise RequestNotValid("request-not-valid", str(exc)) from None
    except (pywbem.VersionError, ValueError, TypeError, KeyError) as exc:
        raise RequestNotValid("request-not-valid", f"unsupported request: {exc}") from None
    _cim, _attrs, message = tree
    if message[0] != "MESSAGE":
        raise RequestNotValid("request-not-valid", "expected a MESSAGE element")
    msg_id = message[1]["ID"]
    req = message[2]
    if req[0] != "SIMPLEREQ":
        raise RequestNotValid("multiple-requests-unsupported", f"{req[0]} is not supported",
                              501)
    call = req[2]
    if call[0] == "IMETHODCALL":
        _n, attrs, namespace, params = call
        return CIMRequest(msg_id, attrs["NAME"], True, namespace, pywbem.NocaseDict(params))
    _n, attrs, path, params = call
    target = _extrinsic_target(path)
    values = pywbem.NocaseDict((name, value) for name, _ptype, value in params)
    return CIMRequest(msg_id, attrs["NAME"], False, target.namespace or "", values, target)


def _extrinsic_target(path: Any) -> pywbem.CIMInstanceName | pywbem.CIMClassName:
    # METHODCALL's LOCALCLASSPATH / LOCALINSTANCEPATH are left as tuples by list_of_matching
    if isinstance(path, (pywbem.CIMInstanceName, pywbem.CIMClassName)):
        return path
    parser = pywbem_adapter.TupleParser()
    try:
        return parser.parse_any(path)
    except (pywbem_adapter.CIMXMLParseError, ValueError) as exc:
        raise RequestNotValid("request-not-valid", str(exc)) from None


# ---------------------------------------------------------------- responses

_HEAD = ('<?xml version="1.0" encoding="utf-8" ?>\n'
         '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID={id} PROTOCOLVERSION="1.0">'
         '<SIMPLERSP>')
_TAIL = "</SIMPLERSP></MESSAGE></CIM>"


# Elements that may carry content but are empty here (a NULL property, a method without
# parameters...). Written as <X ...></X> rather than <X .../>: both are the same XML, but
# sblim's wbemcli parser only accepts the first.
_EMPTY_CONTAINER = re.compile(
    r"<(PROPERTY(?:\.ARRAY|\.REFERENCE)?|PARAMETER(?:\.ARRAY|\.REFERENCE|\.REFARRAY)?"
    r"|METHOD|INSTANCE|CLASS)(\s[^<>]*?)?/>")


def fix_empty(xml: str) -> str:
    """pywbem's ``<PROPERTY .../>`` (and the like) written as ``<PROPERTY ...></PROPERTY>``."""
    return _EMPTY_CONTAINER.sub(lambda m: f"<{m[1]}{m[2] or ''}></{m[1]}>", xml)


def _envelope(msg_id: str, body: str) -> bytes:
    return (_HEAD.format(id=quoteattr(msg_id)) + fix_empty(body) + _TAIL).encode("utf-8")


class Clean(str):
    """XML text written by this module's writers: no empty containers to fix."""


def imethod_response(msg_id: str, method: str, ireturn: str | None,
                     out_params: Iterable[tuple[str, str]] = ()) -> bytes:
    """``ireturn``: the XML of the IRETURNVALUE's children, or None for no IRETURNVALUE
    (a ``Clean`` string is not scanned for empty containers: the bulk of big answers)."""
    tail = [f"<PARAMVALUE NAME={quoteattr(n)}>{x}</PARAMVALUE>" for n, x in out_params]
    tail.append("</IMETHODRESPONSE>")
    head = f"<IMETHODRESPONSE NAME={quoteattr(method)}>"
    if ireturn is None:
        return _envelope(msg_id, head + "".join(tail))
    if isinstance(ireturn, Clean):
        return _envelope_parts(msg_id, head + "<IRETURNVALUE>", ireturn,
                               "</IRETURNVALUE>" + "".join(tail))
    return _envelope(msg_id, f"{head}<IRETURNVALUE>{ireturn}</IRETURNVALUE>{''.join(tail)}")


def _envelope_parts(msg_id: str, before: str, clean: str, after: str) -> bytes:
    return b"".join((
        (_HEAD.format(id=quoteattr(msg_id)) + fix_empty(before)).encode("utf-8"),
        clean.encode("utf-8"), (fix_empty(after) + _TAIL).encode("utf-8")))


def method_response(msg_id: str, method: str, return_value: Any,
                    out_params: Iterable[tuple[str, Any]] = ()) -> bytes:
    body = [f"<METHODRESPONSE NAME={quoteattr(method)}>"]
    if return_value is not None:
        ptype = pywbem.cimtype(return_value)
        body.append(f'<RETURNVALUE PARAMTYPE="{ptype}">{value_xml(return_value)}</RETURNVALUE>')
    for name, value in out_params:
        if _embedded(value):
            body.append(f'<PARAMVALUE NAME={quoteattr(name)} PARAMTYPE="string" '
                        f'EmbeddedObject="instance">{embedded_xml(value)}</PARAMVALUE>')
            continue
        if isinstance(value, list) and not value:  # nothing to infer a type from
            body.append(f'<PARAMVALUE NAME={quoteattr(name)} PARAMTYPE="string">'
                        '<VALUE.ARRAY></VALUE.ARRAY></PARAMVALUE>')
            continue
        ptype = pywbem.cimtype(value) if value is not None else None
        attr = f" PARAMTYPE={quoteattr(ptype)}" if ptype else ""
        body.append(f"<PARAMVALUE NAME={quoteattr(name)}{attr}>"
                    f"{value_xml(value) if value is not None else ''}</PARAMVALUE>")
    body.append("</METHODRESPONSE>")
    return _envelope(msg_id, "".join(body))


def _embedded(value: Any) -> bool:
    if isinstance(value, pywbem.CIMInstance):
        return True
    return isinstance(value, list) and bool(value) and \
        all(isinstance(v, pywbem.CIMInstance) for v in value)


def embedded_xml(value: pywbem.CIMInstance | list[pywbem.CIMInstance]) -> str:
    """An embedded instance (or array of them) as escaped INSTANCE text (DSP0201 3.1.6)."""
    if isinstance(value, list):
        return "<VALUE.ARRAY>" + "".join(
            f"<VALUE>{escape(v.tocimxmlstr())}</VALUE>" for v in value) + "</VALUE.ARRAY>"
    return f"<VALUE>{escape(value.tocimxmlstr())}</VALUE>"


def error_response(msg_id: str, method: str, intrinsic: bool, error: CIMError) -> bytes:
    tag = "IMETHODRESPONSE" if intrinsic else "METHODRESPONSE"
    desc = error.status_description or ""
    return _envelope(msg_id, f"<{tag} NAME={quoteattr(method)}><ERROR CODE=\"{error.status_code}\""
                     f" DESCRIPTION={quoteattr(desc)}/></{tag}>")


def value_xml(value: Any) -> str:
    """A typed scalar, array or reference as VALUE / VALUE.ARRAY / VALUE.REFERENCE."""
    if isinstance(value, pywbem.CIMInstanceName):
        return f"<VALUE.REFERENCE>{value.tocimxmlstr()}</VALUE.REFERENCE>"
    if isinstance(value, list) and value and \
            all(isinstance(v, pywbem.CIMInstanceName) for v in value):
        return "<VALUE.REFARRAY>" + "".join(value_xml(v) for v in value) + "</VALUE.REFARRAY>"
    return pywbem.tocimxmlstr(value)


def boolean_value(flag: bool) -> str:
    return f"<VALUE>{'TRUE' if flag else 'FALSE'}</VALUE>"


def string_value(text: str) -> str:
    return f"<VALUE>{escape(text)}</VALUE>"


def instance_xml(inst: pywbem.CIMInstance) -> str:
    """The INSTANCE element (no path).

    Plain instances (no qualifiers, no embedded objects) are written here directly, several
    times faster than pywbem's DOM-based writer; anything else goes through pywbem.
    """
    if inst.qualifiers:
        return inst.tocimxmlstr(ignore_path=True)
    out = [f"<INSTANCE CLASSNAME={quoteattr(inst.classname)}>"]
    for prop in inst.properties.values():
        if prop.qualifiers or prop.embedded_object:
            return inst.tocimxmlstr(ignore_path=True)
        attrs = f" NAME={quoteattr(prop.name)}"
        if prop.class_origin:
            attrs += f" CLASSORIGIN={quoteattr(prop.class_origin)}"
        if prop.propagated is not None:
            attrs += f' PROPAGATED="{"true" if prop.propagated else "false"}"'
        value = prop.value
        if prop.type == "reference":
            if prop.reference_class:
                attrs += f" REFERENCECLASS={quoteattr(prop.reference_class)}"
            inner = "" if value is None else \
                f"<VALUE.REFERENCE>{value.tocimxmlstr()}</VALUE.REFERENCE>"
            out.append(f"<PROPERTY.REFERENCE{attrs}>{inner}</PROPERTY.REFERENCE>")
        elif prop.is_array:
            attrs = f"{attrs} TYPE={quoteattr(prop.type)}"
            if prop.array_size is not None:
                attrs += f' ARRAYSIZE="{prop.array_size}"'
            inner = "" if value is None else "<VALUE.ARRAY>" + "".join(
                "<VALUE.NULL/>" if v is None else
                f"<VALUE>{escape(pywbem_adapter.atomic_to_cim_xml(v))}</VALUE>"
                for v in value) + "</VALUE.ARRAY>"
            out.append(f"<PROPERTY.ARRAY{attrs}>{inner}</PROPERTY.ARRAY>")
        else:
            inner = "" if value is None else \
                f"<VALUE>{escape(pywbem_adapter.atomic_to_cim_xml(value))}</VALUE>"
            out.append(f"<PROPERTY{attrs} TYPE={quoteattr(prop.type)}>{inner}</PROPERTY>")
    out.append("</INSTANCE>")
    return "".join(out)


def instance_with_path(inst: pywbem.CIMInstance) -> str:
    """VALUE.INSTANCEWITHPATH (pull operations); the path must carry host and namespace."""
    return (f"<VALUE.INSTANCEWITHPATH>{inst.path.tocimxmlstr()}{instance_xml(inst)}"
            "</VALUE.INSTANCEWITHPATH>")


def named_instance(inst: pywbem.CIMInstance) -> str:
    """VALUE.NAMEDINSTANCE: INSTANCENAME without namespace, then the INSTANCE."""
    path = inst.path.copy()
    path.namespace = None
    path.host = None
    return f"<VALUE.NAMEDINSTANCE>{path.tocimxmlstr()}{instance_xml(inst)}</VALUE.NAMEDINSTANCE>"


def object_with_path(obj: pywbem.CIMInstance | pywbem.CIMClass,
                     path: pywbem.CIMInstanceName | pywbem.CIMClassName) -> str:
    """VALUE.OBJECTWITHPATH for Associators/References (INSTANCEPATH or CLASSPATH)."""
    if isinstance(obj, pywbem.CIMInstance):
        return (f"<VALUE.OBJECTWITHPATH>{path.tocimxmlstr()}"
                f"{instance_xml(obj)}</VALUE.OBJECTWITHPATH>")
    return f"<VALUE.OBJECTWITHPATH>{path.tocimxmlstr()}{obj.tocimxmlstr()}</VALUE.OBJECTWITHPATH>"


def object_path(path: pywbem.CIMInstanceName | pywbem.CIMClassName) -> str:
    return f"<OBJECTPATH>{path.tocimxmlstr()}</OBJECTPATH>"


# ---------------------------------------------------------------- the fast writers

_PARTS_LOCK = threading.Lock()
_NS_XML: dict[str, str] = {}


def local_namespace_xml(namespace: str) -> str:
    """LOCALNAMESPACEPATH of a namespace (cached: a server has few)."""
    found = _NS_XML.get(namespace)
    if found is None:
        found = "<LOCALNAMESPACEPATH>" + "".join(
            f"<NAMESPACE NAME={quoteattr(part)}/>" for part in namespace.strip("/").split("/")
            if part) + "</LOCALNAMESPACEPATH>"
        with _PARTS_LOCK:
            if len(_NS_XML) < 1024:
                _NS_XML[namespace] = found
    return found


def text(value: str) -> str:
    """XML character data (escape() is slow for the common text that needs nothing)."""
    if "&" in value or "<" in value or ">" in value:
        return escape(value)
    return value


_KB_STRING: dict[str, str] = {}
_INAME: dict[str, str] = {}


def _kb_string(name: str) -> str:
    found = _KB_STRING.get(name)
    if found is None:
        found = f'<KEYBINDING NAME={quoteattr(name)}><KEYVALUE VALUETYPE="string" TYPE="string">'
        with _PARTS_LOCK:
            if len(_KB_STRING) < 4096:
                _KB_STRING[name] = found
    return found


def _keybinding(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        return f"{_kb_string(name)}{text(value)}</KEYVALUE></KEYBINDING>"
    if isinstance(value, bool):
        return (f'<KEYBINDING NAME={quoteattr(name)}><KEYVALUE VALUETYPE="boolean" '
                f'TYPE="boolean">{"TRUE" if value else "FALSE"}</KEYVALUE></KEYBINDING>')
    if isinstance(value, pywbem.CIMInt):
        return (f'<KEYBINDING NAME={quoteattr(name)}><KEYVALUE VALUETYPE="numeric" '
                f'TYPE="{value.cimtype}">{int(value)}</KEYVALUE></KEYBINDING>')
    if isinstance(value, pywbem.CIMInstanceName):
        return (f"<KEYBINDING NAME={quoteattr(name)}><VALUE.REFERENCE>{path_xml(value)}"
                "</VALUE.REFERENCE></KEYBINDING>")
    return None  # anything rarer: pywbem writes it


def instance_name_xml(classname: str, keys: Mapping[str, Any]) -> str:
    """INSTANCENAME of ``classname`` with ``keys`` (what CIMInstanceName.tocimxmlstr writes)."""
    head = _INAME.get(classname)
    if head is None:
        head = f"<INSTANCENAME CLASSNAME={quoteattr(classname)}>"
        with _PARTS_LOCK:
            if len(_INAME) < 4096:
                _INAME[classname] = head
    parts = [head]
    for name, value in keys.items():
        kb = _keybinding(name, value)
        if kb is None:
            return pywbem.CIMInstanceName(classname, dict(keys)).tocimxmlstr()
        parts.append(kb)
    parts.append("</INSTANCENAME>")
    return "".join(parts)


def instance_path_xml(classname: str, keys: Mapping[str, Any], namespace: str | None,
                      host: str | None) -> str:
    """INSTANCEPATH (host and namespace), LOCALINSTANCEPATH (namespace) or INSTANCENAME."""
    name = instance_name_xml(classname, keys)
    if not namespace:
        return name
    if host:
        return (f"<INSTANCEPATH><NAMESPACEPATH><HOST>{text(host)}</HOST>"
                f"{local_namespace_xml(namespace)}</NAMESPACEPATH>{name}</INSTANCEPATH>")
    return f"<LOCALINSTANCEPATH>{local_namespace_xml(namespace)}{name}</LOCALINSTANCEPATH>"


def path_xml(path: pywbem.CIMInstanceName) -> str:
    """A CIMInstanceName as pywbem writes it (the form follows its host and namespace)."""
    return instance_path_xml(path.classname, path.keybindings, path.namespace,
                             path.host if path.namespace else None)


def object_path_xml(classname: str, keys: Mapping[str, Any], namespace: str, host: str) -> str:
    return f"<OBJECTPATH>{instance_path_xml(classname, keys, namespace, host)}</OBJECTPATH>"


def _slow(fmt_type: str) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        return escape(pywbem_adapter.atomic_to_cim_xml(pywbem.cimvalue(value, fmt_type)))
    return fmt


def _fmt_string(value: Any) -> str:
    return text(value if isinstance(value, str) else str(value))


def _fmt_int(fallback: Callable[[Any], str]) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(int(value))
        return fallback(value)
    return fmt


def _fmt_bool(fallback: Callable[[Any], str]) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is True or value is False:
            return "TRUE" if value else "FALSE"
        return fallback(value)
    return fmt


def _fmt_datetime(fallback: Callable[[Any], str]) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        return str(value) if isinstance(value, pywbem.CIMDateTime) else fallback(value)
    return fmt


def _formatter(cim_type: str) -> Callable[[Any], str]:
    """VALUE text of one scalar of ``cim_type``, as pywbem writes it after converting the
    value to the class's type (CIMProperty(value, type=...))."""
    slow = _slow(cim_type)
    if cim_type == "string":
        return _fmt_string
    if cim_type.startswith(("uint", "sint")):
        return _fmt_int(slow)
    if cim_type == "boolean":
        return _fmt_bool(slow)
    if cim_type == "datetime":
        return _fmt_datetime(slow)
    return slow


_SCALAR, _ARRAY, _REF, _PYWBEM = range(4)


def is_key(prop: pywbem.CIMProperty) -> bool:
    """Whether a class property carries Key(true)."""
    qual = prop.qualifiers.get("Key")
    return qual is not None and bool(qual.value)


class InstanceWriter:
    """INSTANCE elements of one class as one request wants them (DeepInheritance /
    LocalOnly / PropertyList trim the class's properties; IncludeQualifiers and
    IncludeClassOrigin add the class's qualifiers and origins), written from Rows.

    NULL properties (docs/cim.md, "NULL properties in responses"): without a PropertyList
    only the properties that have a value, and the keys, are written; with one, every
    property it names (and the selection keeps) is written, a NULL one as a PROPERTY without
    VALUE. An empty array is a value. Reference values get the namespace of the request when
    they have none, and no host.
    """

    def __init__(self, actual: pywbem.CIMClass, requested: pywbem.CIMClass, namespace: str, *,
                 deep: bool = True, local_only: bool = False, qualifiers: bool = False,
                 class_origin: bool = False, property_list: Iterable[str] | None = None):
        self.classname = actual.classname
        self.namespace = namespace
        self.qualifiers = qualifiers
        self.class_origin = class_origin
        wanted = None if property_list is None else {p.lower() for p in property_list}
        # no PropertyList: a NULL property is left out (its slot stays empty), keys excepted
        self.omit_nulls = wanted is None
        self.head = f"<INSTANCE CLASSNAME={quoteattr(actual.classname)}>"
        self.entries: list[tuple] = []
        for prop in actual.properties.values():
            in_requested = prop.name in requested.properties
            if not deep and not in_requested:
                continue
            if local_only and in_requested and requested.properties[prop.name].propagated:
                continue
            if wanted is not None and prop.name.lower() not in wanted:
                continue
            self.entries.append(self._entry(prop))
        # the element as if every property were NULL (or left out); a row's values replace
        # their slots
        self.nulls = [self.head, *(e[4] for e in self.entries), "</INSTANCE>"]
        self.index: dict[str, int] = {}
        for i, entry in enumerate(self.entries, start=1):
            self.index[entry[0]] = i
            self.index[entry[6].name] = i

    def _entry(self, prop: pywbem.CIMProperty) -> tuple:
        attrs = f" NAME={quoteattr(prop.name)}"
        if prop.type == "reference":
            tag = "PROPERTY.REFERENCE"
            if prop.reference_class:
                attrs += f" REFERENCECLASS={quoteattr(prop.reference_class)}"
        else:
            tag = "PROPERTY.ARRAY" if prop.is_array else "PROPERTY"
            attrs += f" TYPE={quoteattr(prop.type)}"
        if self.class_origin:
            if prop.class_origin:
                attrs += f" CLASSORIGIN={quoteattr(prop.class_origin)}"
            if prop.propagated is not None:
                attrs += f' PROPAGATED="{"true" if prop.propagated else "false"}"'
        if prop.is_array and prop.array_size is not None and prop.type != "reference":
            attrs += f' ARRAYSIZE="{prop.array_size}"'
        if prop.embedded_object:
            attrs += f" EmbeddedObject={quoteattr(prop.embedded_object)}"
        quals = "".join(q.tocimxmlstr() for q in prop.qualifiers.values()) \
            if self.qualifiers else ""
        open_tag = f"<{tag}{attrs}>{quals}"
        null = "" if self.omit_nulls and not is_key(prop) else f"{open_tag}</{tag}>"
        if prop.embedded_object or (prop.type == "reference" and prop.is_array):
            kind = _PYWBEM
        elif prop.type == "reference":
            kind = _REF
        else:
            kind = _ARRAY if prop.is_array else _SCALAR
        return (prop.name.lower(), kind, open_tag, f"</{tag}>", null,
                _formatter(prop.type) if kind in (_SCALAR, _ARRAY) else None, prop)

    def _pywbem(self, prop: pywbem.CIMProperty, value: Any) -> str:
        return fix_empty(pywbem.CIMProperty(
            prop.name, value, type=prop.type, is_array=prop.is_array,
            reference_class=prop.reference_class, embedded_object=prop.embedded_object,
            class_origin=prop.class_origin if self.class_origin else None,
            propagated=prop.propagated if self.class_origin else None,
            qualifiers=prop.qualifiers if self.qualifiers else None).tocimxmlstr())

    def _reference(self, value: Any) -> str:
        if not isinstance(value, pywbem.CIMInstanceName):
            value = pywbem.cimvalue(value, "reference")
        path = instance_path_xml(value.classname, value.keybindings,
                                 value.namespace or self.namespace, None)
        return f"<VALUE.REFERENCE>{path}</VALUE.REFERENCE>"

    def instance(self, values: Mapping[str, Any]) -> str:
        """The INSTANCE element; ``values``: property values by name (any case; properties
        the class does not have, or the request left out, are not written)."""
        out = self.nulls.copy()
        index, entries = self.index, self.entries
        for name, value in values.items():
            if value is None:
                continue
            i = index.get(name)
            if i is None:
                i = index.get(name.lower())
                if i is None:
                    continue
            _l, kind, open_tag, close, _n, fmt, prop = entries[i - 1]
            if kind == _SCALAR:
                out[i] = f"{open_tag}<VALUE>{fmt(value)}</VALUE>{close}"
            elif kind == _ARRAY:
                items = "".join("<VALUE.NULL/>" if v is None else f"<VALUE>{fmt(v)}</VALUE>"
                                for v in value)
                out[i] = f"{open_tag}<VALUE.ARRAY>{items}</VALUE.ARRAY>{close}"
            elif kind == _REF:
                out[i] = f"{open_tag}{self._reference(value)}{close}"
            else:
                out[i] = self._pywbem(prop, value)
        return "".join(out)

    def named_instance(self, keys: Mapping[str, Any], values: Mapping[str, Any]) -> str:
        """VALUE.NAMEDINSTANCE (EnumerateInstances): INSTANCENAME, then the INSTANCE."""
        return (f"<VALUE.NAMEDINSTANCE>{instance_name_xml(self.classname, keys)}"
                f"{self.instance(values)}</VALUE.NAMEDINSTANCE>")

    def instance_with_path(self, keys: Mapping[str, Any], values: Mapping[str, Any],
                           host: str) -> str:
        """VALUE.INSTANCEWITHPATH (pull operations)."""
        path = instance_path_xml(self.classname, keys, self.namespace, host)
        return f"<VALUE.INSTANCEWITHPATH>{path}{self.instance(values)}</VALUE.INSTANCEWITHPATH>"

    def object_with_path(self, keys: Mapping[str, Any], values: Mapping[str, Any],
                         host: str) -> str:
        """VALUE.OBJECTWITHPATH (Associators, References)."""
        path = instance_path_xml(self.classname, keys, self.namespace, host)
        return f"<VALUE.OBJECTWITHPATH>{path}{self.instance(values)}</VALUE.OBJECTWITHPATH>"
