"""Association look-ups by object path against a scan of every association instance (what
they replace), and the per-request time limit / client-gone check of the dispatcher."""

from __future__ import annotations

import pytest
from inprocess_engine import HOST, make_dispatcher
from pywbem import CIM_ERR_SERVER_LIMITS_EXCEEDED, CIMInstanceName, NocaseDict

from ediv.provider import cimxml
from ediv.provider.auth import Role
from ediv.provider.operations import Dispatcher
from ediv.provider.providers import normalized, same_path
from ediv.provider.pywbem_adapter import parse_cim_message
from ediv.provider.schema import EDIV_NAMESPACE, is_association


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory) -> Dispatcher:
    return make_dispatcher(tmp_path_factory.mktemp("assoc"))


def _targets(disp: Dispatcher) -> list[CIMInstanceName]:
    out = []
    for nss in disp.schema:
        for cls in nss.classes.values():
            provider = disp.registry.get(nss.name, cls.classname)
            for row in provider.rows() if provider is not None else ():
                path = row.path()
                path.namespace = nss.name
                out.append(path)
    return out


def _assoc_providers(disp: Dispatcher):
    for nss in disp.schema:
        for cls in nss.classes.values():
            provider = disp.registry.get(nss.name, cls.classname)
            if provider is not None and is_association(cls):
                yield nss, cls, provider


def _scan(instances, target: CIMInstanceName, role: str | None) -> list:
    """InstanceProvider.references over an enumeration done once (what it did per call)."""
    return [i for i in instances if any(
        p.type == "reference" and p.value is not None
        and (role is None or p.name.lower() == role.lower()) and same_path(p.value, target)
        for p in i.properties.values())]


def test_indexed_references_equal_a_scan_of_every_association(dispatcher):
    targets = _targets(dispatcher)
    assert len(targets) > 100
    checked = 0
    for nss, cls, provider in _assoc_providers(dispatcher):
        every = list(provider.enumerate())
        roles = [None, *(p.name for p in cls.properties.values() if p.type == "reference")]
        for target in targets:
            for role in roles:
                fast = {normalized(r.path(), nss.name)
                        for r in provider.reference_rows(target, role)}
                scan = {normalized(i.path, nss.name) for i in _scan(every, target, role)}
                assert fast == scan, (cls.classname, str(target), role)
                checked += bool(scan)
    assert checked > 100  # the comparison saw real answers, not only empty sets


def _call(disp: Dispatcher, method: str, namespace: str = EDIV_NAMESPACE, **params):
    req = cimxml.CIMRequest("1", method, True, namespace, NocaseDict(params))
    return disp.call(req, Role.READER, user="rita", host=HOST)


def _paths(body: bytes) -> set[CIMInstanceName]:
    rsp = parse_cim_message(body)[2][2][2]
    ireturn = next(c for c in rsp[2] if c[0] == "IRETURNVALUE")
    assert not any(c[0] == "ERROR" for c in rsp[2])
    return {normalized(p[2]) for p in ireturn[2]}  # OBJECTPATH elements


def test_associator_names_equal_the_scan_and_skip_dangling_ends(dispatcher):
    """Every AssociatorNames answer is the other ends of the association instances that
    refer to the target (scanned), less the ends that do not exist (VM hosts outside the
    cluster file)."""
    compared = 0
    everything: dict[str, list] = {}
    for nss, _cls, provider in _assoc_providers(dispatcher):
        everything.setdefault(nss.name, []).extend(provider.enumerate())
    for target in _targets(dispatcher):
        nss = dispatcher.schema.namespace(target.namespace)
        expected = set()
        for inst in everything[nss.name]:
            refs = [p for p in inst.properties.values()
                    if p.type == "reference" and p.value is not None]
            if not any(same_path(p.value, target) for p in refs):
                continue
            for p in refs:
                if not same_path(p.value, target) and \
                        dispatcher.get_instance(p.value, nss.name) is not None:
                    expected.add(normalized(p.value, nss.name))
        got = _paths(_call(dispatcher, "AssociatorNames", target.namespace, ObjectName=target))
        assert got == expected, str(target)
        compared += len(got)
    assert compared > 100


def test_time_limit_stops_an_operation(tmp_path):
    disp = make_dispatcher(tmp_path, time_limit=1e-9)
    body = _call(disp, "EnumerateInstances", ClassName="CIM_ManagedElement")
    assert f'CODE="{CIM_ERR_SERVER_LIMITS_EXCEEDED}"'.encode() in body
    assert b"time limit" in body


def test_client_gone_stops_an_operation(dispatcher):
    asked = []

    def gone() -> bool:
        asked.append(1)
        return True
    req = cimxml.CIMRequest("1", "EnumerateInstances", True, EDIV_NAMESPACE,
                            NocaseDict({"ClassName": "CIM_ManagedElement"}))
    body = dispatcher.call(req, Role.READER, user="rita", host=HOST, cancelled=gone)
    assert asked and b"client closed the connection" in body
    # the same request without the test answers
    assert b"VALUE.NAMEDINSTANCE" in _call(dispatcher, "EnumerateInstances",
                                           ClassName="CIM_ManagedElement")
