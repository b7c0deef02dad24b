"""A signal that stops a verb (raised in the main thread) waits for the end of a held
section: the emitter's lock is never left taken, a pool never left blocked."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ediv.agent import interrupts
from ediv.agent.events import Emitter
from ediv.errors import EdivError


class Stopped(Exception):
    pass


@pytest.fixture
def stopping_handler():
    """SIGUSR1 stops the verb as the agent's SIGTERM handler does (interrupts.stop)."""
    seen: list[int] = []

    def handler(signum, _frame):
        seen.append(signum)
        interrupts.stop(Stopped("stopped"))

    old = signal.signal(signal.SIGUSR1, handler)
    yield seen
    signal.signal(signal.SIGUSR1, old)


def test_a_stop_inside_a_held_section_is_raised_as_it_ends(stopping_handler):
    reached_end = False
    with pytest.raises(Stopped), interrupts.held():
        os.kill(os.getpid(), signal.SIGUSR1)  # handled before kill returns to us
        assert stopping_handler == [signal.SIGUSR1]
        reached_end = True
    assert reached_end


def test_a_stop_outside_a_held_section_is_raised_at_once(stopping_handler):
    with pytest.raises(Stopped):
        os.kill(os.getpid(), signal.SIGUSR1)
        pytest.fail("not stopped")


def test_a_stop_just_after_the_emitter_took_its_lock_leaves_it_usable(stopping_handler):
    """The signal comes the moment the emitter's lock is taken (before its try): raised
    there, it left the lock taken and every later event waited 5 s and was dropped."""

    class SignalledLock:
        def __init__(self):
            self.lock = threading.Lock()

        def acquire(self, timeout=-1):
            ok = self.lock.acquire(timeout=timeout)
            if not stopping_handler:
                os.kill(os.getpid(), signal.SIGUSR1)  # its handler runs right here
            return ok

        def release(self):
            self.lock.release()

    stream = io.StringIO()
    em = Emitter(stream)
    em._lock = SignalledLock()
    with pytest.raises(Stopped):
        em.emit("vm", vm="a", state="booting")
    assert not em._lock.lock.locked()
    em.emit("rollback", message="stopped")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == \
        ["vm", "rollback"]


def test_a_late_deploy_stopped_while_refused_leaves_no_dir(tmp_path, monkeypatch):
    """A deploy whose bundle was released meanwhile is refused; the heartbeat's SIGTERM
    (Terminated, an EdivError) coming during its clean-up left the dir, remade with a lock."""
    from ediv.agent import main as agent_main
    from ediv.agent.deploy import deploy_received
    from ediv.agent.events import NullEmitter
    from ediv.agent.journal import ScenarioDir

    calls = []
    real = ScenarioDir.only_lock_left

    def only_lock_left(self):
        calls.append(1)
        if len(calls) == 2:  # the clean-up's look
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(self)

    def handler(_signum, _frame):
        interrupts.stop(agent_main.Terminated("terminated by signal SIGTERM"))

    monkeypatch.setattr(ScenarioDir, "only_lock_left", only_lock_left)
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(EdivError, match="no bundle received"):
            deploy_received(tmp_path, "k0late", None, NullEmitter())
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not (tmp_path / "k0late").exists()


@pytest.fixture
def fresh_stop():
    """Each test starts with no stop (a stop marks the verb as stopping until reset)."""
    interrupts.reset()
    yield
    interrupts.reset()


# the shell forks the sleep (two commands), which keeps the output pipe open: killing the
# shell alone left the waiter reading until the sleep ended
FORKING = ["/bin/sh", "-c", "sleep 600; true"]


def _alive_sleeps(marker: str) -> list[int]:
    out = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in env.read_bytes() and \
                    (env.parent / "cmdline").read_bytes().startswith(b"sleep\0"):
                out.append(int(env.parent.name))
        except OSError:
            continue
    return out


def test_a_stop_kills_a_command_a_worker_thread_waits_for(stopping_handler, fresh_stop,
                                                           tmp_path):
    """A pool's worker runs a command while the main thread waits in a held section (as
    ctx.map does): the stop kills the command's whole group at once, the worker raises
    Stopping, the section ends and raises the stop."""
    marker = f"EDIV_TEST_MARK={tmp_path.name}"
    env = {**os.environ, "EDIV_TEST_MARK": tmp_path.name}
    out: list[BaseException] = []
    started = threading.Event()

    def work():
        try:
            started.set()
            interrupts.run(FORKING, timeout=600, env=env)
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=work)
    with pytest.raises(Stopped), interrupts.held():
        t.start()
        started.wait()
        while not _alive_sleeps(marker):
            threading.Event().wait(0.02)
        os.kill(os.getpid(), signal.SIGUSR1)
        t.join(60)
        assert not t.is_alive(), "the worker still waits for its command"
    assert len(out) == 1 and isinstance(out[0], interrupts.Stopping), out
    assert _alive_sleeps(marker) == []


def test_a_stop_in_the_main_thread_kills_the_command_it_waits_for(stopping_handler,
                                                                  fresh_stop, tmp_path):
    marker = f"EDIV_TEST_MARK={tmp_path.name}"
    env = {**os.environ, "EDIV_TEST_MARK": tmp_path.name}
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
    with pytest.raises(Stopped):
        interrupts.run(FORKING, timeout=600, env=env)
    assert _alive_sleeps(marker) == []


def test_a_command_started_after_the_stop_is_killed_at_once(stopping_handler, fresh_stop):
    """A worker that had not yet looked at the stop starts no command that outlives it."""
    with pytest.raises(Stopped), interrupts.held():
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(interrupts.Stopping):
            interrupts.run(FORKING, timeout=600)
    interrupts.reset()
    assert interrupts.run(["/bin/sh", "-c", "echo ok"], timeout=60).stdout == b"ok\n"


def test_a_timeout_kills_the_whole_group(fresh_stop, tmp_path):
    marker = f"EDIV_TEST_MARK={tmp_path.name}"
    env = {**os.environ, "EDIV_TEST_MARK": tmp_path.name}
    with pytest.raises(subprocess.TimeoutExpired):
        interrupts.run(FORKING, timeout=0.5, env=env)
    assert _alive_sleeps(marker) == []
