"""Shared test fixtures: where the corpus and examples are; a real WBEM server over a real
state store (``engine_server``) for the tests that talk to one."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from ediv.testbed import SSHD

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = REPO.parent / "shared" / "corpus"
# the command line, as a user runs it (in a subprocess, so each run starts clean)
EDIV = [sys.executable, "-m", "ediv.client.cli"]
# tests on a local testbed (namespace hosts with sshd): root and openssh-server
TESTBED = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root"),
    pytest.mark.skipif(not Path(SSHD).exists(), reason="openssh-server not installed"),
]

# OVF packages booted under UML on a testbed (qemu-img converts their disks)
OVF_UML_BOOT = [
    *TESTBED,
    pytest.mark.slow,
    pytest.mark.skipif(not os.access("/usr/bin/linux", os.X_OK),
                       reason="User-Mode Linux not installed (apt-get install user-mode-linux)"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"),
                       reason="busybox-static not installed"),
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed"),
]


def deleting(state_dir: str | Path) -> bool:
    """A background delete of a released scenario dir of ``state_dir`` is still running: its
    dir (moved aside as ``.released-*``) is there, or its ``rm`` (whose command line names
    it) has not exited yet: the dir goes a moment before the process that removed it."""
    from ediv.agent.release import TRASH_PREFIX

    root = Path(state_dir)
    if root.is_dir() and any(root.glob(TRASH_PREFIX + "*")):
        return True
    needle = os.fsencode(f"{root}/{TRASH_PREFIX}")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():  # a zombie's is empty
                return True
        except OSError:
            continue
    return False


def state_entries(state_dir: str | Path, timeout: float = 60.0) -> list[str]:
    """What is left in an agent's state dir once the background deletes of released scenario
    dirs are over (``deleting``), or after ``timeout`` if they never end."""
    deadline = time.monotonic() + timeout
    while deleting(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(p.name for p in Path(state_dir).iterdir())


def wait_for(pred, timeout: float, what: str, proc=None):
    """``pred()`` once true; fails after ``timeout``, or when ``proc`` (the command whose
    progress is awaited) ended first, with what it said."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waiting for {what}, the command ended ({proc.returncode}): "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def follow_job(conn, job, timeout: float = 300.0, interval: float = 0.3):
    """Poll an EDIV_ConcreteJob as a client would until it leaves Running (4); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        inst = conn.GetInstance(job)
        if inst["JobState"] != 4:
            return inst
        assert time.monotonic() < deadline, f"job still running: {inst['JobStatus']}"
        time.sleep(interval)


# requests lets these variables override an explicit CA bundle; the tests pin the server's cert
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus beside the clone; tests that need it skip when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (CI has it beside the clone)")
    return CORPUS


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory):
    """An ediv WBEM server on 127.0.0.1 (ephemeral port, HTTPS) with the engine plugin over
    its own state store, users of ``wbem_support.USERS``: yields (handle, plugin, orphan),
    orphan being a job left "running" by a server process that is gone."""
    from ediv import state as st
    from ediv.provider.auth import Role, add_user
    from ediv.provider.config import load_config
    from ediv.provider.engine_plugin import EnginePlugin
    from ediv.provider.server import serve
    from tests.provider.wbem_support import USERS

    base = tmp_path_factory.mktemp("engine")
    cfg = load_config(base / "server.toml", listen="127.0.0.1:0", state=base / "state.db")
    cfg.cluster_file = EXAMPLES / "cluster.conf"
    cfg.schema_cache_dir = base / "cache"
    for role, (name, password) in USERS.items():
        add_user(cfg.users_file, name, Role.parse(role), password)
    # a job left running by a server process that is gone
    store = st.StateStore(cfg.state_path)
    orphan = store.start_job("deploy", None)
    store.db.execute("UPDATE jobs SET owner='nohost-x:999999999' WHERE id=?", (orphan,))
    store.db.execute("UPDATE jobs SET owner=? WHERE id=?",
                     (f"{os.uname().nodename}:999999999", orphan))
    store.close()
    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    plugin = EnginePlugin()
    handle = serve(cfg, plugins=[plugin])
    try:
        yield handle, plugin, orphan
    finally:
        handle.stop()
        plugin.jobs.wait_all(30)
        os.environ.update(saved)


@pytest.fixture
def store(engine_server):
    """The state store of ``engine_server``."""
    return engine_server[1].engine.store()


@pytest.fixture
def service(op):
    """The EDIV_VirtualSystemManagementService path (``op``: the module's connection)."""
    (path,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    return path
