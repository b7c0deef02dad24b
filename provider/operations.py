"""DSP0200 intrinsic operations on the schema and the providers: the server's read side.

``Dispatcher.call`` takes a parsed request and the caller's role and returns the CIM-XML
response body; every failure becomes a CIM status code in an ERROR element. Each call runs
in a request context (``ediv.provider.request``): a time limit, and the transport's
"client gone" test, checked in the loops that can run long.

Instances travel from the providers as Rows and are written by ``cimxml.InstanceWriter``
(one per class and request shape, cached); associations are answered from the providers'
``reference_rows`` (indexed look-ups by object path) and de-duplicated with sets of
normalized paths.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pywbem
from pywbem import (
    CIM_ERR_ACCESS_DENIED,
    CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED,
    CIM_ERR_FAILED,
    CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED,
    CIM_ERR_INVALID_CLASS,
    CIM_ERR_INVALID_ENUMERATION_CONTEXT,
    CIM_ERR_INVALID_NAMESPACE,
    CIM_ERR_INVALID_OPERATION_TIMEOUT,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_METHOD_NOT_AVAILABLE,
    CIM_ERR_METHOD_NOT_FOUND,
    CIM_ERR_NO_SUCH_PROPERTY,
    CIM_ERR_NOT_FOUND,
    CIM_ERR_NOT_SUPPORTED,
    CIM_ERR_SERVER_LIMITS_EXCEEDED,
    CIMClass,
    CIMClassName,
    CIMError,
    CIMInstance,
    CIMInstanceName,
    CIMProperty,
)

from ediv.provider import cimxml, request
from ediv.provider.auth import Role
from ediv.provider.cimxml import Clean, InstanceWriter
from ediv.provider.providers import (
    PathKey,
    ProviderRegistry,
    Row,
    key_of,
    normalized,
    path_key,
)
from ediv.provider.schema import NamespaceSchema, Schema, is_association

READ_OPERATIONS = frozenset(n.lower() for n in (
    "GetClass", "EnumerateClasses", "EnumerateClassNames", "GetQualifier",
    "EnumerateQualifiers", "GetInstance", "EnumerateInstances", "EnumerateInstanceNames",
    "GetProperty", "Associators", "AssociatorNames", "References", "ReferenceNames",
    "OpenEnumerateInstances", "OpenEnumerateInstancePaths", "OpenAssociatorInstances",
    "OpenAssociatorInstancePaths", "OpenReferenceInstances", "OpenReferenceInstancePaths",
    "PullInstancesWithPath", "PullInstancePaths", "PullInstances", "CloseEnumeration",
    "EnumerationCount", "ExecQuery", "OpenQueryInstances",
))
SCHEMA_WRITES = frozenset(n.lower() for n in (
    "CreateClass", "ModifyClass", "DeleteClass", "SetQualifier", "DeleteQualifier"))
INSTANCE_WRITES = frozenset(n.lower() for n in (
    "CreateInstance", "ModifyInstance", "DeleteInstance", "SetProperty"))

MAX_OPEN_CONTEXTS = 256
DEFAULT_OPERATION_TIMEOUT = 60
MAX_OPERATION_TIMEOUT = 600
MAX_PULL_COUNT = 10000
DEFAULT_TIME_LIMIT = 120.0  # seconds one request may compute (Dispatcher(time_limit=...))
_WRITERS_MAX = 512  # cached InstanceWriters (request shapes: property lists vary)


# extrinsic methods that only read (EDIV_ConcreteJob): whoever may read the job
READ_METHODS = frozenset({"geterror", "geterrors"})


def required_role(method: str, intrinsic: bool) -> Role:
    name = method.lower()
    if not intrinsic:
        return Role.READER if name in READ_METHODS else Role.OPERATOR
    if name in READ_OPERATIONS:
        return Role.READER
    if name in INSTANCE_WRITES:
        return Role.OPERATOR
    return Role.ADMIN


class MethodProvider:
    """Extrinsic methods of one class (plugged in by the controller side later)."""

    classname: str = ""

    def invoke(self, namespace: str, target: CIMInstanceName | CIMClassName, method: str,
               params: pywbem.NocaseDict) -> tuple[Any, list[tuple[str, Any]]]:
        raise NotImplementedError


@dataclass
class _Context:
    kind: str  # "instances" | "paths"
    namespace: str
    owner: str
    items: Iterator[str]  # the XML of each element still to deliver, produced on demand
    timeout: int
    expires: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ahead: list[str] = field(default_factory=list)  # one item read ahead (end-of-sequence)

    def take(self, count: int) -> tuple[list[str], bool]:
        """Up to ``count`` items, and whether that was the last of them."""
        batch = self.ahead + list(itertools.islice(self.items, max(0, count - len(self.ahead))))
        self.ahead = batch[count:]
        batch = batch[:count]
        if not self.ahead:
            self.ahead = list(itertools.islice(self.items, 1))
        return batch, not self.ahead

    def touch(self) -> None:
        self.expires = time.monotonic() + self.timeout


@dataclass
class Flags:
    """The flags of an intrinsic operation that shape what it returns."""

    local_only: bool = False
    deep: bool = True
    qualifiers: bool = False
    class_origin: bool = False
    property_list: list[str] | None = None


def _err(code: int, text: str) -> CIMError:
    return CIMError(code, text)


class Dispatcher:
    """Runs one CIM-XML request: checks the role, dispatches intrinsic operations to the schema
    and the instance providers, extrinsic methods to their MethodProvider, and writes the
    response; a CIMError becomes an ERROR element, never a broken response."""

    def __init__(self, schema: Schema, registry: ProviderRegistry, *, host: str = "localhost",
                 time_limit: float | None = DEFAULT_TIME_LIMIT):
        self.schema = schema
        self.registry = registry
        self.host = host
        self.time_limit = time_limit
        self.method_providers: dict[tuple[str, str], MethodProvider] = {}
        self._contexts: dict[str, _Context] = {}
        self._ctx_lock = threading.Lock()
        self._writers: dict[tuple, InstanceWriter] = {}
        self._assoc_names: dict[tuple[str, str | None], list[str]] = {}

    def register_methods(self, namespace: str, provider: MethodProvider) -> None:
        self.method_providers[(namespace.strip("/").lower(), provider.classname.lower())] = \
            provider

    # ------------------------------------------------------------ entry point
    def call(self, req: cimxml.CIMRequest, role: Role, user: str = "", host: str | None = None,
             *, time_limit: float | None = None, cancelled: Callable[[], bool] | None = None
             ) -> bytes:
        """The response body. ``time_limit`` (default: the dispatcher's) bounds the CIM work;
        ``cancelled`` is the transport's test for a client that went away (then the work
        stops at its next check with CIM_ERR_SERVER_LIMITS_EXCEEDED)."""
        with request.request(time_limit or self.time_limit, cancelled):
            return self._call(req, role, user, host or self.host)

    def _call(self, req: cimxml.CIMRequest, role: Role, user: str, host: str) -> bytes:
        try:
            needed = required_role(req.method, req.intrinsic)
            if role < needed:
                raise _err(CIM_ERR_ACCESS_DENIED,
                           f"{req.method} needs role {needed.name.lower()}, "
                           f"user has {role.name.lower()}")
            if not req.intrinsic:
                return self._extrinsic(req)
            handler = _INTRINSIC.get(req.method.lower())
            if handler is None:
                raise _err(CIM_ERR_NOT_SUPPORTED, f"operation {req.method} is not supported")
            op = _Op(self, req, user, host)
            ireturn, out = handler(op)
            return cimxml.imethod_response(req.message_id, req.method, ireturn, out)
        except CIMError as exc:
            return cimxml.error_response(req.message_id, req.method, req.intrinsic, exc)

    def _extrinsic(self, req: cimxml.CIMRequest) -> bytes:
        nss = self.namespace(req.namespace)
        target = req.target
        cls = nss.get_class(target.classname)
        if cls is None:
            raise _err(CIM_ERR_INVALID_CLASS, f"class {target.classname} does not exist")
        if req.method not in cls.methods:
            raise _err(CIM_ERR_METHOD_NOT_FOUND,
                       f"class {cls.classname} has no method {req.method}")
        for name in nss.superclass_chain(cls.classname):
            provider = self.method_providers.get((nss.name.lower(), name.lower()))
            if provider is not None:
                rv, out = provider.invoke(nss.name, target, req.method, req.params)
                return cimxml.method_response(req.message_id, req.method, rv, out)
        raise _err(CIM_ERR_METHOD_NOT_AVAILABLE,
                   f"method {cls.classname}.{req.method} is not available on this server")

    # ------------------------------------------------------------ helpers
    def namespace(self, name: str | None) -> NamespaceSchema:
        nss = self.schema.namespace(name or "")
        if nss is None:
            raise _err(CIM_ERR_INVALID_NAMESPACE, f"namespace {name!r} does not exist")
        return nss

    def rows(self, nss: NamespaceSchema, classname: str, deep: bool = True) -> Iterator[Row]:
        """The instances of ``classname`` and its subclasses, as the providers give them."""
        names = [classname, *nss.subclass_names(classname, deep=True)] if deep else [classname]
        for name in names:
            provider = self.registry.get(nss.name, name)
            if provider is None:
                continue
            for row in provider.rows():
                request.check()
                if row.classname.lower() == name.lower() or \
                        nss.is_subclass(row.classname, classname):
                    yield row

    def get_row(self, path: CIMInstanceName, default_ns: str
                ) -> tuple[NamespaceSchema, Row] | None:
        nss = self.schema.namespace(path.namespace or default_ns)
        if nss is None or nss.get_class(path.classname) is None:
            return None
        for name in [path.classname, *nss.subclass_names(path.classname)]:
            provider = self.registry.get(nss.name, name)
            if provider is None:
                continue
            row = provider.get_row(path)
            if row is not None:
                return nss, row
        return None

    def instances(self, nss: NamespaceSchema, classname: str, deep: bool = True
                  ) -> Iterator[CIMInstance]:
        return (r.instance() for r in self.rows(nss, classname, deep))

    def get_instance(self, path: CIMInstanceName, default_ns: str) -> CIMInstance | None:
        found = self.get_row(path, default_ns)
        return found[1].instance() if found is not None else None

    def writer(self, nss: NamespaceSchema, classname: str, requested: CIMClass, flags: Flags
               ) -> InstanceWriter:
        """The INSTANCE writer of class ``classname`` for a request on ``requested``."""
        plist = None if flags.property_list is None else \
            tuple(sorted({p.lower() for p in flags.property_list}))
        key = (nss.name.lower(), classname.lower(), requested.classname.lower(), flags.deep,
               flags.local_only, flags.qualifiers, flags.class_origin, plist)
        found = self._writers.get(key)
        if found is None:
            actual = nss.get_class(classname) or requested
            found = InstanceWriter(actual, requested, nss.name, deep=flags.deep,
                                   local_only=flags.local_only, qualifiers=flags.qualifiers,
                                   class_origin=flags.class_origin, property_list=plist)
            if len(self._writers) >= _WRITERS_MAX:
                self._writers.clear()
            self._writers[key] = found
        return found

    def association_names(self, nss: NamespaceSchema, assoc_class: str | None) -> list[str]:
        """Association classes (``assoc_class`` and its subclasses, or all) of ``nss``."""
        key = (nss.name.lower(), assoc_class.lower() if assoc_class else None)
        found = self._assoc_names.get(key)
        if found is None:
            base = [assoc_class, *nss.subclass_names(assoc_class)] if assoc_class else \
                [c.classname for c in nss.classes.values()]
            found = [n for n in base if is_association(nss.get_class(n))]
            self._assoc_names[key] = found
        return found

    def shape_instance(self, nss: NamespaceSchema, inst: CIMInstance, requested: CIMClass,
                       flags: Flags, host: str | None) -> CIMInstance:
        """The instance as the client asked for it: the class properties trimmed by
        DeepInheritance/LocalOnly/PropertyList (without a PropertyList, NULL ones left out but
        keys; with one, NULL ones named in it kept), qualifiers and class origin only on
        request, path with host and namespace.

        The object-model twin of ``writer``: responses are written by the writer; this one is
        the reference that tests/provider/test_fast_xml.py compares it with."""
        actual = nss.get_class(inst.classname) or requested
        wanted = None if flags.property_list is None else {
            p.lower() for p in flags.property_list}
        out = CIMInstance(actual.classname)
        for prop in actual.properties.values():
            lname = prop.name.lower()
            in_requested = prop.name in requested.properties
            if not flags.deep and not in_requested:
                continue
            if flags.local_only and in_requested and requested.properties[prop.name].propagated:
                continue
            if wanted is not None and lname not in wanted:
                continue
            value = inst.properties[prop.name].value if prop.name in inst.properties else None
            if value is None and wanted is None and not cimxml.is_key(prop):
                continue
            if isinstance(value, CIMInstanceName):
                value = value.copy()
                value.namespace = value.namespace or nss.name
                value.host = None
            out.properties[prop.name] = CIMProperty(
                prop.name, value, type=prop.type, is_array=prop.is_array,
                reference_class=prop.reference_class, embedded_object=prop.embedded_object,
                class_origin=prop.class_origin if flags.class_origin else None,
                propagated=prop.propagated if flags.class_origin else None,
                qualifiers=prop.qualifiers if flags.qualifiers else None)
        out.path = self.instance_path(nss, inst, host)
        return out

    def instance_path(self, nss: NamespaceSchema, inst: CIMInstance, host: str | None
                      ) -> CIMInstanceName:
        path = inst.path.copy()
        path.classname = inst.classname
        path.namespace = nss.name
        path.host = host
        return path


def shape_class(cls: CIMClass, local_only: bool, qualifiers: bool, class_origin: bool,
                property_list: list[str] | None = None) -> CIMClass:
    """A shaped copy; ``cls`` (the cached schema class) is never changed.

    ``CIMClass.copy`` shares the property, method and parameter objects with the original,
    so those being edited below are copied one level down too.
    """
    out = cls.copy()
    for name, prop in list(out.properties.items()):
        out.properties[name] = prop.copy()
    for name, meth in list(out.methods.items()):
        meth = meth.copy()
        for pname, param in list(meth.parameters.items()):
            meth.parameters[pname] = param.copy()
        out.methods[name] = meth
    if local_only:
        for coll in (out.properties, out.methods):
            for name in [n for n, f in coll.items() if f.propagated]:
                del coll[name]
    if property_list is not None:
        wanted = {p.lower() for p in property_list}
        for name in [n for n in out.properties if n.lower() not in wanted]:
            del out.properties[name]
    features = [*out.properties.values(), *out.methods.values()]
    params = [p for m in out.methods.values() for p in m.parameters.values()]
    if not qualifiers:
        out.qualifiers = {}
        for f in (*features, *params):
            f.qualifiers = {}
    if not class_origin:
        for f in features:
            f.class_origin = None
    return out


class _Op:
    """One intrinsic call: parameter access with DSP0200 defaults and checks."""

    def __init__(self, disp: Dispatcher, req: cimxml.CIMRequest, user: str, host: str):
        self.d = disp
        self.req = req
        self.user = user
        self.host = host
        self.params = req.params
        self._used: set[str] = set()

    def nss(self) -> NamespaceSchema:
        return self.d.namespace(self.req.namespace)

    def allow(self, *names: str) -> None:
        allowed = {n.lower() for n in names}
        for name in self.params:
            if name.lower() not in allowed:
                raise _err(CIM_ERR_INVALID_PARAMETER,
                           f"{self.req.method} has no parameter {name}")

    def flag(self, name: str, default: bool) -> bool:
        value = self.params.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} must be a boolean")

    def string(self, name: str, required: bool = False, what: str = "a string") -> str | None:
        """A string parameter (a class name given as CIMClassName counts as its name)."""
        value = self.params.get(name)
        if value is None:
            if required:
                raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} is required")
            return None
        if isinstance(value, CIMClassName):
            return value.classname
        if not isinstance(value, str):
            raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} must be {what}")
        return value

    def uint(self, name: str, default: int | None) -> int | None:
        value = self.params.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} must be an integer") from None
        if number < 0 or number > 0xFFFFFFFF:
            raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} is out of range")
        return number

    def property_list(self) -> list[str] | None:
        value = self.params.get("PropertyList")
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise _err(CIM_ERR_INVALID_PARAMETER, "PropertyList must be an array of strings")

    def classname(self, name: str = "ClassName", required: bool = True) -> str | None:
        return self.string(name, required, what="a class name")

    def existing_class(self, nss: NamespaceSchema, name: str, code: int = CIM_ERR_INVALID_CLASS
                       ) -> CIMClass:
        cls = nss.get_class(name)
        if cls is None:
            raise _err(code, f"class {name} does not exist in namespace {nss.name}")
        return cls

    def instance_name(self, name: str) -> CIMInstanceName:
        value = self.params.get(name)
        if not isinstance(value, CIMInstanceName):
            raise _err(CIM_ERR_INVALID_PARAMETER, f"{name} must be an instance name")
        return value

    def object_name(self) -> CIMInstanceName | CIMClassName:
        value = self.params.get("ObjectName")
        if isinstance(value, (CIMInstanceName, CIMClassName)):
            return value
        if isinstance(value, str):
            return CIMClassName(value)
        raise _err(CIM_ERR_INVALID_PARAMETER, "ObjectName must be a class or instance name")

    def instance_flags(self, local_only_param: bool = True) -> Flags:
        # LocalOnly on instances is deprecated (DSP0200 1.4); absent means false here.
        return Flags(
            local_only=self.flag("LocalOnly", False) if local_only_param else False,
            deep=self.flag("DeepInheritance", True),
            qualifiers=self.flag("IncludeQualifiers", False),
            class_origin=self.flag("IncludeClassOrigin", False),
            property_list=self.property_list(),
        )

    def no_filter(self) -> None:
        if self.params.get("FilterQueryLanguage") or self.params.get("FilterQuery"):
            raise _err(CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED,
                       "filtered enumeration is not supported")
        if self.flag("ContinueOnError", False):
            raise _err(CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED,
                       "ContinueOnError is not supported")


Handler = Callable[[_Op], tuple[str | None, list[tuple[str, str]]]]
_INTRINSIC: dict[str, Handler] = {}


def intrinsic(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _INTRINSIC[name.lower()] = fn
        return fn
    return deco


# ---------------------------------------------------------------- classes and qualifiers

@intrinsic("GetClass")
def _get_class(op: _Op):
    op.allow("ClassName", "LocalOnly", "IncludeQualifiers", "IncludeClassOrigin", "PropertyList")
    nss = op.nss()
    cls = op.existing_class(nss, op.classname(), CIM_ERR_NOT_FOUND)
    out = shape_class(cls, op.flag("LocalOnly", True), op.flag("IncludeQualifiers", True),
                      op.flag("IncludeClassOrigin", False), op.property_list())
    return out.tocimxmlstr(), []


def _class_names(op: _Op) -> tuple[NamespaceSchema, list[str]]:
    nss = op.nss()
    base = op.classname(required=False)
    if base is not None:
        op.existing_class(nss, base)
    return nss, nss.subclass_names(base, deep=op.flag("DeepInheritance", False))


@intrinsic("EnumerateClasses")
def _enumerate_classes(op: _Op):
    op.allow("ClassName", "DeepInheritance", "LocalOnly", "IncludeQualifiers",
             "IncludeClassOrigin")
    nss, names = _class_names(op)
    lo, q, co = (op.flag("LocalOnly", True), op.flag("IncludeQualifiers", True),
                 op.flag("IncludeClassOrigin", False))
    return "".join(shape_class(nss.get_class(n), lo, q, co).tocimxmlstr() for n in names), []


@intrinsic("EnumerateClassNames")
def _enumerate_class_names(op: _Op):
    op.allow("ClassName", "DeepInheritance")
    _nss, names = _class_names(op)
    return "".join(CIMClassName(n).tocimxmlstr() for n in names), []


@intrinsic("GetQualifier")
def _get_qualifier(op: _Op):
    op.allow("QualifierName")
    nss = op.nss()
    name = op.string("QualifierName", required=True)
    qual = nss.qualifiers.get(name.lower())
    if qual is None:
        raise _err(CIM_ERR_NOT_FOUND, f"qualifier {name} is not declared in {nss.name}")
    return qual.tocimxmlstr(), []


@intrinsic("EnumerateQualifiers")
def _enumerate_qualifiers(op: _Op):
    op.allow()
    nss = op.nss()
    return "".join(q.tocimxmlstr() for q in nss.qualifiers.values()), []


# ---------------------------------------------------------------- instances

def _enumerate(op: _Op, classname: str) -> tuple[NamespaceSchema, CIMClass, Iterator[Row]]:
    nss = op.nss()
    requested = op.existing_class(nss, classname)
    return nss, requested, op.d.rows(nss, requested.classname)


def _writer_of(op: _Op, nss: NamespaceSchema, requested: CIMClass, flags: Flags
               ) -> Callable[[Row], InstanceWriter]:
    """Row -> its class's writer (the last one kept: rows mostly come class by class)."""
    last: list[Any] = [None, None]

    def writer(row: Row) -> InstanceWriter:
        if last[0] != row.classname:
            last[0], last[1] = row.classname, op.d.writer(nss, row.classname, requested, flags)
        return last[1]
    return writer


@intrinsic("EnumerateInstances")
def _enumerate_instances(op: _Op):
    op.allow("ClassName", "LocalOnly", "DeepInheritance", "IncludeQualifiers",
             "IncludeClassOrigin", "PropertyList")
    flags = op.instance_flags()
    nss, requested, rows = _enumerate(op, op.classname())
    writer = _writer_of(op, nss, requested, flags)
    return Clean("".join(writer(r).named_instance(r.keys, r.props) for r in rows)), []


@intrinsic("EnumerateInstanceNames")
def _enumerate_instance_names(op: _Op):
    op.allow("ClassName")
    _nss, _cls, rows = _enumerate(op, op.classname())
    return Clean("".join(cimxml.instance_name_xml(r.classname, r.keys) for r in rows)), []


def _lookup(op: _Op, path: CIMInstanceName) -> tuple[NamespaceSchema, CIMClass, Row]:
    nss = op.nss()
    cls = op.existing_class(nss, path.classname)
    found = op.d.get_row(_local(path, nss.name), nss.name)
    if found is None:
        raise _err(CIM_ERR_NOT_FOUND, f"no instance {path}")
    return nss, cls, found[1]


def _local(path: CIMInstanceName, namespace: str) -> CIMInstanceName:
    path = path.copy()
    path.namespace = path.namespace or namespace
    path.host = None
    return path


@intrinsic("GetInstance")
def _get_instance(op: _Op):
    op.allow("InstanceName", "LocalOnly", "IncludeQualifiers", "IncludeClassOrigin",
             "PropertyList")
    nss, cls, row = _lookup(op, op.instance_name("InstanceName"))
    actual = nss.get_class(row.classname) or cls
    writer = op.d.writer(nss, row.classname, actual, op.instance_flags())
    return Clean(writer.instance(row.props)), []


def _writable_provider(op: _Op, classname: str):
    nss = op.nss()
    cls = op.existing_class(nss, classname)
    provider = op.d.registry.get(nss.name, cls.classname)
    if provider is None or not provider.writable:
        raise _err(CIM_ERR_NOT_SUPPORTED,
                   f"instances of {cls.classname} cannot be created or deleted here")
    return nss, cls, provider


@intrinsic("CreateInstance")
def _create_instance(op: _Op):
    op.allow("NewInstance")
    new = op.params.get("NewInstance")
    if not isinstance(new, CIMInstance):
        raise _err(CIM_ERR_INVALID_PARAMETER, "NewInstance must be an instance")
    _nss, cls, provider = _writable_provider(op, new.classname)
    for name in new.properties:
        if name not in cls.properties:
            raise _err(CIM_ERR_INVALID_PARAMETER, f"class {cls.classname} has no property {name}")
    path = provider.create(new)
    path = path.copy()
    path.namespace = None
    path.host = None
    return path.tocimxmlstr(), []


@intrinsic("DeleteInstance")
def _delete_instance(op: _Op):
    op.allow("InstanceName")
    path = op.instance_name("InstanceName")
    nss, _cls, provider = _writable_provider(op, path.classname)
    provider.delete(_local(path, nss.name))
    return None, []


@intrinsic("GetProperty")
def _get_property(op: _Op):
    op.allow("InstanceName", "PropertyName")
    path = op.instance_name("InstanceName")
    name = op.string("PropertyName", required=True)
    nss, cls, row = _lookup(op, path)
    actual = nss.get_class(row.classname) or cls
    if name not in actual.properties:
        raise _err(CIM_ERR_NO_SUCH_PROPERTY, f"class {actual.classname} has no property {name}")
    inst = row.instance()
    value = inst.properties[name].value if name in inst.properties else None
    return (cimxml.value_xml(value) if value is not None else ""), []


# ---------------------------------------------------------------- associations

@dataclass
class _AssocQuery:
    assoc_class: str | None = None
    result_class: str | None = None
    role: str | None = None
    result_role: str | None = None


def _assoc_classes(op: _Op, nss: NamespaceSchema, assoc_class: str | None) -> list[str]:
    if assoc_class is not None and nss.get_class(assoc_class) is None:
        raise _err(CIM_ERR_INVALID_PARAMETER, f"class {assoc_class} does not exist")
    return op.d.association_names(nss, assoc_class)


def _check_result_class(nss: NamespaceSchema, name: str | None) -> None:
    if name is not None and nss.get_class(name) is None:
        raise _err(CIM_ERR_INVALID_PARAMETER, f"class {name} does not exist")


def _reference_rows(op: _Op, target: CIMInstanceName, q: _AssocQuery) -> Iterator[Row]:
    """Every association row pointing at ``target``, once, from the providers' look-ups."""
    nss = op.nss()
    seen: set[PathKey] = set()
    for name in _assoc_classes(op, nss, q.assoc_class):
        provider = op.d.registry.get(nss.name, name)
        if provider is None:
            continue
        for row in provider.reference_rows(target, q.role):
            request.check()
            key = path_key(row.classname, row.keys, row.namespace or nss.name)
            if key in seen:
                continue
            seen.add(key)
            yield row


def _target(op: _Op, value: CIMInstanceName) -> CIMInstanceName:
    nss = op.nss()
    op.existing_class(nss, value.classname)
    return _local(value, nss.name)


def _references(op: _Op, target: CIMInstanceName, q: _AssocQuery) -> list[Row]:
    nss = op.nss()
    return [r for r in _reference_rows(op, target, q)
            if not q.result_class or nss.is_subclass(r.classname, q.result_class)]


def _associated_paths(op: _Op, target: CIMInstanceName, q: _AssocQuery
                      ) -> list[CIMInstanceName]:
    nss = op.nss()
    want = key_of(target, nss.name)
    role = q.role.lower() if q.role else None
    result_role = q.result_role.lower() if q.result_role else None
    out: list[CIMInstanceName] = []
    seen: set[PathKey] = set()
    for row in _reference_rows(op, target, q):
        refs = [(n, v) for n, v in row.props.items() if isinstance(v, CIMInstanceName)]
        here = {n for n, v in refs if (role is None or n.lower() == role)
                and key_of(v, nss.name) == want}
        for name, value in refs:
            if name in here or (result_role and name.lower() != result_role):
                continue
            key = key_of(value, nss.name)
            if key in seen:
                continue
            if q.result_class:
                other = op.d.schema.namespace(value.namespace or nss.name)
                if other is None or not other.is_subclass(value.classname, q.result_class):
                    continue
            seen.add(key)
            out.append(value if value.namespace and value.host is None
                       else normalized(value, nss.name))
    return out


def _associated_rows(op: _Op, paths: Iterable[CIMInstanceName]
                     ) -> Iterator[tuple[NamespaceSchema, Row]]:
    """The elements at ``paths`` (dangling references, whose element went away, left out)."""
    for path in paths:
        request.check()
        found = op.d.get_row(path, op.req.namespace)
        if found is not None:
            yield found


def _query(op: _Op, associators: bool) -> _AssocQuery:
    nss = op.nss()
    q = _AssocQuery(
        assoc_class=op.classname("AssocClass", required=False) if associators else None,
        result_class=op.classname("ResultClass", required=False),
        role=op.string("Role"),
        result_role=op.string("ResultRole") if associators else None,
    )
    if associators:
        # the associated objects may be in another namespace this server serves (profiles
        # in interop: pywbemcli's shrub asks for them from every element)
        if q.result_class and all(n.get_class(q.result_class) is None for n in op.d.schema):
            raise _err(CIM_ERR_INVALID_PARAMETER, f"class {q.result_class} does not exist")
    else:
        _check_result_class(nss, q.result_class)
    if q.assoc_class:
        _check_result_class(nss, q.assoc_class)
    return q


def _class_level(op: _Op, target: CIMClassName, q: _AssocQuery, associators: bool
                 ) -> list[tuple[CIMClass, CIMClassName]]:
    """Class-level association traversal: the association classes (or the classes at their
    other ends) that refer to ``target`` or one of its superclasses."""
    nss = op.nss()
    op.existing_class(nss, target.classname)
    chain = {c.lower() for c in nss.superclass_chain(target.classname)}
    found: dict[str, CIMClass] = {}
    for name in _assoc_classes(op, nss, q.assoc_class):
        assoc = nss.get_class(name)
        refs = [p for p in assoc.properties.values() if p.type == "reference"]
        here = [p for p in refs if p.reference_class.lower() in chain
                and (q.role is None or p.name.lower() == q.role.lower())]
        if not here:
            continue
        if not associators:
            if q.result_class is None or nss.is_subclass(name, q.result_class):
                found[name.lower()] = assoc
            continue
        for prop in refs:
            if prop in here and len(here) == 1:
                continue
            if q.result_role and prop.name.lower() != q.result_role.lower():
                continue
            other = nss.get_class(prop.reference_class)
            if other is None:
                continue
            if q.result_class and not nss.is_subclass(other.classname, q.result_class):
                continue
            found[other.classname.lower()] = other
    return [(c, CIMClassName(c.classname, namespace=nss.name, host=op.host))
            for c in found.values()]


_OPEN_COMMON = ("FilterQueryLanguage", "FilterQuery", "OperationTimeout", "ContinueOnError",
                "MaxObjectCount")


@dataclass(frozen=True)
class _AssocKind:
    """Which of the eight association operations: they differ only in these three ways."""

    associators: bool  # the elements at the other ends (else the association instances)
    paths: bool  # paths only (else instances trimmed by the request's flags)
    pull: bool  # OpenXxx: InstanceName, pull parameters, results in an enumeration context

    def parameters(self) -> tuple[str, ...]:
        names = ["InstanceName" if self.pull else "ObjectName", "ResultClass", "Role"]
        if self.associators:
            names += ["AssocClass", "ResultRole"]
        if not self.paths:
            names += ["IncludeClassOrigin", "PropertyList"]
            if not self.pull:
                names.append("IncludeQualifiers")  # not a pull operation parameter (DSP0200)
        if self.pull:
            names += _OPEN_COMMON
        return tuple(names)


_ASSOC_OPERATIONS = {
    "Associators": _AssocKind(associators=True, paths=False, pull=False),
    "AssociatorNames": _AssocKind(associators=True, paths=True, pull=False),
    "References": _AssocKind(associators=False, paths=False, pull=False),
    "ReferenceNames": _AssocKind(associators=False, paths=True, pull=False),
    "OpenAssociatorInstances": _AssocKind(associators=True, paths=False, pull=True),
    "OpenAssociatorInstancePaths": _AssocKind(associators=True, paths=True, pull=True),
    "OpenReferenceInstances": _AssocKind(associators=False, paths=False, pull=True),
    "OpenReferenceInstancePaths": _AssocKind(associators=False, paths=True, pull=True),
}


def _assoc_flags(op: _Op, kind: _AssocKind) -> Flags:
    if kind.paths:
        return Flags(property_list=[])  # only the paths are sent: no properties to shape
    return Flags(qualifiers=op.flag("IncludeQualifiers", False),
                 class_origin=op.flag("IncludeClassOrigin", False),
                 property_list=op.property_list())


def _assoc_class_level(op: _Op, kind: _AssocKind, target: CIMClassName, q: _AssocQuery,
                       flags: Flags) -> str:
    found = _class_level(op, target, q, kind.associators)
    if kind.paths:
        return "".join(cimxml.object_path(p) for _c, p in found)
    return "".join(cimxml.object_with_path(
        shape_class(c, False, flags.qualifiers, flags.class_origin, flags.property_list), p)
        for c, p in found)


def _assoc_results(op: _Op, kind: _AssocKind, target: CIMInstanceName, q: _AssocQuery,
                   flags: Flags) -> Iterator[str]:
    """The XML of each answer: OBJECTPATH / VALUE.OBJECTWITHPATH (pull: INSTANCEPATH /
    VALUE.INSTANCEWITHPATH); dangling references are left out of both."""
    if kind.associators:
        found: Iterable[tuple[NamespaceSchema, Row]] = list(
            _associated_rows(op, _associated_paths(op, target, q)))
    else:
        nss = op.nss()
        found = [(nss, r) for r in _references(op, target, q)]
    host = op.host
    for nss, row in found:
        if kind.paths:
            path = cimxml.instance_path_xml(row.classname, row.keys, nss.name, host)
            yield path if kind.pull else f"<OBJECTPATH>{path}</OBJECTPATH>"
            continue
        cls = nss.get_class(row.classname)
        writer = op.d.writer(nss, row.classname, cls, flags)
        if kind.pull:
            yield writer.instance_with_path(row.keys, row.props, host)
        else:
            yield writer.object_with_path(row.keys, row.props, host)


def _association_operation(op: _Op, kind: _AssocKind):
    """Associators, AssociatorNames, References, ReferenceNames and their pull variants."""
    op.allow(*kind.parameters())
    if kind.pull:
        op.no_filter()
    q = _query(op, kind.associators)
    if kind.pull:  # a pull operation checks its flags first, the others their ObjectName
        flags, obj = _assoc_flags(op, kind), op.instance_name("InstanceName")
    else:
        obj, flags = op.object_name(), _assoc_flags(op, kind)
    if isinstance(obj, CIMClassName):  # class-level traversal: never for pull operations
        return _assoc_class_level(op, kind, obj, q, flags), []
    items = _assoc_results(op, kind, _target(op, obj), q, flags)
    if kind.pull:
        return _open(op, "paths" if kind.paths else "instances", items)
    return Clean("".join(_checked(items))), []


def _checked(items: Iterable[str]) -> Iterator[str]:
    for item in items:
        request.check()
        yield item


for _name, _kind in _ASSOC_OPERATIONS.items():
    intrinsic(_name)(functools.partial(_association_operation, kind=_kind))


# ---------------------------------------------------------------- pull operations

def _open(op: _Op, kind: str, items: Iterator[str]):
    """Open an enumeration context over ``items`` (the XML of each element, made as the
    pulls ask for them: a page of rows at a time from the store)."""
    op.no_filter()
    timeout = op.uint("OperationTimeout", DEFAULT_OPERATION_TIMEOUT)
    if timeout == 0 or timeout > MAX_OPERATION_TIMEOUT:
        raise _err(CIM_ERR_INVALID_OPERATION_TIMEOUT,
                   f"OperationTimeout must be 1..{MAX_OPERATION_TIMEOUT} seconds")
    count = min(op.uint("MaxObjectCount", 0), MAX_PULL_COUNT)
    ctx = _Context(kind, op.nss().name, op.user, iter(items), timeout)
    return _deliver(op, ctx, count, None)


def _deliver(op: _Op, ctx: _Context, count: int, ctx_id: str | None):
    d = op.d
    try:
        batch, end = ctx.take(count)
    except BaseException:
        if ctx_id is not None:  # the producer failed (time limit...): the context is spent
            with d._ctx_lock:
                d._contexts.pop(ctx_id, None)
        raise
    with d._ctx_lock:
        _expire(d)
        if end:
            if ctx_id is not None:
                d._contexts.pop(ctx_id, None)
            ctx_id = ""
        else:
            if ctx_id is None:
                if len(d._contexts) >= MAX_OPEN_CONTEXTS:
                    raise _err(CIM_ERR_SERVER_LIMITS_EXCEEDED, "too many open enumerations")
                ctx_id = uuid.uuid4().hex
            ctx.touch()
            d._contexts[ctx_id] = ctx
    return Clean("".join(batch)), [("EndOfSequence", cimxml.boolean_value(end)),
                                   ("EnumerationContext", cimxml.string_value(ctx_id))]


def _expire(d: Dispatcher) -> None:
    now = time.monotonic()
    for key in [k for k, c in d._contexts.items() if c.expires < now]:
        del d._contexts[key]


def _take_context(op: _Op, kind: str | None) -> tuple[str, _Context]:
    ctx_id = op.string("EnumerationContext", required=True)
    d = op.d
    with d._ctx_lock:
        _expire(d)
        ctx = d._contexts.get(ctx_id)
        if ctx is None or ctx.owner != op.user or \
                ctx.namespace.lower() != op.nss().name.lower() or \
                (kind is not None and ctx.kind != kind):
            raise _err(CIM_ERR_INVALID_ENUMERATION_CONTEXT, "invalid enumeration context")
        if not ctx.lock.acquire(blocking=False):
            raise _err(CIM_ERR_FAILED, "enumeration context is in use by another pull")
    return ctx_id, ctx


@intrinsic("OpenEnumerateInstances")
def _open_enumerate_instances(op: _Op):
    op.allow("ClassName", "DeepInheritance", "IncludeClassOrigin", "PropertyList", *_OPEN_COMMON)
    flags = op.instance_flags(local_only_param=False)
    op.no_filter()
    nss, requested, rows = _enumerate(op, op.classname())
    writer, host = _writer_of(op, nss, requested, flags), op.host
    return _open(op, "instances", (writer(r).instance_with_path(r.keys, r.lower(), host)
                                   for r in rows))


@intrinsic("OpenEnumerateInstancePaths")
def _open_enumerate_instance_paths(op: _Op):
    op.allow("ClassName", *_OPEN_COMMON)
    op.no_filter()
    nss, _cls, rows = _enumerate(op, op.classname())
    host = op.host
    return _open(op, "paths", (cimxml.instance_path_xml(r.classname, r.keys, nss.name, host)
                               for r in rows))


def _pull(op: _Op, kind: str):
    op.allow("EnumerationContext", "MaxObjectCount")
    if op.params.get("MaxObjectCount") is None:
        raise _err(CIM_ERR_INVALID_PARAMETER, "MaxObjectCount is required")
    count = min(op.uint("MaxObjectCount", 0), MAX_PULL_COUNT)
    ctx_id, ctx = _take_context(op, kind)
    try:
        return _deliver(op, ctx, count, ctx_id)
    finally:
        ctx.lock.release()


@intrinsic("PullInstancesWithPath")
def _pull_instances_with_path(op: _Op):
    return _pull(op, "instances")


@intrinsic("PullInstancePaths")
def _pull_instance_paths(op: _Op):
    return _pull(op, "paths")


@intrinsic("CloseEnumeration")
def _close_enumeration(op: _Op):
    op.allow("EnumerationContext")
    ctx_id, ctx = _take_context(op, None)
    try:
        with op.d._ctx_lock:
            op.d._contexts.pop(ctx_id, None)
    finally:
        ctx.lock.release()
    return None, []
