"""Byte allocation units as OVF descriptors spell them.

DSP0004 programmatic units ("byte * 2^20", "byte*2^10*1024", "bytes * 10^6") and the
legacy names real tools write ("MegaBytes", "MB", "GiB"). Legacy names are binary, as
VMware, VirtualBox and XenServer mean them (a "MegaBytes" memory item is MiB).
"""

from __future__ import annotations

import re

_NAMED = {
    "byte": 1,
    "bytes": 1,
    "b": 1,
    "kb": 2**10,
    "kib": 2**10,
    "kilobyte": 2**10,
    "kilobytes": 2**10,
    "mb": 2**20,
    "mib": 2**20,
    "megabyte": 2**20,
    "megabytes": 2**20,
    "gb": 2**30,
    "gib": 2**30,
    "gigabyte": 2**30,
    "gigabytes": 2**30,
    "tb": 2**40,
    "tib": 2**40,
    "terabyte": 2**40,
    "terabytes": 2**40,
}
_POWER = re.compile(r"^(\d+)\s*\^\s*(-?\d+)$")
MAX_EXPONENT = 80


def byte_multiplier(units: str | None) -> int | None:
    """Bytes per unit, or None when ``units`` is not a byte unit (or is unparsable)."""
    if units is None:
        return None
    terms = [t.strip() for t in units.strip().split("*")]
    if not terms or not terms[0]:
        return None
    base = _NAMED.get(terms[0].lower())
    if base is None:
        return None
    factor = base
    for term in terms[1:]:
        m = _POWER.match(term)
        if m:
            exponent = int(m.group(2))
            if exponent < 0 or exponent > MAX_EXPONENT:
                return None
            factor *= int(m.group(1)) ** exponent
        elif term.isdigit():
            factor *= int(term)
        else:
            return None
    return factor


def parse_int(text: str | None) -> int | None:
    """A non-negative integer attribute/element value, or None (placeholders, ${refs}, junk)."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None
