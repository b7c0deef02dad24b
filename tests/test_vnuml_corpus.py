"""The real VNUML/VNX files of ../shared/corpus/vnuml: every scenario loads or is rejected
with ``file:line:`` diagnostics, never a crash; what loads round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from ediv import xmlsafe
from ediv.errors import InputError
from ediv.scenario import load_scenario, parse_string, schema, to_xml
from ediv.scenario.model import Scenario
from tests.test_scenario_roundtrip import without_lines

pytestmark = pytest.mark.corpus

S21 = "davidfdezc-vnx/examples/segura/v0.2/s21seclabsvirtual-v02.xml"
# 1.9x files that do not follow the language, and why (VNX's own 1.92-1.97 XSDs reject them too).
EXPECTED_REJECTED = {
    "davidfdezc-vnx/examples/segura/v0.3/s21seclabsvirtual-v03-min.xml":
        ":172: in <vm>: <console> is out of order",
}


@pytest.fixture(scope="module")
def vnuml_dir(corpus: Path) -> Path:
    path = corpus / "vnuml"
    if not path.is_dir():
        pytest.skip(f"VNUML corpus not found at {path}")
    return path


@pytest.fixture(scope="module")
def scenario_files(vnuml_dir: Path) -> list[tuple[str, Path, str, str]]:
    """(relative path, path, root tag, version) of every file whose root is vnuml or vnx."""
    found = []
    for path in sorted(vnuml_dir.rglob("*.xml")):
        root = xmlsafe.parse_file(path).getroot()
        if root.tag in ("vnuml", "vnx"):
            version = (root.findtext("global/version") or "").strip()
            found.append((str(path.relative_to(vnuml_dir)), path, root.tag, version))
    assert found, f"no scenario files under {vnuml_dir}"
    return found


@pytest.fixture(scope="module")
def outcomes(scenario_files) -> dict[str, Scenario | InputError]:
    """Load every scenario file; anything but a Scenario or an InputError fails the test."""
    result: dict[str, Scenario | InputError] = {}
    for rel, path, _, _ in scenario_files:
        try:
            result[rel], _ = load_scenario(path)
        except InputError as exc:
            result[rel] = exc
    return result


def test_every_scenario_file_loads_or_is_rejected_with_lines(scenario_files, outcomes, capsys):
    lines = []
    for rel, _, root, version in scenario_files:
        outcome = outcomes[rel]
        if isinstance(outcome, Scenario):
            lines.append(f"  loaded   {rel} (<{root}> {version}: {len(outcome.vms)} vms, "
                         f"{len(outcome.nets)} nets)")
            continue
        assert outcome.diagnostics, rel
        for d in outcome.diagnostics:
            assert d.line > 0, f"{rel}: diagnostic without a line: {d}"
            assert str(d).startswith(f"{d.source}:{d.line}: ")
        first = outcome.diagnostics[0]
        lines.append(f"  rejected {rel}:{first.line}: {first.message}"
                     + (f" (+{len(outcome.diagnostics) - 1} more)"
                        if len(outcome.diagnostics) > 1 else ""))
    with capsys.disabled():
        print(f"\nVNUML corpus: {len(scenario_files)} scenario files")
        print("\n".join(lines))


def test_vnx_20_files_get_exactly_one_diagnostic(scenario_files, outcomes):
    vnx20 = [(rel, v) for rel, _, _, v in scenario_files if v.startswith("2")]
    assert vnx20
    for rel, version in vnx20:
        outcome = outcomes[rel]
        assert isinstance(outcome, InputError), rel
        assert [d.message for d in outcome.diagnostics] == [
            f"VNX 2.0 scenarios are not supported (version {version}); "
            "ediv reads VNUML 1.8/1.9x"], rel


def test_vnuml_18_and_19x_files_load(scenario_files, outcomes):
    older = [rel for rel, _, _, v in scenario_files if not v.startswith("2")]
    assert len(older) >= 20
    for rel in older:
        outcome = outcomes[rel]
        if rel in EXPECTED_REJECTED:
            assert isinstance(outcome, InputError)
            assert EXPECTED_REJECTED[rel] in str(outcome), str(outcome)
        else:
            assert isinstance(outcome, Scenario), f"{rel}: {outcome}"


def test_every_loaded_file_round_trips(outcomes):
    loaded = {rel: s for rel, s in outcomes.items() if isinstance(s, Scenario)}
    assert loaded
    for rel, scenario in loaded.items():
        back = parse_string(to_xml(scenario), scenario.source, scenario.basedir)
        assert without_lines(back) == without_lines(scenario), rel


def test_fast_validator_agrees_with_xmlschema(scenario_files):
    for rel, path, _, version in scenario_files:
        if version.startswith("2"):
            continue
        tree = xmlsafe.parse_file(path)
        assert schema.is_valid_fast(tree) == (schema.validate(tree, rel, fast=False) == []), rel


def test_the_vnuml_18_stress_case(vnuml_dir):
    """EDIV's stress case: the one genuine VNUML 1.8 file (37 VMs on 7 bridged nets)."""
    s, warnings = load_scenario(vnuml_dir / S21, deployable=True)
    assert warnings == []
    assert (s.root, s.name, s.global_.version) == ("vnuml", "s21seclabsvirtual", "1.8")
    assert (len(s.vms), len(s.nets)) == (37, 7)
    assert [n.name for n in s.nets] == [
        "br0", "ExtNet", "DMZ", "IntNet", "SubNet1", "SubNet2", "SubNet3"]
    # empty attributes mean absent
    assert all(n.sock is None and n.external is None and n.vlan is None for n in s.nets)
    assert all(v.order is None for v in s.vms)
    assert [v.name for v in s.ordered_vms()] == [v.name for v in s.vms]
    # internal DTD entity &VNUMLDIR; expanded
    assert s.global_.vm_defaults.filesystem.path == "/usr/share/vnuml/filesystems/root_fs_light"
    assert s.global_.vm_mgmt.type == "none" and s.global_.automac == 0
    fw = s.vm("fw")
    assert [(i.id, i.net) for i in fw.interfaces] == [(1, "ExtNet"), (2, "DMZ"), (3, "IntNet")]
    assert fw.mem == "64M" and fw.forwarding == "ip"
    assert [f.source for f in fw.filetrees] == ["conf/common/resolv", "conf/fw/bin", "conf/fw/conf"]
    assert s.basedir == str((vnuml_dir / S21).parent.resolve())

    back = parse_string(to_xml(s), s.source, s.basedir)
    assert without_lines(back) == without_lines(s)
