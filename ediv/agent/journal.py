"""Per-scenario state on disk: a journal written BEFORE each action, a lock, metadata.

Layout of ``<state-dir>/<key>/``::

    lock            flock held during receive/deploy/exec/release (re-entrant per process)
    upload.tar.gz   the bundle the controller sent (``receive``), 0600, until deploy extracts
                    it; its absence after taking the lock is what fences a late deploy
    journal.jsonl   one JSON object per created thing: {"op": "netns"|"link"|"proc"|"mount"|"image"|
                    "host_route"|"host_addr"|"external"|"dir", ...}, appended and fsynced
                    before the thing is created, so release knows it even after a crash
    meta.json       scenario name, key, config of the deploy (written at the start)
    state.json      VMs and their runtime data (written when the deploy finished)
    bundle/         the deploy bundle (scenario.xml, deploy.json, files/)
    vms/<vm>/       per-VM working files of UML VMs (cow files, hostfs share, logs)
    containers/<vm>/  per-VM working files of container VMs (overlay upper/work/merged,
                    init.log, ready), on a tmpfs of the scenario's own unless the agent
                    setting ``container_tmpfs_size`` is empty (drivers/container.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ediv.errors import EdivError

_held: dict[str, int] = {}  # lock files this process holds (a lock inside a lock is free)


class ScenarioDir:
    def __init__(self, state_root: str | Path, key: str):
        self.state_root = Path(state_root)
        self.key = key
        self.root = self.state_root / key
        self.journal_path = self.root / "journal.jsonl"
        self.lock_path = self.root / "lock"
        self.meta_path = self.root / "meta.json"
        self.state_path = self.root / "state.json"
        self.bundle_dir = self.root / "bundle"
        self.upload_path = self.root / "upload.tar.gz"
        self.vms_dir = self.root / "vms"
        self.containers_dir = self.root / "containers"

    def exists(self) -> bool:
        return self.root.is_dir()

    def create(self) -> None:
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.mkdir(exist_ok=True, mode=0o700)

    def vm_dir(self, vm_name: str) -> Path:
        return self.vms_dir / vm_name

    def container_dir(self, vm_name: str) -> Path:
        return self.containers_dir / vm_name

    @contextlib.contextmanager
    def lock(self, blocking: bool = True) -> Iterator[None]:
        """Exclusive lock on this scenario (the lock file lives in the scenario dir); a
        blocking wait is bounded by the verb's deadline (SIGALRM). Re-entrant: a release
        inside a deploy that holds the lock does not wait for itself."""
        path = str(self.lock_path)
        if _held.get(path):
            _held[path] += 1
            try:
                yield
            finally:
                _held[path] -= 1
            return
        self.create()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                raise EdivError(f"scenario {self.key} is busy (another agent holds "
                                f"{self.lock_path})") from None
            _held[path] = 1
            try:
                yield
            finally:
                _held.pop(path, None)
        finally:
            os.close(fd)

    def only_lock_left(self) -> bool:
        """Nothing but the lock file (a refused or fenced verb): safe to remove the dir."""
        try:
            return {p.name for p in self.root.iterdir()} <= {"lock"}
        except FileNotFoundError:
            return False

    def record(self, *entries: dict[str, Any]) -> None:
        """Append ``entries`` to the journal and make them durable before returning."""
        if not entries:
            return
        data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Journal entries; a torn last line (crash while writing) is ignored."""
        try:
            text = self.journal_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def list_keys(state_root: str | Path) -> list[str]:
    root = Path(state_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
