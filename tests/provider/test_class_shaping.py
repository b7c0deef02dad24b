"""GetClass / EnumerateClasses shape copies: no flag combination changes the cached schema."""

from __future__ import annotations

import itertools

import pytest

from ediv.provider.schema import EDIV_NAMESPACE, compile_schema

CLASSES = ("EDIV_Scenario", "EDIV_VirtualSystemManagementService")


@pytest.fixture(scope="module")
def compiled():
    return compile_schema().namespace(EDIV_NAMESPACE)


def _quals(obj):
    return {q.name.lower(): q.value for q in obj.qualifiers.values()}


def _norm(cls) -> dict:
    """What a client sees of a class, without the flavor defaults CIM-XML does not carry."""
    def feature(f):
        return (f.type if hasattr(f, "type") else f.return_type, f.class_origin, f.propagated,
                _quals(f))
    return {"qualifiers": _quals(cls),
            "properties": {n.lower(): feature(p) for n, p in cls.properties.items()},
            "methods": {n.lower(): (feature(m), {pn.lower(): (p.type, _quals(p))
                                                  for pn, p in m.parameters.items()})
                        for n, m in cls.methods.items()}}


def _full(conn, name):
    return conn.GetClass(name, LocalOnly=False, IncludeQualifiers=True, IncludeClassOrigin=True)


def test_every_flag_combination_leaves_the_class_as_compiled(conn, compiled):
    flags = list(itertools.product((False, True), repeat=3))
    for name in CLASSES:
        for local_only, qualifiers, origin in flags:
            for props in (None, ["Name"]):
                conn.GetClass(name, LocalOnly=local_only, IncludeQualifiers=qualifiers,
                              IncludeClassOrigin=origin, PropertyList=props)
    conn.EnumerateClasses(DeepInheritance=True, LocalOnly=True, IncludeQualifiers=False,
                          IncludeClassOrigin=False)
    for name in CLASSES:
        got = _full(conn, name)
        # qualifiers (Key among them), class origins, propagated flags, parameters
        assert _norm(got) == _norm(compiled.get_class(name))
        assert got.properties["Name"].qualifiers["Key"].value is True
