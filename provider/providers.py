"""Where instances come from: one InstanceProvider per CIM class, kept in a ProviderRegistry.

A provider yields complete instances of exactly its class (path with keybindings; the
dispatcher adds host and namespace and trims properties per the request's flags). A provider
backed by the state store only has to implement ``enumerate``; ``get`` and ``references``
have scanning defaults that such a provider can replace with indexed look-ups.

The dispatcher reads providers through ``rows`` / ``get_row`` / ``reference_rows``: a
``Row`` is an instance as plain values (class name, keys, properties), which the response
writer turns into CIM-XML without building pywbem objects. Their defaults convert from the
CIMInstance methods, so a provider may implement either side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pywbem

_LIST_TYPE = "string"  # an empty array without a value to infer a type from (class decides)


class Row:
    """One instance as plain values: ``keys`` (the path's keybindings) and ``props`` (the
    properties; keys are properties too). A value None, or a property left out, is NULL."""

    __slots__ = ("_lower", "classname", "keys", "namespace", "props")

    def __init__(self, classname: str, keys: dict[str, Any], props: dict[str, Any] | None = None,
                 namespace: str | None = None):
        self.classname = classname
        self.keys = keys
        self.props = {**keys, **props} if props else dict(keys)
        self.namespace = namespace
        self._lower: dict[str, Any] | None = None

    @classmethod
    def of(cls, inst: pywbem.CIMInstance) -> Row:
        path = inst.path
        keys = dict(path.keybindings.items()) if path is not None else {}
        row = cls(inst.classname, keys, None, path.namespace if path is not None else None)
        row.props = {p.name: p.value for p in inst.properties.values()}
        return row

    def lower(self) -> dict[str, Any]:
        """The properties by lower-case name (CIM names are case-insensitive)."""
        if self._lower is None:
            self._lower = {k.lower(): v for k, v in self.props.items()}
        return self._lower

    def path(self) -> pywbem.CIMInstanceName:
        return pywbem.CIMInstanceName(self.classname, self.keys, namespace=self.namespace)

    def instance(self) -> pywbem.CIMInstance:
        """The pywbem instance: NULL properties left out, an empty list an empty array."""
        inst = pywbem.CIMInstance(self.classname, path=self.path())
        for name, value in self.props.items():
            if isinstance(value, list) and not value:
                inst.properties[name] = pywbem.CIMProperty(name, [], type=_LIST_TYPE,
                                                           is_array=True)
            elif value is not None:
                inst[name] = value
        return inst


def as_row(item: pywbem.CIMInstance | Row) -> Row:
    return item if isinstance(item, Row) else Row.of(item)


def as_instance(item: pywbem.CIMInstance | Row) -> pywbem.CIMInstance:
    return item.instance() if isinstance(item, Row) else item


PathKey = tuple


def path_key(classname: str, keys: Any, namespace: str | None) -> PathKey:
    """A hashable key with the equality of pywbem's CIMInstanceName == on ``normalized``
    paths (names case-insensitive, host ignored, namespace without slashes), built without
    copying pywbem objects: what the association code puts in its sets."""
    ns = namespace.strip("/").lower() if namespace else None
    items = []
    for name, value in keys.items():
        if isinstance(value, pywbem.CIMInstanceName):
            value = path_key(value.classname, value.keybindings, value.namespace or namespace)
        items.append((name.lower(), value))
    items.sort(key=lambda item: item[0])
    return (classname.lower(), ns, tuple(items))


def key_of(path: pywbem.CIMInstanceName, namespace: str | None = None) -> PathKey:
    """``path_key`` of a CIMInstanceName (``namespace`` when it has none)."""
    return path_key(path.classname, path.keybindings, path.namespace or namespace)


def normalized(path: pywbem.CIMInstanceName, namespace: str | None = None
               ) -> pywbem.CIMInstanceName:
    """A copy for set membership and equality (pywbem's CIMInstanceName hash and ==, which
    ignore the case of names): no host, namespace without surrounding slashes (``namespace``
    when the path has none), references among the keys normalized the same way."""
    out = path.copy()
    out.host = None
    ns = out.namespace or namespace
    out.namespace = ns.strip("/") if ns else None
    if any(isinstance(v, pywbem.CIMInstanceName) for v in out.keybindings.values()):
        out.keybindings = {k: normalized(v, out.namespace)
                           if isinstance(v, pywbem.CIMInstanceName) else v
                           for k, v in out.keybindings.items()}
    return out


def same_path(a: pywbem.CIMInstanceName, b: pywbem.CIMInstanceName) -> bool:
    """Equal class and keys (case-insensitive names), ignoring host; namespaces if both set."""
    if a.classname.lower() != b.classname.lower():
        return False
    if a.namespace and b.namespace and a.namespace.strip("/").lower() != \
            b.namespace.strip("/").lower():
        return False
    if len(a.keybindings) != len(b.keybindings):
        return False
    for key, value in a.keybindings.items():
        if key not in b.keybindings:
            return False
        other = b.keybindings[key]
        if isinstance(value, pywbem.CIMInstanceName) and isinstance(other, pywbem.CIMInstanceName):
            if not same_path(value, other):
                return False
        elif str(value) != str(other):
            return False
    return True


class InstanceProvider:
    """Serves the instances of one CIM class in one namespace."""

    classname: str = ""
    # True when the provider implements create() and delete() (CreateInstance, DeleteInstance)
    writable: bool = False

    def enumerate(self) -> Iterable[pywbem.CIMInstance]:
        raise NotImplementedError

    def create(self, instance: pywbem.CIMInstance) -> pywbem.CIMInstanceName:
        raise NotImplementedError

    def delete(self, path: pywbem.CIMInstanceName) -> None:
        raise NotImplementedError

    def get(self, path: pywbem.CIMInstanceName) -> pywbem.CIMInstance | None:
        for inst in self.enumerate():
            if same_path(inst.path, path):
                return inst
        return None

    def rows(self) -> Iterable[Row]:
        """The instances as rows (what the dispatcher reads)."""
        return (as_row(i) for i in self.enumerate())

    def get_row(self, path: pywbem.CIMInstanceName) -> Row | None:
        inst = self.get(path)
        return None if inst is None else as_row(inst)

    def reference_rows(self, target: pywbem.CIMInstanceName,
                       role: str | None = None) -> Iterable[Row]:
        """``references`` as rows; an association provider with an index answers this
        directly (cost of the result, not of every association instance)."""
        return (as_row(i) for i in self.references(target, role))

    def references(self, target: pywbem.CIMInstanceName,
                   role: str | None = None) -> Iterator[pywbem.CIMInstance]:
        """Association instances whose reference ``role`` (any, if None) points at ``target``.

        Only meaningful for association classes.
        """
        for inst in self.enumerate():
            for prop in inst.properties.values():
                if prop.type != "reference" or prop.value is None:
                    continue
                if role and prop.name.lower() != role.lower():
                    continue
                if same_path(prop.value, target):
                    yield inst
                    break


class StaticProvider(InstanceProvider):
    """Instances from a list (or a callable returning one), e.g. fixed interop objects or tests."""

    def __init__(self, classname: str,
                 instances: Iterable[pywbem.CIMInstance] | Callable[[], Iterable[Any]]):
        self.classname = classname
        self._source = instances if callable(instances) else list(instances)
        self._lock = threading.Lock()

    def enumerate(self) -> Iterable[pywbem.CIMInstance]:
        if callable(self._source):
            return list(self._source())
        with self._lock:
            return list(self._source)

    def replace(self, instances: Iterable[pywbem.CIMInstance]) -> None:
        with self._lock:
            self._source = list(instances)


def make_instance(classname: str, keys: dict[str, Any], properties: dict[str, Any]
                  ) -> pywbem.CIMInstance:
    """An instance whose path carries ``keys``; ``properties`` may repeat or extend them."""
    path = pywbem.CIMInstanceName(classname, keybindings=keys)
    inst = pywbem.CIMInstance(classname, path=path)
    for name, value in {**keys, **properties}.items():
        inst[name] = value
    return inst


class ProviderRegistry:
    """Providers by (namespace, class name), case-insensitive."""

    def __init__(self) -> None:
        self._providers: dict[tuple[str, str], InstanceProvider] = {}

    def register(self, namespace: str, provider: InstanceProvider) -> None:
        self._providers[(namespace.strip("/").lower(), provider.classname.lower())] = provider

    def get(self, namespace: str, classname: str) -> InstanceProvider | None:
        return self._providers.get((namespace.strip("/").lower(), classname.lower()))

    def namespaces(self) -> set[str]:
        return {ns for ns, _cls in self._providers}
