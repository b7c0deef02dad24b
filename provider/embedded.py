"""Embedded instances in method parameters (DefineSystem's SystemSettings, ResourceSettings).

Clients send them as CIM-XML INSTANCE text (pywbem, DSP0201) or as MOF ``instance of ...``
text (pywbemcli and wbemcli pass what the user typed). XML goes through ``ediv.xmlsafe`` and
pywbem's element parser; MOF through pywbem's MOFCompiler against the product's classes,
so unknown properties and wrong types are rejected with the compiler's message. Anything
wrong becomes CIM_ERR_INVALID_PARAMETER naming the parameter.
"""

from __future__ import annotations

import re
import threading

import pywbem
from pywbem import CIM_ERR_INVALID_PARAMETER, CIMError, CIMInstance
from pywbem_mock import FakedWBEMConnection

from ediv import xmlsafe
from ediv.errors import InputError
from ediv.provider.pywbem_adapter import TupleParser, to_tupletree
from ediv.provider.schema import NamespaceSchema

MAX_EMBEDDED_CHARS = 8 * 1024 * 1024


class EmbeddedParser:
    """Turns embedded-instance parameter values into CIMInstances of known classes."""

    def __init__(self, nss: NamespaceSchema):
        self.nss = nss
        self._flat: list[pywbem.CIMClass] | None = None
        self._lock = threading.Lock()

    def parse(self, param: str, value: object, expect: str) -> CIMInstance:
        """``value`` (CIMInstance, XML or MOF text) as an instance of ``expect`` or a subclass."""
        if isinstance(value, CIMInstance):
            inst = value
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                raise _bad(param, "is empty")
            if len(text) > MAX_EMBEDDED_CHARS:
                raise _bad(param, f"is larger than {MAX_EMBEDDED_CHARS} characters")
            inst = self._from_xml(param, text) if text.startswith("<") else \
                self._from_mof(param, text)
        else:
            raise _bad(param, "must be an embedded instance (CIM-XML INSTANCE or MOF text)")
        cls = self.nss.get_class(inst.classname)
        if cls is None:
            raise _bad(param, f"has an instance of unknown class {inst.classname}")
        if not self.nss.is_subclass(cls.classname, expect):
            raise _bad(param, f"must be an instance of {expect}, not {inst.classname}")
        for name in inst.properties:
            if name not in cls.properties:
                raise _bad(param, f"class {cls.classname} has no property {name}")
        inst.classname = cls.classname
        return inst

    def _from_xml(self, param: str, text: str) -> CIMInstance:
        try:
            root = xmlsafe.parse_bytes(text.encode("utf-8"), param).getroot()
        except InputError as exc:
            raise _bad(param, "is not well-formed XML: "
                       + "; ".join(d.message for d in exc.diagnostics)) from None
        if root.tag != "INSTANCE":
            raise _bad(param, f"must be an INSTANCE element, not {root.tag}")
        try:
            return TupleParser().parse_instance(to_tupletree(root))
        except (pywbem.Error, ValueError, TypeError, KeyError) as exc:
            raise _bad(param, f"is not a valid CIM-XML INSTANCE: {exc}") from None

    def _classes(self) -> list[pywbem.CIMClass]:
        """The instantiable classes flattened (no superclass): enough for instance MOF."""
        if self._flat is None:
            flat = []
            for cls in self.nss.classes.values():
                if cls.qualifiers.get("Abstract") or cls.qualifiers.get("Association") \
                        or cls.qualifiers.get("Indication"):
                    continue
                c = pywbem.CIMClass(cls.classname)
                for p in cls.properties.values():
                    q = p.copy()
                    q.propagated, q.class_origin, q.qualifiers = None, None, {}
                    c.properties[p.name] = q
                flat.append(c)
            self._flat = flat
        return self._flat

    def _from_mof(self, param: str, text: str) -> CIMInstance:
        if not text.lower().startswith("instance"):
            raise _bad(param, "must be CIM-XML (<INSTANCE ...>) or MOF (instance of ...)")
        if not text.endswith(";"):
            text += ";"
        text = _unescape_apostrophes(text)
        with self._lock:
            classes = self._classes()
        conn = FakedWBEMConnection(default_namespace=self.nss.name)
        conn.add_cimobjects(classes, namespace=self.nss.name)
        try:
            conn.compile_mof_string(text, namespace=self.nss.name, verbose=False)
        except pywbem.Error as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _bad(param, f"is not a valid MOF instance: {message}") from None
        found = list(conn.cimrepository.get_instance_store(self.nss.name).iter_values())
        if len(found) != 1:
            raise _bad(param, f"must hold exactly one instance, not {len(found)}")
        inst = found[0]
        inst.path = None
        return inst


_MOF_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_MOF_ESCAPE = re.compile(r"\\(.)", re.S)


def _unescape_apostrophes(mof: str) -> str:
    """``\\'`` inside MOF string literals as a plain ``'``. pywbem's ``tomof`` (what pywbemcli
    sends) escapes apostrophes, which DSP0221 allows, but its MOF compiler drops them
    (pywbem 1.9: ``"x=\\'1\\'"`` becomes ``x=1``), mangling e.g. an XML declaration."""
    def literal(m: re.Match[str]) -> str:
        return _MOF_ESCAPE.sub(lambda e: "'" if e.group(1) == "'" else e.group(0), m.group(0))
    return _MOF_STRING.sub(literal, mof)


def _bad(param: str, what: str) -> CIMError:
    return CIMError(CIM_ERR_INVALID_PARAMETER, f"{param} {what}")


def text_property(inst: CIMInstance, name: str) -> str | None:
    if name not in inst.properties or inst[name] is None:
        return None
    value = inst[name]
    return value if isinstance(value, str) else str(value)
