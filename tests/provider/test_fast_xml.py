"""The row writers (cimxml.InstanceWriter and the path writers) against the object-model
path they replace (Dispatcher.shape_instance + pywbem's own CIM-XML writer): for a sample of
every class the root/ediv and interop providers serve, with and without PropertyList,
IncludeQualifiers, IncludeClassOrigin, DeepInheritance and LocalOnly, pywbem parses both to
equal objects."""

from __future__ import annotations

import itertools

import pytest
from inprocess_engine import HOST, make_dispatcher
from pywbem import CIMInstanceName

from ediv.provider import cimxml
from ediv.provider.operations import Dispatcher, Flags
from ediv.provider.pywbem_adapter import TupleParser, to_tupletree
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE
from ediv.xmlsafe import parse_bytes

SAMPLE = 3  # rows per class


def _parse(xml: str):
    root = parse_bytes(xml.encode("utf-8")).getroot()
    return TupleParser().parse_any(to_tupletree(root))


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory) -> Dispatcher:
    return make_dispatcher(tmp_path_factory.mktemp("fastxml"))


def _samples(disp: Dispatcher):
    for nss in disp.schema:
        for cls in nss.classes.values():
            provider = disp.registry.get(nss.name, cls.classname)
            if provider is not None:
                for row in itertools.islice(provider.rows(), SAMPLE):
                    yield nss, row


def _shapes(nss, cls):
    """(requested class, flags) combinations for instances of ``cls``."""
    names = list(cls.properties)
    some = [names[0].upper(), names[-1].lower(), "NoSuchProperty"] if names else ["X"]
    top = nss.superclass_chain(cls.classname)[-1]
    for quals, origin, plist in itertools.product((False, True), (False, True),
                                                 (None, [], some)):
        yield cls, Flags(qualifiers=quals, class_origin=origin, property_list=plist)
    yield nss.get_class(top), Flags(deep=False)
    yield nss.get_class(top), Flags(deep=False, class_origin=True, qualifiers=True)
    yield cls, Flags(local_only=True, class_origin=True)


def test_every_served_class_is_sampled(dispatcher):
    classes = {row.classname for _nss, row in _samples(dispatcher)}
    for name in ("EDIV_VirtualSystem", "EDIV_Scenario", "EDIV_VirtualNetwork",
                 "EDIV_HostSystem", "EDIV_ConcreteJob", "EDIV_MemoryRASD",
                 "EDIV_EthernetPortAllocationSettingData", "EDIV_SystemComponent",
                 "EDIV_ElementConformsToProfile", "CIM_ObjectManager",
                 "EDIV_VirtualSystemManagementCapabilities"):
        assert name in classes


def test_instances_parse_equal_to_the_object_model_path(dispatcher):
    compared = 0
    for nss, row in _samples(dispatcher):
        actual = nss.get_class(row.classname)
        inst = row.instance()
        for requested, flags in _shapes(nss, actual):
            old = dispatcher.shape_instance(nss, inst, requested, flags, HOST)
            new_xml = dispatcher.writer(nss, row.classname, requested, flags).instance(
                row.props)
            ours, theirs = _parse(new_xml), _parse(old.tocimxmlstr(ignore_path=True))
            assert ours == theirs, (row.classname, flags)
            assert list(ours.properties) == list(theirs.properties)
            compared += 1
    assert compared > 300


def test_paths_and_wrappers_parse_equal(dispatcher):
    for nss, row in _samples(dispatcher):
        inst = row.instance()
        path = dispatcher.instance_path(nss, inst, HOST)
        assert _parse(cimxml.instance_path_xml(row.classname, row.keys, nss.name, HOST)) \
            == path
        local = path.copy()
        local.host = None
        assert _parse(cimxml.path_xml(local)) == _parse(local.tocimxmlstr())
        bare = path.copy()
        bare.host = bare.namespace = None
        assert _parse(cimxml.instance_name_xml(row.classname, row.keys)) == bare
        cls = nss.get_class(row.classname)
        writer = dispatcher.writer(nss, row.classname, cls, Flags())
        shaped = dispatcher.shape_instance(nss, inst, cls, Flags(), HOST)
        # the object-model writers (cimxml.named_instance and friends) as the reference
        assert _parse(writer.named_instance(row.keys, row.props)) == \
            _parse(cimxml.named_instance(shaped))
        assert _parse(writer.instance_with_path(row.keys, row.props, HOST)) == \
            _parse(cimxml.instance_with_path(shaped))
        assert _parse(writer.object_with_path(row.keys, row.props, HOST)) == \
            _parse(cimxml.object_with_path(shaped, shaped.path))


def test_values_that_need_escaping_and_nested_references(dispatcher):
    nss = dispatcher.schema.namespace(EDIV_NAMESPACE)
    job = next(r for r in dispatcher.registry.get(nss.name, "EDIV_ConcreteJob").rows())
    assert "<VMs> & nets" in job.props["Description"]
    cls = nss.get_class("EDIV_ConcreteJob")
    xml = dispatcher.writer(nss, job.classname, cls, Flags()).instance(job.props)
    assert _parse(xml)["Description"] == job.props["Description"]
    ectp = next(dispatcher.registry.get(INTEROP_NAMESPACE, "EDIV_ElementConformsToProfile")
                .rows())
    path = ectp.path()
    path.namespace = INTEROP_NAMESPACE
    assert isinstance(path.keybindings["ManagedElement"], CIMInstanceName)
    assert _parse(cimxml.path_xml(path)) == _parse(path.tocimxmlstr())
