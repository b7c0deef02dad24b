"""The state store: schema versioning, allocations that never collide, locks, jobs."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys

import pytest

from ediv import state as st
from ediv.cluster import Host
from ediv.errors import EdivError
from ediv.state import DEPLOYING, MIGRATIONS, StateStore


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def test_schema_version_and_wal(store):
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    StateStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(EdivError, match="newer"):
        StateStore(path)


def test_second_deploy_of_same_name_refused(store):
    store.create_scenario("s", "<x/>", basedir=".", algorithm=None, state=DEPLOYING)
    with pytest.raises(EdivError, match="already deploying"):
        store.create_scenario("s", "<x/>", basedir=".", algorithm=None, state=DEPLOYING)


def test_segments_never_shared_and_freed(store):
    for name in ("a", "b"):
        store.create_scenario(name, "", basedir=".", algorithm=None, state=DEPLOYING)
    a = store.allocate_segments("a", "vxlan", 10, 14, [("n1", ["h1", "h2"]), ("n2", ["h1", "h3"])])
    b = store.allocate_segments("b", "vxlan", 10, 14, [("n1", ["h1", "h2"])])
    assert not set(a) & set(b)
    with pytest.raises(EdivError, match="exhausted"):
        store.allocate_segments("b", "vxlan", 10, 14, [("x", []), ("y", []), ("z", [])])
    assert len(store.segments("b")) == 1  # the failed allocation took nothing
    store.free_segments("a")
    c = store.allocate_segments("b", "vxlan", 10, 14, [("n3", [])])
    assert c[0] in a


def test_addressing_disjoint(store):
    for name in ("a", "b", "c"):
        store.create_scenario(name, "", basedir=".", algorithm=None, state=DEPLOYING)
    ma, oa = store.allocate_addressing("a", 10, 100)
    mb, ob = store.allocate_addressing("b", 20, 100)
    assert ma != mb
    assert not set(range(oa, oa + 10)) & set(range(ob, ob + 20))
    store.delete_scenario("a")
    mc, oc = store.allocate_addressing("c", 10, 100)  # reuses the hole a left
    assert oc == oa and mc not in (mb,)
    with pytest.raises(EdivError, match="management network"):
        store.create_scenario("d", "", basedir=".", algorithm=None, state=DEPLOYING)
        store.allocate_addressing("d", 71, 100)


def _allocate(path: str, name: str, out) -> None:
    s = StateStore(path)
    s.create_scenario(name, "", basedir=".", algorithm=None, state=DEPLOYING)
    ids = []
    for i in range(20):
        ids += s.allocate_segments(name, "vlan", 100, 499, [(f"n{i}", [])])
    out.put(ids)


def test_concurrent_processes_never_take_the_same_id(tmp_path):
    path = str(tmp_path / "state.db")
    StateStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_allocate, args=(path, f"s{i}", q)) for i in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    ids = [i for r in results for i in r]
    assert len(ids) == 80 and len(set(ids)) == 80


def test_lock_held_by_live_process_refused_dead_taken_over(store, tmp_path):
    store.create_scenario("s", "", basedir=".", algorithm=None)
    store.unlock("s")  # the creator holds it first
    code = (
        "import sys, time; from ediv.state import StateStore; "
        f"s = StateStore({str(tmp_path / 'state.db')!r}); s.lock('s'); "
        "print('locked', flush=True); "
        "sys.stdin.readline()"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(EdivError, match="being changed"):
            store.lock("s")
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    store.lock("s")  # its owner is gone: the lock is taken over
    store.unlock("s")


def test_jobs_lifecycle_and_orphans(store):
    j = store.start_job("deploy", None)
    store.job_progress(j, 40, "host h1 built")
    job = store.job(j)
    assert job["state"] == "running" and job["percent"] == 40 and "h1" in job["log"]
    store.finish_job(j, True, {"ok": 1})
    assert store.job(j)["state"] == "completed" and store.job(j)["percent"] == 100
    orphan = store.start_job("deploy", None)
    store.db.execute("UPDATE jobs SET owner=? WHERE id=?",
                     (f"{__import__('socket').gethostname()}:999999999", orphan))
    assert store.fail_orphaned_jobs() == 1
    assert store.job(orphan)["state"] == "failed"


def _version1_database(path) -> None:
    """A store as the first ediv release left it: schema 1, with a scenario, VMs and a job."""
    raw = sqlite3.connect(path)
    raw.executescript(MIGRATIONS[0])
    raw.execute("INSERT INTO scenarios (name, state, spec, created, updated)"
                " VALUES ('old', 'deployed', '<vnuml/>', 1, 2)")
    raw.execute("INSERT INTO vms (scenario, name, host, type, state)"
                " VALUES ('old', 'v1', 'h1', 'uml', 'running')")
    raw.execute("INSERT INTO jobs (kind, scenario, state) VALUES ('deploy', 'old', 'completed')")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()


def test_version1_database_upgrades(tmp_path):
    path = tmp_path / "v1.db"
    _version1_database(path)
    store = StateStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS) >= 3
        assert store.scenario("old").state == "deployed"
        assert [v["name"] for v in store.vms("old")] == ["v1"]
        assert store.jobs()[0]["kind"] == "deploy"
        assert store.subscriptions() == [] and store.change_count() == 0
        store.add_subscription("CIM_IndicationFilter", "f", {"Query": "x"})
        store.set_vm_states("old", None, "stopped")  # tracked from the upgrade on
        assert store.changes_since(0)[1] == [("vms", "old")]
    finally:
        store.close()
    again = StateStore(path)  # reopening migrates nothing more and keeps everything
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert [r["data"] for r in again.subscriptions()] == [{"Query": "x"}]
    finally:
        again.close()


def test_subscription_objects_kept(store):
    store.add_subscription("CIM_IndicationFilter", "f1", {"n": 1})
    store.add_subscription("CIM_IndicationSubscription", "s1", {"n": 2})
    store.add_subscription("CIM_IndicationFilter", "f1", {"n": 3})  # same name: replaced
    assert [(r["kind"], r["name"], r["data"]) for r in store.subscriptions()] == [
        ("CIM_IndicationSubscription", "s1", {"n": 2}), ("CIM_IndicationFilter", "f1", {"n": 3})]
    assert [r["name"] for r in store.subscriptions("CIM_IndicationFilter")] == ["f1"]
    assert store.delete_subscription("CIM_IndicationFilter", "f1")
    assert not store.delete_subscription("CIM_IndicationFilter", "f1")
    assert [r["name"] for r in store.subscriptions()] == ["s1"]


def test_changes_are_tracked_for_every_connection(store, tmp_path):
    mark = store.change_count()
    assert store.changes_since(mark) == (mark, [])
    other = StateStore(tmp_path / "state.db")  # another writer (a CLI process, a job thread)
    try:
        other.create_scenario("s", "<x/>", basedir=".", algorithm=None, state=DEPLOYING)
        other.set_vms("s", [("a", "h1", "container", "running"), ("b", "h2", "uml", "running")])
        job = other.start_job("deploy", "s")
    finally:
        other.close()
    now, changes = store.changes_since(mark)
    assert now > mark
    assert sorted(changes) == [("job", str(job)), ("scenario", "s"), ("vms", "s")]
    store.hosts()  # reads move nothing
    store.record_probe(Host("h1", mem=1024, cpu=100, max_vhost=4), None, "up")
    assert store.changes_since(now) == (now, [])  # hosts are not tracked
    store.delete_scenario("s")  # its VM rows go with it (ON DELETE CASCADE): both listed
    assert sorted(store.changes_since(now)[1]) == [("scenario", "s"), ("vms", "s")]


def test_set_spec_only_while_in_the_expected_state(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.create_scenario("a", "<v1/>", basedir=None, algorithm=None, restrictions="<r/>",
                          state=st.DEFINED)
    store.unlock("a")
    assert store.set_spec("a", "<v2/>") and store.scenario("a").spec == "<v2/>"
    assert store.scenario("a").restrictions == "<r/>"
    store.set_scenario_state("a", st.DEPLOYED)
    assert not store.set_spec("a", "<v3/>") and store.scenario("a").spec == "<v2/>"
    assert not store.set_spec("nope", "<x/>")
    assert not store.has_vms("a")
    store.set_vms("a", [("vm1", "h1", "uml", "running")])
    assert store.has_vms("a") and store.vm("a", "vm1")["host"] == "h1"
    store.set_vm_state("a", "vm1", "stopped")
    assert store.vm("a", "vm1")["state"] == "stopped" and store.vm("a", "zz") is None


def test_deploying_scenario_whose_owner_died_reads_interrupted(store, tmp_path):
    """A controller or server killed mid-deploy: the row says "deploying", its lock owner is
    gone; it reads "interrupted" (with the reason) and release can take the lock."""
    store.create_scenario("s", "<vnuml/>", basedir=".", algorithm=None, state=DEPLOYING)
    assert store.scenario("s").state == DEPLOYING  # we are alive
    p = subprocess.run([sys.executable, "-c", "from ediv.state import owner_id; "
                        "print(owner_id())"], capture_output=True, text=True, check=True)
    dead = p.stdout.strip()
    store.db.execute("UPDATE scenarios SET lock_owner=? WHERE name='s'", (dead,))
    row = store.scenario("s")
    assert row.state == st.INTERRUPTED and row.stored_state == DEPLOYING
    assert "interrupted" in row.interrupted_note and "ediv release s" in row.interrupted_note
    token = store.lock("s", "release")  # release can take it over
    assert store.scenario("s").state == st.INTERRUPTED  # until the release acts
    store.set_scenario_state("s", st.RELEASING)
    assert store.scenario("s").state == st.RELEASING  # a live claim releases it
    store.unlock("s", token)
    assert store.scenario("s").state == st.INTERRUPTED


def test_owner_is_one_process_not_a_reused_pid():
    me = st.owner_id()
    host, pid, start = me.split(":")
    assert int(pid) == __import__("os").getpid() and start != "0"
    assert st.owner_alive(me)
    assert not st.owner_alive(f"{host}:{pid}:{int(start) + 1}")  # same pid, another process
    assert st.owner_alive(f"{host}:{pid}")  # the older form: pid only
    assert not st.owner_alive(None)


def test_reset_to_defined_drops_placement_keeps_spec(store):
    store.create_scenario("d", "<vnuml/>", basedir="/x", algorithm=None)
    store.create_scenario("d", "<vnuml>2</vnuml>", basedir="/x", algorithm=None,
                          state=DEPLOYING)
    store.allocate_addressing("d", 2, 100)
    store.allocate_segments("d", "vxlan", 1, 9, [("N", ["h1", "h2"])])
    store.add_part("d", "h1", "kaaaa", "d-h1", {})
    store.set_vms("d", [("v", "h1", "container", "planned")])
    store.reset_to_defined("d", "deploy failed")
    row = store.scenario("d")
    assert (row.state, row.spec, row.error, row.lock_owner) == (
        st.DEFINED, "<vnuml>2</vnuml>", "deploy failed", None)
    assert store.parts("d") == [] and store.vms("d") == [] and store.segments("d") == []
    assert row.mac_base is None
