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


def make_parser(*, remove_comments: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities="internal",
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=True,
        collect_ids=False,
    )


def parse_bytes(data: bytes, source: str = "<input>", max_bytes: int = MAX_XML_BYTES) -> etree._ElementTree:
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


def parse_file(path: str | Path, max_bytes: int = MAX_XML_BYTES) -> etree._ElementTree:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(Diagnostic(str(path), 0, f"cannot read: {exc.strerror}")) from None
    return parse_bytes(data, str(path), max_bytes)


def _reject_unexpanded_entities(root: etree._Element, source: str) -> None:
    # External entities stay as Entity nodes with resolve_entities="internal": refuse them.
    for node in root.iter(etree.Entity):
        raise InputError(
            Diagnostic(source, node.sourceline or 0, f"external entity &{node.name}; is not allowed")
        )


def _clean(msg: str) -> str:
    return msg.split(", line ")[0].strip()
