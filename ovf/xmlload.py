"""Descriptor bytes to an lxml tree, through ``ediv.xmlsafe``, repairing real-world quirks.

Real OVF files are often not well-formed in small, well-known ways (see the corpus
SOURCES.md): an XML declaration naming an encoding the bytes are not in (XenCenter writes
``encoding="utf-16"`` on ASCII), prefixes used without a declaration (ovftool test
descriptors), namespace URIs with spaces. Each repair is a narrow textual fix followed by
a fresh hardened parse, and is reported as a warning; anything else stays an error.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from lxml import etree

from ediv import xmlsafe
from ediv.errors import InputError

from .namespaces import WELL_KNOWN_PREFIXES

MAX_REPAIRS = 16
_DECL = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])([A-Za-z0-9._-]+)\2")
_UNDECLARED = re.compile(r"Namespace prefix ([\w.-]+)(?: for [\w.:-]+)? on [\w.:-]+ is not defined")
_BAD_URI = re.compile(r"xmlns(?::([\w.-]+))?: '(.*)' is not a valid URI")
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_UTF8_BOM = b"\xef\xbb\xbf"


def load_descriptor(data: bytes, source: str) -> tuple[etree._Element, list[str]]:
    """Parse descriptor ``data``; returns the root element and the repairs made."""
    warnings: list[str] = []
    if data.startswith(_UTF8_BOM):
        warnings.append("descriptor starts with a UTF-8 byte-order mark")
    data = _fix_declared_encoding(data, warnings)
    for _ in range(MAX_REPAIRS):
        try:
            return xmlsafe.parse_bytes(data, source).getroot(), warnings
        except InputError as exc:
            repaired = _repair(data, exc.diagnostics[0].message, warnings)
            if repaired is None:
                raise
            data = repaired
    raise InputError(f"too many XML repairs needed for {source}", source)


def _fix_declared_encoding(data: bytes, warnings: list[str]) -> bytes:
    """A UTF-16/32 declaration on 8-bit bytes: the declaration is wrong, not the bytes."""
    m = _DECL.match(data.removeprefix(_UTF8_BOM))
    if not m:
        return data
    declared = m.group(3).decode("ascii").lower()
    wide = declared.startswith(("utf-16", "utf16", "utf-32", "ucs-2", "ucs-4", "iso-10646-ucs"))
    if wide and b"\x00" not in data[:64] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        warnings.append(f"XML declaration says encoding={declared!r} but the bytes are 8-bit; "
                        "read as UTF-8")
        body = data.removeprefix(_UTF8_BOM)
        return m.group(1) + m.group(2) + b"UTF-8" + m.group(2) + body[m.end():]
    return data


def _repair(data: bytes, message: str, warnings: list[str]) -> bytes | None:
    m = _UNDECLARED.search(message)
    if m:
        prefix = m.group(1)
        uri = WELL_KNOWN_PREFIXES.get(prefix, f"urn:ediv:undeclared-prefix:{prefix}")
        warnings.append(f"namespace prefix {prefix!r} used but not declared; assumed {uri}")
        return _declare_on_root(data, prefix, uri)
    m = _BAD_URI.search(message)
    if m:
        bad = m.group(2)
        good = quote(bad, safe=":/#?&=;@!$'()*+,~%[]")
        attr = f"xmlns:{m.group(1)}" if m.group(1) else "xmlns"
        warnings.append(f"namespace URI {bad!r} of {attr} is not a valid URI; read as {good!r}")
        fixed = data.replace(bad.encode("utf-8"), good.encode("utf-8"))
        return fixed if fixed != data else None
    return None


def _declare_on_root(data: bytes, prefix: str, uri: str) -> bytes | None:
    """Insert ``xmlns:prefix="uri"`` into the root start tag (after the prolog)."""
    pos = 0
    while True:
        lt = data.find(b"<", pos)
        if lt < 0:
            return None
        if data.startswith(b"<!--", lt):
            end = data.find(b"-->", lt)
            pos = len(data) if end < 0 else end + 3
        elif data.startswith((b"<?", b"<!"), lt):
            end = data.find(b">", lt)
            pos = len(data) if end < 0 else end + 1
        else:
            m = _ROOT_TAG.match(data, lt)
            if m is None:
                return None
            return data[: m.end()] + f' xmlns:{prefix}="{uri}"'.encode() + data[m.end() :]
