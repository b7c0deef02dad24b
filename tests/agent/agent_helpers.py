"""Helpers of the agent tests that test modules import (conftest is not importable)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def unique_key(prefix: str) -> str:
    """A scenario key no other concurrent test run uses (keys name kernel objects)."""
    import secrets

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return prefix[:2] + "".join(secrets.choice(alphabet) for _ in range(4))


def unique_mgmt_pair() -> tuple[dict, dict]:
    """Two management /30s from a random spot of 198.18.128.0/17."""
    import secrets

    base = 128 * 256 + secrets.randbelow(8000) * 4
    def cidr(n: int) -> str:
        return f"198.18.{n // 256}.{n % 256}/30"
    return ({"host": cidr(base + 1), "vm": cidr(base + 2)},
            {"host": cidr(base + 5), "vm": cidr(base + 6)})


def scenario_uid(key: str) -> int:
    """The host uid the VMs of scenario ``key`` run as under the default agent config."""
    from ediv.agent.config import AgentConfig
    from ediv.agent.drivers.confine import id_base

    cfg = AgentConfig()
    return id_base(key, cfg.vm_id_first, cfg.vm_id_slots)


@dataclass
class AgentRun:
    rc: int
    events: list[dict]
    stderr: str

    @property
    def result(self) -> dict:
        return self.events[-1] if self.events else {}

    def of(self, event: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == event]


class Agent:
    """Runs ``python -m ediv.agent.main`` with a private state dir, as the controller would."""

    def __init__(self, state: Path, config: Path | None = None):
        self.state = state
        self.config = config

    def argv(self, *args: str) -> list[str]:
        base = [sys.executable, "-m", "ediv.agent.main", "--state-dir", str(self.state)]
        if self.config:
            base += ["--config", str(self.config)]
        return base + list(args)

    def __call__(self, *args: str, stdin: bytes | None = None, timeout: float = 300) -> AgentRun:
        p = subprocess.run(self.argv(*args), input=stdin, capture_output=True, timeout=timeout,
                           check=False, stdin=None if stdin is not None else subprocess.DEVNULL)
        events = [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]
        if {"release", "purge"} & set(args):
            left = wait_discarded(self.state)
            assert not left, f"release left {left} behind"
        return AgentRun(p.returncode, events, p.stderr.decode())


def wait_discarded(state: Path, timeout: float = 60) -> list[str]:
    """A release renames a scenario dir aside and deletes it in the background: wait until
    those renamed dirs are gone and their ``rm`` has exited (bounded: a snapshot of the
    test's processes taken in between would list it), and return what is still there."""
    import time

    from ediv.agent.release import TRASH_PREFIX
    from tests.conftest import deleting

    deadline = time.monotonic() + timeout
    while deleting(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(p.name for p in state.glob(TRASH_PREFIX + "*")) if state.is_dir() else []


def agent_exec_command(agent, key: str, vms: list[str], command: str) -> dict[str, str]:
    """Run one ad-hoc command by deploying nothing new: append an exec to the stored scenario."""
    bundle = agent.state / key / "bundle" / "scenario.xml"
    xml = bundle.read_text()
    seq = f"adhoc{abs(hash(command)) % 10**6}"
    for vm in vms:
        head, sep, tail = xml.partition(f'<vm name="{vm}" ')
        body, end, rest = tail.partition("</vm>")
        cmd = command.replace("&", "&amp;").replace("<", "&lt;")
        xml = head + sep + body + f'<exec seq="{seq}" type="verbatim">{cmd}</exec>' + end + rest
    bundle.write_text(xml)
    res = agent("exec", seq, "--key", key)
    assert res.rc == 0, res.events
    return {r["vm"]: r["output"] for r in res.result["results"]}


def deploy_bundle(agent, tmp_path: Path, key: str, xml: str):
    """Deploy scenario text ``xml`` as a bundle of its own (no files) under key ``key``."""
    b = tmp_path / f"bundle-{key}"
    (b / "files").mkdir(parents=True)
    (b / "scenario.xml").write_text(xml)
    (b / "deploy.json").write_text(json.dumps({"scenario": key, "key": key}))
    return agent("deploy", "--bundle", str(b))
