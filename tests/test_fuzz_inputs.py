"""Bounded fuzzing of what ediv reads from users and clients: cluster.conf (random bytes and
mutated valid files) and the agent protocol (random JSON into ediv.protocol, into the agent's
layout, and on stdin of a real ``ediv-host``). The only acceptable failure is a clear
InputError / exit 1 with a JSON error line: no traceback, no "internal error"."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ediv.agent.layout import build_layout
from ediv.cluster import parse_cluster_bytes
from ediv.errors import EdivError, InputError
from ediv.plan import make_plan
from ediv.protocol import (
    SESSION_VERBS,
    DeployInfo,
    KeyRequest,
    ProtocolError,
    SessionRequest,
    parse_json_object,
)
from ediv.scenario import load_scenario, parse_string

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VALID_CLUSTER = (EXAMPLES / "cluster.conf").read_bytes()
SIMPLE6, _ = load_scenario(EXAMPLES / "simple6.xml")
BOUNDED = settings(max_examples=300, deadline=2000,
                   suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- cluster.conf


@st.composite
def mutated_cluster(draw) -> bytes:
    data = bytearray(VALID_CLUSTER)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "line", "value"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 20))]
        elif op == "line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
            data = bytearray(b"\n".join(lines))
        else:  # a known key with a hostile value
            key = draw(st.sampled_from([b"mgmt_network", b"mgmt_network_mask", b"first",
                                        b"last", b"cpu", b"mem", b"ifname", b"interconnect",
                                        b"vm_type", b"ssh_port", b"host", b"file_dirs"]))
            value = draw(st.binary(max_size=12) | st.sampled_from(
                [b"-1", b"0", b"99999999999999999999", b"1e3", b"\xff\xfe", b"", b"[x]"]))
            data += b"\n" + key + b" = " + value + b"\n"
    return bytes(data)


def _cluster_outcome(data: bytes) -> None:
    try:
        cluster = parse_cluster_bytes(data, "fuzz.conf")
    except InputError as exc:
        assert exc.diagnostics and all(str(d).startswith("fuzz.conf") for d in exc.diagnostics)
        return
    with contextlib.suppress(EdivError):  # a file that parses is usable: a plan or a clear error
        make_plan(SIMPLE6, cluster)


@BOUNDED
@given(st.binary(max_size=600))
def test_cluster_conf_random_bytes(data):
    _cluster_outcome(data)


@BOUNDED
@given(mutated_cluster())
def test_cluster_conf_mutated_valid_file(data):
    _cluster_outcome(data)


def test_non_utf8_cluster_conf_names_the_line():
    with pytest.raises(InputError, match=r"fuzz.conf:5: not UTF-8 text \(byte 0xff"):
        parse_cluster_bytes(b"[cluster]\nhost = a\n\n#\n\xff\n", "fuzz.conf")


# ---------------------------------------------------------------- the agent protocol

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
SEGMENT = st.fixed_dictionaries({}, optional={
    "net": st.sampled_from(["n", "m"]) | JSON, "kind": st.sampled_from(["vxlan", "vlan"]) | JSON,
    "id": st.integers(-5, 2**25) | JSON, "local": st.sampled_from(["198.18.0.1", "::1"]) | JSON,
    "peers": st.lists(st.sampled_from(["198.18.0.2", "x"]) | JSON, max_size=3) | JSON,
    "dev": st.sampled_from(["eth0", "a/b", "x" * 16]) | JSON})
DEPLOY_JSON = st.fixed_dictionaries({}, optional={
    "scenario": st.sampled_from(["s", ""]) | JSON,
    "key": st.sampled_from(["abc", "ABC", "toolongkey", ""]) | st.integers() | JSON,
    "segments": st.lists(SEGMENT, max_size=3) | JSON,
    "mgmt": st.dictionaries(st.sampled_from(["a", "b"]),
                            st.fixed_dictionaries({}, optional={
                                "host": st.sampled_from(["198.18.128.1/30", "x"]) | JSON,
                                "vm": st.sampled_from(["198.18.128.2/30"]) | JSON}) | JSON,
                            max_size=2) | JSON,
    "vm_type": st.sampled_from(["container", "uml"]) | JSON}) | JSON
BUNDLE_XML = """<vnuml><global><version>1.8</version><simulation_name>s</simulation_name>
<vm_mgmt type="none"/></global><net name="n" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="{id}" net="n">{mac}</if></vm></vnuml>"""


@BOUNDED
@given(DEPLOY_JSON, st.sampled_from(["0", "1", "-1", "35", "1679616", "99999999"]),
       st.sampled_from(["", "<mac>02:00:00:00:00:01</mac>", "<mac>zz</mac>",
                        "<mac>01:00:00:00:00:00</mac>"]))
def test_deploy_json_and_bundle_scenario(data, if_id, mac):
    """deploy.json through the typed protocol, then the agent's layout of a bundle scenario
    (with the if ids and MACs that used to give 'internal error')."""
    try:
        info = DeployInfo.from_json(data, "s")
    except ProtocolError:
        info = DeployInfo.from_json({"key": "abc"}, "s")
    else:
        assert isinstance(info.key, str) and all(isinstance(s.id, int) for s in info.segments)
    from ediv.protocol import check_scenario

    scenario = parse_string(BUNDLE_XML.format(id=if_id, mac=mac), "scenario.xml")
    try:
        check_scenario(scenario)
        build_layout(scenario, info)
    except InputError:
        pass


@BOUNDED
@given(JSON | st.fixed_dictionaries({}, optional={"key": JSON | st.just("abc"),
                                                  "scenario": JSON | st.just("s")}))
def test_key_request(data):
    try:
        req = KeyRequest.from_json(data)
    except ProtocolError:
        return
    assert req.key is None or isinstance(req.key, str)
    assert req.scenario is None or isinstance(req.scenario, str)


@BOUNDED
@given(JSON | st.fixed_dictionaries({}, optional={
    "verb": JSON | st.sampled_from([*SESSION_VERBS, "console", "session"]),
    "args": JSON | st.lists(st.text(max_size=12), max_size=4),
    "deadline": JSON | st.floats(allow_nan=True), "bytes": JSON | st.integers()}))
def test_session_request(data):
    """A session request line is a verb of SESSION_VERBS with string arguments, a finite
    positive deadline and a byte count >= 0, or a ProtocolError."""
    try:
        req = SessionRequest.from_json(data)
    except ProtocolError:
        return
    assert req.verb in SESSION_VERBS and all(isinstance(a, str) for a in req.args)
    assert req.deadline is None or 0 < req.deadline < 10**7
    assert isinstance(req.size, int) and req.size >= 0
    assert SessionRequest.from_json(req.to_json()) == req


@BOUNDED
@given(st.binary(max_size=200))
def test_stdin_bytes(data):
    with contextlib.suppress(ProtocolError):
        parse_json_object(data, "stdin")


# ---------------------------------------------------------------- a real ediv-host

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="ediv-host verbs need root (run in a private netns)")


def run_agent(state: Path, *args: str, stdin: bytes) -> tuple[int, list[dict], str]:
    # unshare -n: a throwaway network namespace, so the agent cannot touch any real link
    p = subprocess.run(["unshare", "-n", sys.executable, "-m", "ediv.agent.main",
                        "--state-dir", str(state), *args], input=stdin, capture_output=True,
                       timeout=60, check=False)
    lines = [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]
    return p.returncode, lines, p.stderr.decode()


@pytest.mark.root
@needs_root
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40),
                 st.sampled_from([b'{"key": 12345}', b'{"scenario": ["a"]}', b"[1]",
                                  b'{"key": "ab/../x"}', b'{"kex": 1}'])))
def test_ediv_host_exec_answers_bad_stdin_with_exit_1(tmp_path, stdin):
    rc, lines, stderr = run_agent(tmp_path / "state", "exec", "seq", stdin=stdin)
    assert rc == 1, (stdin, lines, stderr)
    assert lines and lines[-1]["event"] == "error"
    assert "internal error" not in lines[-1]["message"] and "Traceback" not in stderr


@pytest.mark.root
@needs_root
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON.map(lambda v: json.dumps(v).encode() + b"\n"),
                 st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                 st.sampled_from([b'{"verb": "console", "args": ["v"]}\n',
                                  b'{"verb": "exec", "args": ["s", "--key", "a/b"]}\n',
                                  b'{"verb": "status", "args": ["--state-dir", "/"]}\n',
                                  b'{"verb": "receive", "args": ["--key", "ab"], "bytes": 9}\nab',
                                  b'{"verb": "probe", "bytes": -1}\n'])))
def test_ediv_host_session_answers_bad_requests_with_an_error_and_done(tmp_path, line):
    """Whatever a request line holds, the session answers error + done 1 (or runs a valid
    verb), never with a traceback; its state dir gets nothing."""
    rc, lines, stderr = run_agent(tmp_path / "state", "session", stdin=line)
    assert rc in (0, 1), (line, lines, stderr)
    assert lines[0]["event"] == "session"
    assert "Traceback" not in stderr and not any(
        "internal error" in str(e.get("message", "")) for e in lines), (line, lines)
    if len(lines) > 1:
        assert lines[-1]["event"] == "done" and lines[-1]["status"] in (0, 1), lines
        if lines[-1]["status"] == 1:
            assert lines[-2]["event"] == "error", lines
    state = tmp_path / "state"
    assert not state.exists() or all(not p.is_file() or p.name == "lock"
                                     for p in state.rglob("*")), list(state.rglob("*"))


@pytest.mark.root
@needs_root
def test_ediv_host_deploy_of_bad_bundles_is_exit_1(tmp_path):
    cases = {
        "if-1-mac": (BUNDLE_XML.format(id="-1", mac="<mac>02:00:00:00:00:01</mac>"),
                     b'{"key": "abc"}', "interface id -1"),
        "key-int": (BUNDLE_XML.format(id="1", mac=""), b'{"key": 12345}',
                    "scenario key must be a string"),
        "mgmt-list": (BUNDLE_XML.format(id="1", mac=""), b'{"mgmt": []}', "mgmt must be"),
        "not-utf8": (BUNDLE_XML.format(id="1", mac=""), b'\xff{"key": "abc"}', "not UTF-8"),
        "peers-int": (BUNDLE_XML.format(id="1", mac=""),
                      b'{"segments": [{"net": "n", "id": 5, "local": "198.18.0.1", '
                      b'"peers": 7}]}', "peers must be"),
    }
    for name, (xml, deploy_json, expect) in cases.items():
        bundle = tmp_path / name
        (bundle / "files").mkdir(parents=True)
        (bundle / "scenario.xml").write_text(xml)
        (bundle / "deploy.json").write_bytes(deploy_json)
        rc, lines, stderr = run_agent(tmp_path / "state", "deploy", "--bundle", str(bundle),
                                      stdin=b"")
        assert rc == 1, (name, lines, stderr)
        assert expect in lines[-1]["message"], (name, lines)
        assert "internal error" not in lines[-1]["message"]
