"""The layering of docs/architecture.md, checked over the real import graph.

The rules are read from the table under "Import rules" in docs/architecture.md, so the
document and the code cannot drift apart: a rule changed in one place only fails here.
Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def package_dirs() -> dict[str, Path]:
    """``ediv.provider`` -> ``provider/``...: the mapping setuptools installs by."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {pkg: ROOT / folder for pkg, folder in mapping.items()}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    dirs = package_dirs()
    for pkg, folder in dirs.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            # a sub-package with a package-dir of its own is found from there
            if any(name.startswith(other + ".") or name == other
                   for other in dirs if other != pkg and other.startswith(pkg + ".")):
                continue
            found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from ediv import state`
    return {m for m in out if m.startswith("ediv.")}  # `ediv` itself holds only the version


def matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):  # the modules directly in a package (its files)
        return module.rsplit(".", 1)[0] == pattern[:-2]
    return module == pattern or module.startswith(pattern + ".")


def rules() -> list[tuple[str, list[str], str, list[str]]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    found = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[2] not in ("only", "never"):
            continue
        split = lambda cell: [c.strip(" `") for c in re.split(r",\s*", cell) if c.strip(" `")]  # noqa: E731
        found.append((cells[0], split(cells[1]), cells[2], split(cells[3])))
    return found


RULES = rules()


def test_the_document_has_rules():
    assert {r[0] for r in RULES} >= {"agent", "scenario", "engine", "client"}


@pytest.mark.parametrize("layer,members,kind,names", RULES, ids=[r[0] for r in RULES])
def test_import_rule(layer, members, kind, names):
    known = modules()
    checked = [m for m in known if any(matches(m, p) for p in members)]
    assert checked, f"layer {layer}: no module matches {members}"
    broken = []
    for module in checked:
        for target in imports_of(module, known[module]):
            if target not in known and not any(k.startswith(target + ".") for k in known):
                continue  # `from ediv.x import name`: the name is not a module
            hit = any(matches(target, n) for n in names)
            if (kind == "never" and hit) or (kind == "only" and not hit):
                broken.append(f"{module} imports {target}")
    assert not broken, f"layer {layer} ({kind} {', '.join(names)}):\n  " + "\n  ".join(broken)


def test_a_broken_rule_is_seen(tmp_path):
    """The checker itself: a lazy import inside a function is an import."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ediv.ovf import appliance\n    from . import sibling\n")
    found = imports_of("ediv.scenario.m", src)
    assert "ediv.ovf" in found and "ediv.ovf.appliance" in found
    assert "ediv.scenario.sibling" in found
