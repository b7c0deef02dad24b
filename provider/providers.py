"""Where instances come from: one InstanceProvider per CIM class, kept in a ProviderRegistry.

A provider yields complete instances of exactly its class (path with keybindings; the
dispatcher adds host and namespace and trims properties per the request's flags). A provider
backed by the state store only has to implement ``enumerate``; ``get`` and ``references``
have scanning defaults that such a provider can replace with indexed look-ups.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pywbem


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
