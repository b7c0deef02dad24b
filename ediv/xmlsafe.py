"""Hardened XML parsing: the one place where ediv turns untrusted bytes into lxml trees.

Internal ``<!ENTITY>`` declarations (VNUML files use them for paths) are expanded; external
entities, external DTDs and any network access are not. libxml2's own amplification guard
stops billion-laughs style bombs; a size limit stops plain oversized input.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from ediv.errors import Diagnostic, InputError

MAX_XML_BYTES = 64 * 1024 * 1024


class _RefuseExternal(etree.Resolver):
    """Answer every request for an external resource (DTD, entity) with nothing.

    Without it libxml2 still reads the external subset named by ``<!DOCTYPE x SYSTEM "...">``
    (even with load_dtd=False) when the document uses an entity it does not declare, which
    lets a document pull definitions from local files; and a DOCTYPE naming an http URL fails
    the parse instead of being ignored.
    """

    def resolve(self, url, pubid, context):
        return self.resolve_string("", context)


def make_parser(*, remove_comments: bool = False) -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities="internal",
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseExternal())
    return parser


def parse_bytes(
    data: bytes, source: str = "<input>", max_bytes: int = MAX_XML_BYTES
) -> etree._ElementTree:
    """Parse ``data`` or raise InputError with ``source:line: message``."""
    if len(data) > max_bytes:
        raise InputError(Diagnostic(source, 0, f"document larger than {max_bytes} bytes"))
    try:
        root = etree.fromstring(data, parser=make_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or (exc.position[0] if exc.position else 0)
        raise InputError(Diagnostic(source, line, f"malformed XML: {_clean(exc.msg)}")) from None
    _reject_unexpanded_entities(root, source)
    return root.getroottree()


def read_file(path: str | Path, max_bytes: int = MAX_XML_BYTES) -> bytes:
    """The bytes of an XML file, refused before reading when larger than ``max_bytes``."""
    p = Path(path)
    try:
        if p.stat().st_size > max_bytes:
            raise InputError(Diagnostic(str(path), 0, f"document larger than {max_bytes} bytes"))
        return p.read_bytes()
    except OSError as exc:
        raise InputError(Diagnostic(str(path), 0, f"cannot read: {exc.strerror}")) from None


def parse_file(path: str | Path, max_bytes: int = MAX_XML_BYTES) -> etree._ElementTree:
    return parse_bytes(read_file(path, max_bytes), str(path), max_bytes)


def _reject_unexpanded_entities(root: etree._Element, source: str) -> None:
    # External entities stay as Entity nodes with resolve_entities="internal": refuse them.
    for node in root.iter(etree.Entity):
        raise InputError(
            Diagnostic(
                source, node.sourceline or 0, f"external entity &{node.name}; is not allowed"
            )
        )


def _clean(msg: str) -> str:
    return msg.split(", line ")[0].strip()
