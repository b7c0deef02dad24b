"""The interop namespace: namespaces, the object manager and the registered profiles (DSP1033).

Everything here is computed from the schema, the server identity and the providers registered
for ``root/ediv``; ElementConformsToProfile links each profile to its central instances, which
for the virtualization profiles live in ``root/ediv`` (cross-namespace references).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pywbem import CIMInstance, CIMInstanceName, Uint16

from ediv import __version__ as _ediv_version
from ediv.provider.providers import (
    InstanceProvider,
    ProviderRegistry,
    Row,
    StaticProvider,
    key_of,
    make_instance,
    normalized,
)
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE

BRAND = "ediv"
ORG_DMTF = 2
ORG_OTHER = 1


@dataclass(frozen=True)
class Profile:
    organization: int
    name: str
    version: str
    other_organization: str | None = None
    # (namespace, class, more classes...) of the central instances; None: none
    central: tuple[str, ...] | None = None
    # name of the autonomous profile that scopes this component profile
    scoped_by: str | None = None

    @property
    def instance_id(self) -> str:
        org = self.other_organization or "DMTF"
        return f"ediv:{org}+{self.name}+{self.version}".replace(" ", "_")


PROFILES: tuple[Profile, ...] = (
    Profile(ORG_DMTF, "Profile Registration", "1.0.0",
            central=(INTEROP_NAMESPACE, "CIM_ObjectManager")),
    Profile(ORG_DMTF, "System Virtualization", "1.0.0",
            central=(EDIV_NAMESPACE, "EDIV_HostSystem")),
    Profile(ORG_DMTF, "Virtual System", "1.0.0",
            central=(EDIV_NAMESPACE, "EDIV_VirtualSystem"), scoped_by="System Virtualization"),
    Profile(ORG_DMTF, "Resource Allocation", "1.1.0", scoped_by="System Virtualization",
            central=(EDIV_NAMESPACE, "EDIV_ProcessorPool", "EDIV_MemoryPool",
                     "EDIV_NetworkPortPool", "EDIV_StoragePool")),
    Profile(ORG_DMTF, "Allocation Capabilities", "1.0.0", scoped_by="System Virtualization",
            central=(EDIV_NAMESPACE, "EDIV_AllocationCapabilities")),
    Profile(ORG_OTHER, "EDIV Distributed Scenario", "1.0.0", other_organization="ediv",
            central=(EDIV_NAMESPACE, "EDIV_Scenario"), scoped_by="System Virtualization"),
)


def server_version() -> str:
    return _ediv_version


class InteropModel:
    """Builds the interop instances; registered into a ProviderRegistry by ``register``."""

    def __init__(self, registry: ProviderRegistry, namespaces: list[str],
                 system_name: str | None = None):
        self.registry = registry
        self.namespaces = namespaces
        self.system_name = system_name or socket.getfqdn()

    # -- object manager and namespaces
    def object_manager_path(self) -> CIMInstanceName:
        return CIMInstanceName("CIM_ObjectManager", {
            "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": self.system_name,
            "CreationClassName": "CIM_ObjectManager", "Name": BRAND,
        }, namespace=INTEROP_NAMESPACE)

    def object_manager(self) -> list[CIMInstance]:
        keys = dict(self.object_manager_path().keybindings)
        return [make_instance("CIM_ObjectManager", keys, {
            "ElementName": BRAND,
            "Caption": "ediv WBEM server",
            "Description": f"ediv WBEM server version {server_version()}",
            "EnabledState": Uint16(2), "RequestedState": Uint16(12),
            "OperationalStatus": [Uint16(2)], "Started": True,
            "GatherStatisticalData": False,
        })]

    def namespace_instances(self) -> list[CIMInstance]:
        om = self.object_manager_path().keybindings
        out = []
        for name in self.namespaces:
            keys = {
                "SystemCreationClassName": om["SystemCreationClassName"],
                "SystemName": om["SystemName"],
                "ObjectManagerCreationClassName": om["CreationClassName"],
                "ObjectManagerName": om["Name"],
                "CreationClassName": "CIM_Namespace", "Name": name,
            }
            out.append(make_instance("CIM_Namespace", keys, {
                "ElementName": name, "ClassType": Uint16(2), "ClassTypeVersion": "2.49.0",
                "ClassInfo": Uint16(1), "DescriptionOfClassInfo": "CIM 2.49",
            }))
        return out

    def namespace_in_manager(self) -> list[CIMInstance]:
        om = self.object_manager_path()
        out = []
        for ns in self.namespace_instances():
            dep = ns.path.copy()
            dep.namespace = INTEROP_NAMESPACE
            out.append(make_instance("CIM_NamespaceInManager",
                                     {"Antecedent": om, "Dependent": dep}, {}))
        return out

    # -- profiles
    def profile_path(self, profile: Profile) -> CIMInstanceName:
        return CIMInstanceName("EDIV_RegisteredProfile", {"InstanceID": profile.instance_id},
                               namespace=INTEROP_NAMESPACE)

    def profiles(self) -> list[CIMInstance]:
        out = []
        for p in PROFILES:
            props = {
                "RegisteredOrganization": Uint16(p.organization),
                "RegisteredName": p.name, "RegisteredVersion": p.version,
                "AdvertiseTypes": [Uint16(2)],  # Not Advertised (no SLP)
                "ElementName": p.name,
            }
            if p.other_organization:
                props["OtherRegisteredOrganization"] = p.other_organization
            out.append(make_instance("EDIV_RegisteredProfile",
                                     {"InstanceID": p.instance_id}, props))
        return out

    def referenced_profiles(self) -> list[CIMInstance]:
        by_name = {p.name: p for p in PROFILES}
        return [
            make_instance("CIM_ReferencedProfile", {
                "Antecedent": self.profile_path(by_name[p.scoped_by]),
                "Dependent": self.profile_path(p)}, {})
            for p in PROFILES if p.scoped_by
        ]

    def central_instances(self, profile: Profile) -> Iterator[CIMInstanceName]:
        if profile.central is None:
            return
        namespace, *classes = profile.central
        for classname in classes:
            provider: InstanceProvider | None = self.registry.get(namespace, classname)
            if provider is None:
                continue
            for row in provider.rows():
                path = row.path()
                path.namespace = namespace
                path.host = None
                yield path

    def conformance(self, classname: str) -> list[CIMInstance]:
        return [make_instance(classname, {"ConformantStandard": self.profile_path(p),
                                          "ManagedElement": central}, {})
                for p in PROFILES for central in self.central_instances(p)]

    def conformance_touching(self, classname: str, target: CIMInstanceName,
                             managed_namespace: str | None) -> Iterator[Row]:
        """The conformance rows that may refer to ``target``: a profile's central instances,
        or an element's profile when it is a central instance (looked up by its key)."""
        want = normalized(target, INTEROP_NAMESPACE)
        for p in PROFILES:
            if p.central is None:
                continue
            namespace, *central_classes = p.central
            if managed_namespace is not None and namespace.lower() != managed_namespace:
                continue
            profile = self.profile_path(p)
            if want == normalized(profile):
                for central in self.central_instances(p):
                    yield Row(classname, {"ConformantStandard": profile,
                                          "ManagedElement": central})
            elif (want.namespace or "").lower() == namespace.lower() and \
                    want.classname.lower() in {c.lower() for c in central_classes}:
                provider = self.registry.get(namespace, want.classname)
                found = provider.get_row(want) if provider is not None else None
                if found is not None:
                    central = found.path()
                    central.namespace = namespace
                    yield Row(classname, {"ConformantStandard": profile,
                                          "ManagedElement": central})

    def register(self) -> None:
        r = self.registry
        r.register(INTEROP_NAMESPACE, StaticProvider("CIM_ObjectManager", self.object_manager))
        r.register(INTEROP_NAMESPACE, StaticProvider("CIM_Namespace", self.namespace_instances))
        r.register(INTEROP_NAMESPACE,
                   StaticProvider("CIM_NamespaceInManager", self.namespace_in_manager))
        r.register(INTEROP_NAMESPACE, StaticProvider("EDIV_RegisteredProfile", self.profiles))
        r.register(INTEROP_NAMESPACE,
                   StaticProvider("CIM_ReferencedProfile", self.referenced_profiles))
        r.register(INTEROP_NAMESPACE, _Conformance(self, None))
        r.register(EDIV_NAMESPACE, _Conformance(self, EDIV_NAMESPACE))


class _Conformance(InstanceProvider):
    """EDIV_ElementConformsToProfile of one namespace (``managed``: only elements there)."""

    classname = "EDIV_ElementConformsToProfile"

    def __init__(self, model: InteropModel, managed: str | None):
        self.model = model
        self.managed = managed.lower() if managed else None

    def enumerate(self) -> list[CIMInstance]:
        return [i for i in self.model.conformance(self.classname)
                if self.managed is None
                or i["ManagedElement"].namespace.lower() == self.managed]

    def reference_rows(self, target: CIMInstanceName, role: str | None = None
                       ) -> Iterable[Row]:
        want = key_of(target, INTEROP_NAMESPACE)
        for row in self.model.conformance_touching(self.classname, target, self.managed):
            for name, value in row.props.items():
                if (role is None or name.lower() == role.lower()) and \
                        key_of(value, INTEROP_NAMESPACE) == want:
                    yield row
                    break

    def references(self, target: CIMInstanceName, role: str | None = None
                   ) -> Iterator[CIMInstance]:
        for row in self.reference_rows(target, role):
            yield row.instance()
