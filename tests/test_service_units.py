"""The engine service's parts that need no hosts: the claim (threads and processes), the error
table, per-VM exec aggregation, the typed deploy info and stored plans."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ediv import errors
from ediv import state as st
from ediv.cluster import Cluster, Host
from ediv.errors import AlreadyExists, Busy, InputError, NotFound, WrongState
from ediv.plan import Plan, make_plan
from ediv.protocol import DeployInfo
from ediv.scenario.loader import load_string
from ediv.service.exec import ExecTarget, HostRun, aggregate, resolve
from ediv.split import split

SPEC = """<vnuml><global><version>1.8</version><simulation_name>u</simulation_name>
<automac/><vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>
<vm name="a" type="container"><if id="1" net="N"><ipv4>198.18.9.1</ipv4></if>
<exec seq="t" type="verbatim">echo one</exec><exec seq="t" type="verbatim">false</exec></vm>
<vm name="b" type="container"><if id="1" net="N"><ipv4>198.18.9.2</ipv4></if>
<exec seq="t" type="verbatim">echo fine</exec></vm>
<vm name="c" type="container"><exec seq="other" type="verbatim">true</exec></vm>
</vnuml>"""


@pytest.fixture
def store(tmp_path):
    s = st.StateStore(tmp_path / "state.db")
    yield s
    s.close()


# ---------------------------------------------------------------- the claim

def test_two_threads_of_one_process_cannot_both_claim(store, tmp_path):
    """The old lock was keyed on host+pid: two server threads both took it."""
    store.create_scenario("s", "<x/>", basedir=".", algorithm=None)
    outcomes: list = []
    barrier = threading.Barrier(2)

    def take():
        mine = st.StateStore(tmp_path / "state.db")  # each thread its own connection
        barrier.wait()
        try:
            outcomes.append(mine.claim("s", "deploy"))
        except Busy as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claims = [o for o in outcomes if isinstance(o, st.Claim)]
    busy = [o for o in outcomes if isinstance(o, Busy)]
    assert len(claims) == 1 and len(busy) == 1, outcomes
    assert busy[0].doing == "deploy" and busy[0].owner == st.owner_id()
    with pytest.raises(Busy):  # not re-entrant by process either
        store.claim("s", "release")
    assert store.claim("s", "deploy", token=claims[0].token).token == claims[0].token
    store.unclaim(claims[0])
    store.unclaim(store.claim("s", "release"))


def test_claim_of_a_dead_process_is_taken_and_says_so(store, tmp_path):
    store.create_scenario("s", "<x/>", basedir=".", algorithm=None)
    code = ("import sys; from ediv.state import StateStore; "
            f"s = StateStore({str(tmp_path / 'state.db')!r}); s.claim('s', 'deploy'); "
            "print('held', flush=True); sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="is busy \\(deploy\\)"):
            store.claim("s", "release")
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    taken = store.claim("s", "release")
    assert taken.interrupted and taken.interrupted.startswith("deploy by ")
    store.unclaim(taken)
    assert store.claimed("s") is None


def test_create_scenario_errors_are_named(store):
    store.create_scenario("s", "<x/>", basedir=".", algorithm=None, state=st.DEPLOYING)
    with pytest.raises(AlreadyExists) as exc:
        store.create_scenario("s", "<x/>", basedir=".", algorithm=None, state=st.DEPLOYING)
    assert exc.value.state == st.DEPLOYING and "already deploying" in str(exc.value)
    with pytest.raises(NotFound, match="no scenario named 'nope'"):
        store.claim("nope", "exec")


# ---------------------------------------------------------------- the error table

@pytest.mark.parametrize(("error", "exit_code", "cim"), [
    (InputError("bad"), 1, 4),
    (NotFound("scenario", "x"), 1, 6),
    (AlreadyExists("scenario", "x", state="deployed"), 1, 11),
    (Busy("x", "deploy"), 1, 1),
    (WrongState("stopped"), 4, 1),
    (errors.EdivError("other"), 1, 1),
    (errors.PlanError("full"), 1, 1),
])
def test_one_table_gives_exit_code_and_cim_status(error, exit_code, cim):
    assert errors.exit_code(error) == exit_code and errors.cim_status(error) == cim


def test_ediv_does_not_import_pywbem():
    code = ("import sys, ediv.errors, ediv.service, ediv.controller; "
            "print('pywbem' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- exec aggregation

def _scenario():
    scenario, _ = load_string(SPEC, "u.xml", ".")
    return scenario


def test_unknown_sequence_names_the_ones_there_are():
    with pytest.raises(InputError, match=r"no command sequence 'nope' \(it has: other, t\)"):
        resolve(_scenario(), "u", "nope", {"a": "h1", "b": "h2"}, {"h1": "k1", "h2": "k2"})


def test_one_entry_per_vm_also_when_a_host_is_lost():
    targets = resolve(_scenario(), "u", "t", {"a": "h1", "b": "h2", "c": "h1"},
                      {"h1": "k1", "h2": "k2"})
    assert [(t.host, t.vms) for t in targets] == [("h1", ["a"]), ("h2", ["b"])]
    h1, h2 = HostRun("h1"), HostRun("h2")
    for e in ({"event": "exec", "vm": "a", "command": "echo one", "exit_code": 0,
               "output": "one\n"},
              {"event": "exec", "vm": "a", "command": "false", "exit_code": 1, "output": ""},
              {"event": "exec-vm", "vm": "a", "exit_code": 1}):
        h1.on_event(e)
    h1.finished = True
    h2.on_event({"event": "exec", "vm": "b", "command": "echo fine", "exit_code": 0,
                 "output": "fine\n"})
    h2.error = "h2: host lost"  # before b's exec-vm: b's result is incomplete
    out = [r.to_json() for r in aggregate(targets, {"h1": h1, "h2": h2}, ["a", "b", "c"])]
    assert out[0] == {"vm": "a", "host": "h1", "exit_code": 1, "output": "one\n"}
    assert out[1]["vm"] == "b" and out[1]["exit_code"] is None
    assert out[1]["output"] == "fine\n" and "h2: host lost" in out[1]["error"]
    assert len(out) == 2


def test_a_vm_selection_contacts_only_its_hosts():
    targets = resolve(_scenario(), "u", "t", {"a": "h1", "b": "h2"},
                      {"h1": "k1", "h2": "k2"}, vms=["b"])
    assert targets == [ExecTarget("h2", "k2", ["b"], only=["b"])]
    with pytest.raises(InputError, match="has no VM 'zz'"):
        resolve(_scenario(), "u", "t", {"a": "h1"}, {"h1": "k1"}, vms=["zz"])


# ---------------------------------------------------------------- typed deploy info, plans

def test_deploy_info_and_plan_round_trip():
    scenario = _scenario()
    cluster = Cluster(hosts=[Host("h1", address="198.18.0.1"), Host("h2", address="198.18.0.2")])
    plan = make_plan(scenario, cluster, "RoundRobin")
    assert Plan.from_json(plan.to_json()) == plan
    for part in split(scenario, plan, cluster, key="k1"):
        info = DeployInfo.from_json(part.deploy, part.scenario.name)
        assert info == part.info and info.to_json() == part.deploy
        assert all(s.peers for s in info.segments)


def test_stored_plan_in_another_shape_is_an_error():
    with pytest.raises(errors.EdivError, match="not in the plan's shape"):
        Plan.from_json({"scenario": "x"})


def test_no_spec_file_constant_left_in_the_provider():
    root = Path(__file__).resolve().parents[1]
    text = (root / "provider" / "methods.py").read_text() + (
        root / "provider" / "engine.py").read_text()
    assert "write_text" not in text and "DEFINITION_FILE" not in text


def test_a_stored_spec_is_parsed_once_per_content():
    from ediv.service.models import stored_model

    first = stored_model(SPEC, "u", ".", True)
    assert stored_model(SPEC, "u", ".", True) is first
    edited = SPEC.replace('<vm name="c"', '<vm name="d"')
    other = stored_model(edited, "u", ".", True)
    assert other is not first and [vm.name for vm in other.vms] == ["a", "b", "d"]
    with pytest.raises(InputError):
        stored_model("<vnuml>", "s", ".", True)
    with pytest.raises(InputError):  # a failure is not remembered as a model
        stored_model("<vnuml>", "s", ".", True)
