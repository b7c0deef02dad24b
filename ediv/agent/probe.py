"""``probe``: what this host offers (load, CPUs, memory, kernel features, UML)."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

from ediv.agent import AGENT_VERSION
from ediv.agent.network import link_type_supported, vlan_supported

UML_CANDIDATES = ("/usr/bin/linux", "/usr/bin/linux.uml")


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0]) * 1024
    return out


def find_uml() -> str | None:
    for cand in UML_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("linux.uml")


def overlay_supported() -> bool:
    fs = Path("/proc/filesystems").read_text()
    return "overlay" in fs.split() or Path("/sys/module/overlay").exists() or any(
        Path("/lib/modules", platform.release()).rglob("overlay.ko*"))


def probe() -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    load1 = os.getloadavg()[0]
    mem = _meminfo()
    uml = find_uml()
    return {
        "version": AGENT_VERSION,
        "kernel": platform.release(),
        "cpus": cpus,
        "load1": load1,
        "load": round(load1 / cpus, 3),
        "memory": {"total": mem.get("MemTotal"), "available": mem.get("MemAvailable")},
        "features": {
            "8021q": vlan_supported(),
            "vxlan": link_type_supported("vxlan"),
            "bridge": link_type_supported("bridge"),
            "tap": os.path.exists("/dev/net/tun"),
            "overlayfs": overlay_supported(),
        },
        "uml": {"installed": uml is not None, "kernel": uml},
        "drivers": sorted(__import__("ediv.agent.drivers", fromlist=["available"]).available()),
    }
