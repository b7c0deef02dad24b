"""``status``: scenarios of this host and whether their VM processes are alive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ediv.agent.journal import ScenarioDir, list_keys
from ediv.agent.proc import is_running


def status(state_root: Path, key: str | None = None) -> dict[str, Any]:
    keys = [key] if key else list_keys(state_root)
    out = []
    for k in keys:
        sdir = ScenarioDir(state_root, k)
        if not sdir.exists():
            continue
        meta = sdir.read_json(sdir.meta_path) or {}
        state = sdir.read_json(sdir.state_path)
        vms = []
        for name, vm in ((state or {}).get("vms") or {}).items():
            rt = vm.get("runtime", {})
            pid = rt.get("pid")
            running = is_running(pid, rt.get("start"))
            word = "paused" if vm.get("state") == "paused" else "running"  # vm pause
            vms.append({"name": name, "type": vm.get("type"),
                        "state": word if running else "stopped", "pid": pid,
                        "console": vm.get("console")})
        out.append({"key": k, "scenario": meta.get("scenario"),
                    "state": "deployed" if state else "incomplete", "vms": vms,
                    "segments": meta.get("segments", [])})
    return {"scenarios": out}
