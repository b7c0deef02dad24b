"""CIM-XML (DSP0201) requests in, responses out.

Requests are parsed by the adapter (hardened lxml + pywbem's element parser); responses are
written from pywbem's public object model (``tocimxmlstr()``) inside a small envelope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
        tree = pywbem_adapter.parse_cim_message(body)
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


def _envelope(msg_id: str, body: str) -> bytes:
    body = _EMPTY_CONTAINER.sub(lambda m: f"<{m[1]}{m[2] or ''}></{m[1]}>", body)
    return (_HEAD.format(id=quoteattr(msg_id)) + body + _TAIL).encode("utf-8")


def imethod_response(msg_id: str, method: str, ireturn: str | None,
                     out_params: Iterable[tuple[str, str]] = ()) -> bytes:
    """``ireturn``: the XML of the IRETURNVALUE's children, or None for no IRETURNVALUE."""
    body = [f"<IMETHODRESPONSE NAME={quoteattr(method)}>"]
    if ireturn is not None:
        body.append(f"<IRETURNVALUE>{ireturn}</IRETURNVALUE>")
    body.extend(f"<PARAMVALUE NAME={quoteattr(n)}>{x}</PARAMVALUE>" for n, x in out_params)
    body.append("</IMETHODRESPONSE>")
    return _envelope(msg_id, "".join(body))


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
