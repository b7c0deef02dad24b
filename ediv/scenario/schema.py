"""XSD validation of VNUML scenarios against the product's own schema (``vnuml.xsd``).

Diagnostics come from ``xmlschema``: every error, each as ``file:line: message``, the line
being the offending element's (for an unexpected or missing child, the child's or the
parent's). ``xmlschema`` is pure Python and needs about 1.8 s for a 10,000-VM document, so
valid documents take a fast path first: libxml2's validator (lxml, ~0.02 s for the same
document) checks the same schema, and only when it finds a problem does ``xmlschema`` run
to produce the messages. Both schemas are compiled once per process, and ``xmlschema``
(half a second to import) is imported only then: validating a valid file never loads it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from ediv import xmlsafe
from ediv.errors import Diagnostic

if TYPE_CHECKING:
    import xmlschema

XSD_PATH = Path(__file__).with_name("vnuml.xsd")


@functools.cache
def compiled() -> xmlschema.XMLSchema10:
    """The xmlschema form of vnuml.xsd (compiled on first use, then cached)."""
    import xmlschema

    return xmlschema.XMLSchema10(str(XSD_PATH))


@functools.cache
def _libxml2_schema() -> etree.XMLSchema:
    return etree.XMLSchema(xmlsafe.parse_file(XSD_PATH))


def is_valid_fast(tree: etree._ElementTree | etree._Element) -> bool:
    """libxml2's verdict on ``tree``: True when the document is schema-valid."""
    return _libxml2_schema().validate(tree)


def validate(
    tree: etree._ElementTree | etree._Element, source: str, *, fast: bool = True
) -> list[Diagnostic]:
    """All schema errors of ``tree`` as diagnostics (an empty list when it is valid).

    ``fast=False`` skips the libxml2 pre-check and always runs xmlschema (for measuring,
    and for tests that compare the two validators).
    """
    if fast and is_valid_fast(tree):
        return []
    return [_diagnostic(err, source) for err in compiled().iter_errors(tree)]


def _diagnostic(err: xmlschema.XMLSchemaValidationError, source: str) -> Diagnostic:
    elem = err.elem
    tag = _tag(elem)
    line = err.sourceline or 0
    reason = (err.reason or str(err.message)).strip()
    import xmlschema

    if isinstance(err, xmlschema.XMLSchemaChildrenValidationError):
        child = _child(elem, err.index)
        if child is not None:
            line = child.sourceline or line
            expected = _expected(err)
            if expected:
                reason = f"<{_tag(child)}> is not allowed here (expected {expected})"
            elif getattr(err.particle, "name", None) == child.tag:
                reason = (f"<{child.tag}> is out of order (VNUML fixes the order of the "
                          f"children of <{tag}>)")
            else:
                reason = f"<{_tag(child)}> is not allowed here"
        else:
            reason = reason.rstrip(".")
        return Diagnostic(source, line, f"in <{tag}>: {reason}")
    return Diagnostic(source, line, f"<{tag}>: {reason}")


def _child(elem: object, index: int | None) -> etree._Element | None:
    if not isinstance(elem, etree._Element) or index is None:
        return None
    # xmlschema counts comments among the children of an lxml element; be robust either way.
    raw = list(elem)
    if 0 <= index < len(raw) and isinstance(raw[index].tag, str):
        return raw[index]
    children = [c for c in raw if isinstance(c.tag, str)]
    return children[index] if 0 <= index < len(children) else None


def _expected(err: xmlschema.XMLSchemaChildrenValidationError) -> str:
    names = []
    for particle in err.expected or ():
        name = getattr(particle, "name", None) or getattr(particle, "local_name", None)
        if name:
            names.append(f"<{name}>")
    if not names:
        return ""
    if len(names) > 6:
        names = [*names[:6], "..."]
    return names[0] if len(names) == 1 else "one of " + ", ".join(names)


def _tag(elem: object) -> str:
    tag = getattr(elem, "tag", None)
    return tag if isinstance(tag, str) else "?"
