"""The VNUML scenario language: model, parser, checks, serializer."""

from ediv.scenario.checks import check
from ediv.scenario.loader import load_scenario, load_string, parse_string, validate_tree
from ediv.scenario.serializer import to_xml, write

__all__ = [
    "check",
    "load_scenario",
    "load_string",
    "parse_string",
    "to_xml",
    "validate_tree",
    "write",
]
