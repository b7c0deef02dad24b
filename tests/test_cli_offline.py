"""The offline command line as a user runs it: real files in, exit codes and output out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

EDIV = [sys.executable, "-m", "ediv.client.cli"]


def ediv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EDIV, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def test_validate_examples():
    for name in ("simple6.xml", "sites51.xml"):
        r = ediv("validate", str(EXAMPLES / name))
        assert r.returncode == 0, r.stderr
        assert "ok" in r.stdout


def test_plan_json_round_robin_equal_shares():
    r = ediv("plan", str(EXAMPLES / "sites51.xml"), "-a", "RoundRobin", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["algorithm"] == "RoundRobin"
    assert [len(h["vms"]) for h in data["hosts"].values()] == [17, 17, 17]
    assert len(data["allocation"]) == 51


def test_plan_weighted_follows_load():
    r = ediv(
        "plan",
        str(EXAMPLES / "sites51.xml"),
        "-a",
        "WeightedRoundRobin",
        "--load",
        "host1=0.9",
        "--load",
        "host2=0.1",
        "--load",
        "host3=0.1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    counts = [len(h["vms"]) for h in json.loads(r.stdout)["hosts"].values()]
    assert sum(counts) == 51 and counts[0] < counts[1] and counts[0] < counts[2]


def test_plan_table_and_restrictions():
    r = ediv(
        "plan",
        str(EXAMPLES / "sites51.xml"),
        "-c",
        str(EXAMPLES / "cluster.conf"),
        "-r",
        str(EXAMPLES / "restrictions.xml"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    alloc = json.loads(r.stdout)["allocation"]
    assert alloc["r1"] == "alpha"
    assert alloc["r2"] == alloc["s2h01"]
    assert len({alloc["r1"], alloc["r2"], alloc["r3"]}) == 3
    t = ediv("plan", str(EXAMPLES / "simple6.xml"))
    assert t.returncode == 0 and "host1" in t.stdout and "segments" in t.stdout


def test_plan_help_lists_algorithms():
    r = ediv("plan", "--help")
    for name in ("RoundRobin", "WeightedRoundRobin", "DynamicWeightedRoundRobin", "MinCut"):
        assert name in r.stdout
    a = ediv("algorithms", "--json")
    assert {x["name"] for x in json.loads(a.stdout)} >= {"RoundRobin", "MinCut"}


def test_split_writes_valid_sub_scenarios(tmp_path):
    from ediv.scenario import load_scenario

    out = tmp_path / "split"
    r = ediv(
        "split", str(EXAMPLES / "sites51.xml"), "-c", str(EXAMPLES / "cluster.conf"), "-o", str(out)
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads((out / "plan.json").read_text())
    total = 0
    for host, fname in plan["files"].items():
        sub, _ = load_scenario(str(out / fname), deployable=True)  # validates with the XSD
        assert sub.name == f"sites51-{host}"
        assert [v.name for v in sub.vms] == plan["hosts"][host]["vms"]
        deploy = json.loads((out / fname.replace(".xml", ".deploy.json")).read_text())
        assert set(deploy["mgmt"]) == set(plan["hosts"][host]["vms"])
        total += len(sub.vms)
    assert total == 51


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")
@pytest.mark.parametrize("suffix", ["svg", "png", "dot"])
def test_map(tmp_path, suffix):
    out = tmp_path / f"t.{suffix}"
    r = ediv("map", str(EXAMPLES / "simple6.xml"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    if suffix == "svg":
        assert b"<svg" in data and b"host1" in data and b"Link" in data
    elif suffix == "png":
        assert data.startswith(b"\x89PNG")
    else:
        assert b"cluster_" in data and b"vxlan" in data


BAD_INPUTS = {
    "malformed.xml": "<vnuml><global>",
    "bomb.xml": """<?xml version="1.0"?>
<!DOCTYPE vnuml [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<vnuml><global><version>1.8</version><simulation_name>&f;</simulation_name></global></vnuml>
""",
    "unknown_net.xml": """<vnuml><global><version>1.8</version><simulation_name>s</simulation_name>
<vm_mgmt type="none"/></global>
<net name="A" mode="virtual_bridge"/>
<vm name="v"><if id="1" net="B"/></vm></vnuml>
""",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_scenarios_exit_1_with_file_line(tmp_path, name):
    f = tmp_path / name
    f.write_text(BAD_INPUTS[name])
    for cmd in ("validate", "plan"):
        r = ediv(cmd, str(f))
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert_no_traceback(r)
        assert f"{f}:" in r.stderr
    if name == "unknown_net.xml":
        assert ":4:" in r.stderr and "B" in r.stderr


def test_impossible_restrictions_name_both_rules(tmp_path):
    rf = tmp_path / "r.xml"
    rf.write_text("""<deployment_restrictions>
<affinity><vm>r1</vm><vm>r2</vm></affinity>
<antiaffinity><vm>r1</vm><vm>r2</vm></antiaffinity>
</deployment_restrictions>
""")
    r = ediv("plan", str(EXAMPLES / "sites51.xml"), "-r", str(rf))
    assert r.returncode == 1
    assert_no_traceback(r)
    assert f"{rf}:2" in r.stderr and f"{rf}:3" in r.stderr


def test_empty_cluster(tmp_path):
    c = tmp_path / "c.conf"
    c.write_text("[cluster]\ndefault_segmentation = RoundRobin\n")
    r = ediv("plan", str(EXAMPLES / "simple6.xml"), "-c", str(c))
    assert r.returncode == 1
    assert_no_traceback(r)
    assert "no hosts" in r.stderr


def test_cluster_too_small(tmp_path):
    c = tmp_path / "c.conf"
    c.write_text("[cluster]\nhost = a\nhost = b\n[a]\nmax_vhost = 2\n[b]\nmax_vhost = 2\n")
    r = ediv("plan", str(EXAMPLES / "simple6.xml"), "-c", str(c))
    assert r.returncode == 1
    assert_no_traceback(r)
    assert "6" in r.stderr and "4" in r.stderr


def test_bad_load_option():
    r = ediv("plan", str(EXAMPLES / "simple6.xml"), "--load", "host1=7")
    assert r.returncode == 2 and "HOST=FRACTION" in r.stderr


def test_ediv_ctl_translates_edivs_flags():
    from ediv.client.ctl import translate

    assert translate(["-t", "-s", "s.xml", "-c", "c.conf", "-a", "RoundRobin", "-r", "r.xml"]) \
        == ["deploy", "s.xml", "-c", "c.conf", "-a", "RoundRobin", "-r", "r.xml"]
    assert translate(["-x", "start", "-s", "s.xml", "-M", "r1", "-M", "r2"]) == [
        "exec", "s.xml", "start", "--vm", "r1", "--vm", "r2"]
    assert translate(["-d", "-s", "s.xml"]) == ["release", "s.xml"]
    assert translate(["-P", "-s", "s.xml", "--state", "x.db"]) == [
        "release", "s.xml", "--purge", "--state", "x.db"]
    for bad in (["-t", "-d", "-s", "s.xml"], ["-d"], ["-d", "-s", "s.xml", "-a", "MinCut"],
                ["-t", "-s", "s.xml", "-M", "r1"]):
        with pytest.raises(SystemExit) as exc:
            translate(bad)
        assert exc.value.code == 2
