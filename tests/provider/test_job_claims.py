"""A job's scenario claim ends with the job: whoever sees the job finished may change the
scenario at once (a pywbem script that waits for the job, then sends the next
RequestStateChange, must not be told the scenario is busy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ediv import state as st
from ediv.provider.config import load_config
from ediv.provider.engine import Engine
from ediv.provider.jobs import JobRunner


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    cfg = load_config(tmp_path / "server.toml", state=tmp_path / "state.db")
    cfg.data_dir = tmp_path / "data"
    store = st.StateStore(cfg.state_path)
    store.create_scenario("s1", "<vnuml/>", basedir=str(tmp_path), algorithm="RoundRobin",
                          state=st.DEFINED)
    store.unlock("s1")
    store.close()
    return Engine(cfg)


def _claim_seen_at_finish(engine: Engine, ok: bool) -> tuple[object, str]:
    """Run a job whose work finishes its own row (as the service does) and look, from a
    second connection, at the claim the moment the row says the job ended."""
    claim = engine.store().claim("s1", "deploy")
    seen: list[object] = []

    def work(job: int, store: st.StateStore) -> None:
        store.finish_job(job, ok, error=None if ok else "it broke")
        other = st.StateStore(engine.state_path)
        try:
            seen.append(other.claimed("s1"))
            seen.append(other.job(job)["state"])
        finally:
            other.close()

    runner = JobRunner(engine)
    job = runner.start("deploy", "s1", work, claim=claim)
    assert runner.wait(job, timeout=30)
    return seen[0], seen[1]


@pytest.mark.parametrize("ok", [True, False])
def test_claim_is_free_when_the_job_reads_finished(engine: Engine, ok: bool) -> None:
    claimed, state = _claim_seen_at_finish(engine, ok)
    assert state == ("completed" if ok else "failed")
    assert claimed is None


def test_job_finished_by_the_runner_frees_the_claim_too(engine: Engine) -> None:
    claim = engine.store().claim("s1", "release")
    runner = JobRunner(engine)
    job = runner.start("release", "s1", lambda job, store: {"released": "s1"}, claim=claim)
    assert runner.wait(job, timeout=30)
    assert engine.store().job(job)["state"] == "completed"
    assert engine.store().claimed("s1") is None
    engine.store().claim("s1", "deploy")  # the next change is taken at once


def test_a_claim_taken_over_meanwhile_is_not_given_back(engine: Engine) -> None:
    """The claim given back is the job's own token: another caller's claim stays."""
    store = engine.store()
    claim = store.claim("s1", "deploy")
    job = store.start_job("deploy", "s1")
    store.give_back_on_finish(job, st.Claim("s1", "not-the-holder", "deploy", claim.owner))
    store.finish_job(job, True)
    assert store.claimed("s1") is not None
    assert store.holds(claim)
