"""Deploy-time values for ProductSection properties (``--prop KEY=VALUE``, ``--props FILE``).

Only ``ovf:userConfigurable="true"`` properties may be set. A value is checked against the
property's ``ovf:type`` (DSP0243 table 6: uint8..uint64, sint8..sint64, boolean, string,
real32/real64) and its ``ovf:qualifiers`` (MinLen(n), MaxLen(n), ValueMap{"a","b"},
MinValue(n), MaxValue(n)); every problem is reported at once, and nothing is set unless all
values pass. Password properties (``ovf:password="true"``) never appear in clear in what
ediv prints: ``shown`` masks them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ediv.errors import InputError

from . import envelope as m

MASK = "********"
MAX_PROPS_FILE = 1 << 20
_INT_RANGES = {f"{sign}int{bits}": ((0, 2**bits - 1) if sign == "u"
                                    else (-(2**(bits - 1)), 2**(bits - 1) - 1))
               for sign in ("u", "s") for bits in (8, 16, 32, 64)}
_QUALIFIER = re.compile(r"(\w+)\s*(?:\(([^)]*)\)|\{([^}]*)\})")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def shown(prop: m.Property, value: str | None) -> str | None:
    """``value`` as ediv may print it: masked for password properties."""
    if prop.password and value:
        return MASK
    return value


def parse_assignments(values: tuple[str, ...] = (), props_file: str | Path | None = None
                      ) -> dict[str, str]:
    """``--props FILE`` (``KEY=VALUE`` lines, ``#`` comments, or a JSON object), then the
    ``--prop KEY=VALUE`` options (later ones win)."""
    out: dict[str, str] = {}
    if props_file is not None:
        out.update(_read_props_file(Path(props_file)))
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--prop {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def apply_properties(env: m.Envelope, values: dict[str, str]) -> None:
    """Set the user's ``values`` on ``env``'s properties (``Property.override``), or raise
    InputError listing every key or value that is not acceptable."""
    props = [p for prod in env.products() for p in prod.properties]
    problems: list[str] = []
    chosen: list[tuple[m.Property, str]] = []
    for key, value in values.items():
        matches = [p for p in props if p.full_key == key] or [p for p in props if p.key == key]
        if not matches:
            have = ", ".join(sorted({p.full_key for p in props if p.user_configurable}))
            problems.append(f"{key}: no such property (user-configurable ones: "
                            f"{have or 'none'})")
            continue
        if len({p.full_key for p in matches}) > 1:
            problems.append(f"{key}: ambiguous, name one of "
                            + ", ".join(sorted({p.full_key for p in matches})))
            continue
        for prop in matches:
            if not prop.user_configurable:
                problems.append(f"{key}: not user-configurable (no ovf:userConfigurable="
                                "\"true\"); the package fixes its value")
                break
            error = check_value(prop, value)
            if error:
                problems.append(f"{key}: {error}")
                break
            chosen.append((prop, value))
    if problems:
        raise InputError("property values refused: " + "; ".join(problems))
    for prop, value in chosen:
        prop.override = normalized(prop, value)


def normalized(prop: m.Property, value: str) -> str:
    """Booleans as the environment spells them ("true"/"false"); other values as given."""
    if (prop.type or "").lower() == "boolean":
        return "true" if value.strip().lower() in _TRUE else "false"
    return value


def check_value(prop: m.Property, value: str) -> str | None:
    """Why ``value`` does not fit ``prop``'s type and qualifiers, or None when it does.
    The message never contains the value of a password property."""
    ptype = (prop.type or "string").strip().lower()
    said = "the value" if prop.password else repr(value)
    number: float | None = None
    if ptype in _INT_RANGES:
        try:
            number = int(value.strip(), 10)
        except ValueError:
            return f"{said} is not an integer ({ptype})"
        low, high = _INT_RANGES[ptype]
        if not low <= number <= high:
            return f"{said} is out of the {ptype} range {low}..{high}"
    elif ptype in ("real32", "real64", "real"):
        try:
            number = float(value.strip())
        except ValueError:
            return f"{said} is not a number ({ptype})"
        if not math.isfinite(number):
            return f"{said} is not a finite number"
    elif ptype == "boolean" and value.strip().lower() not in _TRUE + _FALSE:
        return f"{said} is not a boolean (true or false)"
    for name, arg, listed in _QUALIFIER.findall(prop.qualifiers or ""):
        error = _qualifier_error(name, arg, listed, value, number, said)
        if error:
            return error
    return None


def _qualifier_error(name: str, arg: str, listed: str, value: str, number: float | None,
                     said: str) -> str | None:
    if name == "ValueMap":
        allowed = [v.strip().strip('"').strip("'") for v in listed.split(",") if v.strip()]
        if allowed and value not in allowed:
            return f"{said} is not one of {', '.join(allowed)} (ValueMap)"
        return None
    try:
        limit = float(arg)
    except ValueError:
        return None  # a qualifier ediv does not know: not enforced
    if name == "MinLen" and len(value) < limit:
        return f"{said} is shorter than {int(limit)} characters (MinLen)"
    if name == "MaxLen" and len(value) > limit:
        return f"{said} is longer than {int(limit)} characters (MaxLen)"
    if name == "MinValue" and number is not None and number < limit:
        return f"{said} is below {arg.strip()} (MinValue)"
    if name == "MaxValue" and number is not None and number > limit:
        return f"{said} is above {arg.strip()} (MaxValue)"
    return None


def _read_props_file(path: Path) -> dict[str, str]:
    try:
        if path.stat().st_size > MAX_PROPS_FILE:
            raise InputError(f"larger than {MAX_PROPS_FILE} bytes", str(path))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the properties file: {exc}", str(path)) from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not a JSON object: {exc}", str(path)) from None
        if not isinstance(data, dict):
            raise InputError("not a JSON object of KEY: VALUE", str(path))
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InputError(f"line {n}: expected KEY=VALUE", str(path))
        out[key.strip()] = value.rstrip("\r")
    return out
