"""A signal that stops a verb (raised in the main thread) waits for the end of a held
section: the emitter's lock is never left taken, a pool never left blocked."""

from __future__ import annotations

import io
import json
import os
import signal
import threading

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
