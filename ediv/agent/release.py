"""Undo everything a scenario created, from its journal (plus a sweep by name), idempotently."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ediv.agent import commands as C
from ediv.agent import naming
from ediv.agent.drivers import imagemount
from ediv.agent.events import Emitter
from ediv.agent.journal import ScenarioDir, list_keys
from ediv.agent.proc import kill_and_wait, marked_pids, reap_registered, run, start_time
from ediv.errors import EdivError

SYS_NET = Path("/sys/class/net")
NETNS_DIR = Path("/run/netns")
VETH_RE = re.compile(r"^e[vm][a-z0-9]{1,6}\.")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            mnt = line.split()[1].encode().decode("unicode_escape")
            if mnt.startswith(prefix) or mnt == str(root):
                out.append(mnt)
    return out


def _existing_links(names: set[str], key: str) -> list[str]:
    owned = naming.owned_link_re(key)
    present = set(os.listdir(SYS_NET))
    return sorted(n for n in present if n in names or owned.match(n))


def _existing_netns(names: set[str], key: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    prefix = naming.owned_netns_prefix(key)
    return sorted(n for n in os.listdir(NETNS_DIR) if n in names or n.startswith(prefix))


_MNT_DETACH = 2
_libc = None


def umount_lazy(path: str) -> bool:
    """``umount -l path`` without a process per mount: umount2(MNT_DETACH); False if ``path``
    is no mount point (or is gone)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.umount2(os.fsencode(path), _MNT_DETACH) == 0


def _netns_del(name: str) -> bool:
    """What ``ip netns del`` does: detach the namespace's bind mount, remove its file; the
    kernel frees the namespace (and the veths in it, in one batch) once nothing holds it."""
    path = NETNS_DIR / name
    umount_lazy(str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _stop_captures(entries: list[dict[str, Any]], timeout: float = 2.0) -> None:
    for e in entries:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(start_time(e["pid"]) == e["start"] for e in entries) and \
            time.monotonic() < deadline:
        reap_registered()
        time.sleep(0.02)


TRASH_PREFIX = ".released-"


def _discard(root: Path) -> None:
    """Move scenario dir ``root`` aside and delete it in the background; inline if it cannot
    be moved. ``purge`` removes what an interrupted background delete left."""
    trash = root.with_name(f"{TRASH_PREFIX}{root.name}-{os.urandom(4).hex()}")
    try:
        os.rename(root, trash)
    except OSError:
        shutil.rmtree(root, ignore_errors=True)
        return
    # ``sh`` returns at once (waited for: no zombie); its ``rm`` runs on in its own session
    # with no descriptor of ours (an SSH channel closes when the agent exits, not when rm does)
    run(["sh", "-c", 'setsid rm -rf --one-file-system -- "$1" >/dev/null 2>&1 </dev/null &',
         "sh", str(trash)], check=False)


def release(state_root: str | Path, key: str, emitter: Emitter) -> dict[str, Any]:
    """Remove every process, mount, link, namespace, host setting and file of scenario ``key``."""
    naming.check_key(key)
    sdir = ScenarioDir(state_root, key)
    existed = sdir.exists()
    with sdir.lock():
        entries = sdir.entries()
        counts = {"processes": 0, "links": 0, "netns": 0, "mounts": 0}
        # 0. captures (net@capture_file) stop first, with SIGTERM, so tcpdump writes its last
        #    packets; then they go with every other process of the scenario
        _stop_captures([e for e in entries if e.get("op") == "capture"
                        and e.get("start") is not None and start_time(e["pid"]) == e["start"]])
        # 1. processes: journalled pids (if still the same process) + anything carrying the marker
        pids = {e["pid"] for e in entries if e.get("op") == "proc"
                and e.get("start") is not None and start_time(e["pid"]) == e["start"]}
        pids |= set(marked_pids(naming.marker(key)))
        left = kill_and_wait(pids)
        reap_registered()
        if left:
            raise EdivError(f"processes {left} of scenario {key} do not die")
        counts["processes"] = len(pids)
        for vm in dict.fromkeys(e["vm"] for e in entries if e.get("op") == "proc"):
            emitter.vm(vm, "stopped")
        # 2. mounts made in the host namespace (VM mounts die with their mount namespace)
        mounts = [e["path"] for e in entries if e.get("op") == "mount"]
        mounts += _mounts_under(sdir.root) if existed else []
        for m in sorted(set(mounts), key=len, reverse=True):
            counts["mounts"] += umount_lazy(m)
        #    then the scenario's references to shared image mounts (the last user unmounts)
        for ident in dict.fromkeys(e["id"] for e in entries if e.get("op") == "image"):
            counts["mounts"] += imagemount.release(state_root, ident, key)
        # 3. host settings
        for e in reversed(entries):
            op = e.get("op")
            if op == "host_route":
                run(C.ip_argv(C.route_del(e["dest"], e["gw"], e["family"])), check=False)
            elif op == "external" and (SYS_NET / e["dev"]).exists():
                run(C.ip_argv(C.link_nomaster(e["dev"])), check=False)
            elif op == "sysctl":
                with contextlib.suppress(OSError):
                    Path(e["path"]).write_text(str(e["old"]) + "\n")
        # 4. namespaces first: the kernel then removes their veths in one batch (deleting
        #    veths one by one costs a synchronize_net each), then whatever links remain
        link_names = {e["name"] for e in entries if e.get("op") == "link"}
        ns_names = {e["name"] for e in entries if e.get("op") == "netns"}
        spaces = _existing_netns(ns_names, key)
        counts["netns"] = sum(_netns_del(n) for n in spaces)
        #    bridges (and other links not ending in a namespace) go at once, beside them
        links = [n for n in _existing_links(link_names, key) if not VETH_RE.match(n)]
        if links:
            run(C.ip_batch_argv(force=True), input=C.batch_text([C.link_del(n) for n in links]),
                check=False)
            counts["links"] += len(links)
        deadline = time.monotonic() + 30
        waited_for_veths = not spaces
        while True:
            links = _existing_links(link_names, key)
            spaces = _existing_netns(ns_names, key)
            if not links and not spaces:
                break
            if time.monotonic() > deadline:
                raise EdivError(f"could not remove {links + spaces}")
            if not waited_for_veths and any(VETH_RE.match(n) for n in links):
                # veth ends of deleted namespaces vanish by themselves shortly
                time.sleep(0.005)
                waited_for_veths = time.monotonic() > deadline - 27
                continue
            counts["netns"] += sum(_netns_del(n) for n in spaces)
            if links:
                run(C.ip_batch_argv(force=True),
                    input=C.batch_text([C.link_del(n) for n in links]), check=False)
            counts["links"] += len(links)
            time.sleep(0.02)
        # 5. files: renamed aside at once (a deploy of the same name finds its place free),
        #    deleted by a detached process (deleting thousands of files can take seconds)
        if existed:
            _discard(sdir.root)
    if sdir.root.exists():
        # the lock file was recreated by a concurrent waiter or rmtree failed
        shutil.rmtree(sdir.root, ignore_errors=True)
    return {"key": key, "existed": existed, **counts}


STALE_INCOMING = 600  # seconds; a bundle being extracted by a live deploy is younger


def purge(state_root: str | Path, emitter: Emitter) -> list[dict[str, Any]]:
    """Release every scenario this state directory knows about, and drop bundles left
    half-extracted by a deploy that died."""
    out = [release(state_root, key, emitter) for key in list_keys(state_root)
           if naming.KEY_RE.match(key)]
    # image mounts whose scenarios are gone (a journal lost with its directory)
    imagemount.sweep(state_root, [k for k in list_keys(state_root) if naming.KEY_RE.match(k)])
    root = Path(state_root)
    if root.is_dir():
        for p in root.glob(TRASH_PREFIX + "*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in root.glob(".incoming-*"):
            if time.time() - p.stat().st_mtime > STALE_INCOMING:
                shutil.rmtree(p, ignore_errors=True)
    return out
