"""The back ends of the cluster commands: one interface, :class:`Backend`, with one method per
command, and two implementations:

- :class:`LocalBackend` (direct mode): the engine (``ediv.service.Service``) runs in this
  process, over the state store and the cluster file;
- ``WbemBackend`` (``--server URL``, in ``ediv.client.wbem_mode``): the same requests as CIM
  calls to an ediv WBEM server, through pywbem.

Each command of ``ediv.client.cluster_cmd`` parses its options, gets the back end from
:func:`backend_options` (``--server`` or direct), calls it once and prints the result once
(``ediv.client.output``), so both modes print the same text and JSON. A back end raises the
errors of ``ediv.errors``; the ``ediv`` group maps them to exit codes (``ediv.errors.CODES``).
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ediv import state as st
from ediv.client.wbem_target import SERVER_OPTIONS, target_of
from ediv.errors import EdivError, NotFound, no_scenario

if TYPE_CHECKING:
    from ediv.cluster import Cluster
    from ediv.service import Service


@dataclass
class DeployRequest:
    """``ediv deploy``'s inputs: the scenario file and the planning options."""

    scenario: str
    algorithm: str | None = None
    restrictions_path: str | None = None
    loads: dict[str, float] = field(default_factory=dict)
    allow_files: tuple[str, ...] = ()
    quiet: bool = False  # no progress on stderr (--json)


@dataclass
class Deployed:
    """What a deploy built: counts for the one-line summary, and the scenario's status."""

    name: str
    vms: int
    hosts: int
    segments: int
    status: dict


class Backend(Protocol):
    """One method per cluster command; the results are the README's JSON shapes."""

    live_hosts: bool  # hosts() probes now (cpus, memory), not the server's last probe

    def deploy(self, req: DeployRequest) -> Deployed: ...

    def exec(self, name: str, seq: str, vms: list[str] | None) -> list[dict]:
        """One entry per VM: vm, host, exit_code, output (+ error when unknown)."""

    def release(self, name: str, purge: bool) -> str | None:
        """None when released, else what is left (the command then exits 1)."""

    def status(self, name: str | None) -> list[dict]: ...

    def locate(self, vm: str | None, name: str | None) -> list[dict]: ...

    def segments(self, name: str | None) -> list[dict]: ...

    def hosts(self) -> list[dict]: ...

    def vm_state(self, name: str, vm: str, action: str, quiet: bool) -> dict: ...

    def cleanup_scope(self) -> tuple[list[str], int]:
        """(scenario names, host count) a cleanup would touch, for the confirmation."""

    def cleanup(self) -> dict: ...

    def console(self, name: str, vm: str, command: tuple[str, ...]) -> NoReturn: ...


# ---------------------------------------------------------------- choosing one

_LOCAL = ("state_path", "cluster_path", "trust_new_hosts")


def backend_options(fn: Callable) -> Callable:
    """Adds the WBEM options to a command and calls it with ``backend=``: a WbemBackend
    when a server is given (option, EDIV_SERVER or profile), else a LocalBackend over the
    command's --state, -c and --trust-new-hosts (which the command declares itself)."""

    @functools.wraps(fn)
    def wrapper(*args, server=None, user=None, password_file=None, ca_cert=None,
                profile=None, **kwargs):
        local = {k: kwargs.pop(k) for k in _LOCAL if k in kwargs}
        target = target_of(server, user, password_file, ca_cert, profile)
        with open_backend(target, **local) as backend:
            return fn(*args, backend=backend, **kwargs)

    for option in reversed(SERVER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@contextmanager
def open_backend(target: Any, state_path: str = st.DEFAULT_PATH,
                 cluster_path: str | None = None, trust_new_hosts: bool = False
                 ) -> Iterator[Backend]:
    """The back end for a command: over the WBEM ``target`` (a wbem_mode.Target), or local."""
    if target is not None:
        from ediv.client.wbem_mode import WbemBackend

        with WbemBackend(target, cluster_path=cluster_path) as backend:
            yield backend
        return
    backend = LocalBackend(state_path, cluster_path, trust_new_hosts)
    try:
        yield backend
    finally:
        backend.close()


# ---------------------------------------------------------------- direct mode

def resolve_cluster(path: str | None) -> Cluster:
    from ediv.cluster import load_cluster

    if path:
        return load_cluster(path)
    from ediv import testbed

    default = Path(testbed.DEFAULT_DIR) / "cluster.conf"
    if default.exists():
        return load_cluster(str(default))
    raise EdivError("no cluster file: pass -c CLUSTER, or run 'ediv testbed up' for a local one")


class LocalBackend:
    """Direct mode: the engine service in this process. Reads come from the state store;
    every change goes through ``Service``, which takes the scenario's claim."""

    live_hosts = True

    def __init__(self, state_path: str = st.DEFAULT_PATH, cluster_path: str | None = None,
                 trust_new_hosts: bool = False):
        self.store = st.StateStore(state_path)
        self.store.fail_orphaned_jobs()
        self.cluster_path = cluster_path
        self.trust_new_hosts = trust_new_hosts

    def close(self) -> None:
        self.store.close()

    # -- helpers ------------------------------------------------------------------------
    def _row(self, name: str) -> st.ScenarioRow:
        row = self.store.scenario(name)
        if row is None:
            raise no_scenario(name)
        return row

    def _cluster_of(self, name: str) -> Cluster:
        """-c, else the cluster the scenario was deployed with, else the default one."""
        from ediv.cluster import parse_cluster

        if self.cluster_path:
            return resolve_cluster(self.cluster_path)
        self._row(name)
        stored = self.store.cluster_of(name)
        return parse_cluster(stored[1], stored[0]) if stored else resolve_cluster(None)

    def _service(self, cluster: Cluster, progress: Callable[[dict], None] | None = None
                 ) -> Service:
        from ediv.service import Service

        extra = {"progress": progress} if progress is not None else {}
        return Service(self.store, cluster, trust_new_hosts=self.trust_new_hosts, **extra)

    # -- the commands -------------------------------------------------------------------
    def deploy(self, req: DeployRequest) -> Deployed:
        from ediv.client.progress import ProgressDisplay
        from ediv.controller import Controller

        cluster = resolve_cluster(self.cluster_path)
        cluster.file_dirs += list(req.allow_files)
        path = Path(req.scenario)
        display = ProgressDisplay(f"deploying {path.name}", quiet=req.quiet)
        with display, Controller(self.store, cluster, trust_new_hosts=self.trust_new_hosts,
                                 progress=display) as ctl:
            # the hosts' SSH handshake and agent start-up (most of a small deploy's first
            # second) overlap the imports and parsing below; the probe stage collects them
            ctl.start_probe()
            from ediv import xmlsafe
            from ediv.service import Service

            text = xmlsafe.read_file(path).decode("utf-8", errors="replace")
            restrictions = (Path(req.restrictions_path).read_text(encoding="utf-8")
                            if req.restrictions_path else None)
            with Service(self.store, cluster, progress=display, controller=ctl) as svc:
                # a local user's own file: vm@appliance may name local packages
                plan = svc.deploy(text, basedir=str(path.resolve().parent),
                                  source_name=req.scenario, algorithm=req.algorithm,
                                  restrictions=restrictions, loads=req.loads, appliances=True)
        from ediv.service import scenario_status

        status = scenario_status(self.store, self._row(plan.scenario))
        return Deployed(plan.scenario, len(plan.allocation), len(plan.used_hosts()),
                        len(plan.segments), status)

    def exec(self, name: str, seq: str, vms: list[str] | None) -> list[dict]:
        with self._service(self._cluster_of(name)) as svc:
            return [r.to_json() for r in svc.exec(name, seq, vms)]

    def release(self, name: str, purge: bool) -> str | None:
        from ediv.client.progress import ProgressDisplay

        cluster = self._cluster_of(name)
        display = ProgressDisplay(f"releasing {name}")
        with display, self._service(cluster, display) as svc:
            left = svc.release(name, purge=purge)
        if left:
            return (f"could not reach {', '.join(left)}; their records stay until "
                    "'ediv release' or 'ediv cleanup' reaches them")
        return None

    def status(self, name: str | None) -> list[dict]:
        from ediv.service import scenario_status

        rows = [self._row(name)] if name else self.store.scenarios()
        return [scenario_status(self.store, r) for r in rows]

    def locate(self, vm: str | None, name: str | None) -> list[dict]:
        return [{"scenario": v["scenario"], "vm": v["name"], "host": v["host"],
                 "state": v["state"]} for v in self.store.vms(name)
                if vm is None or v["name"] == vm]

    def segments(self, name: str | None) -> list[dict]:
        return self.store.segments(name)

    def hosts(self) -> list[dict]:
        cluster = resolve_cluster(self.cluster_path)
        with self._service(cluster) as svc:
            outcomes = svc.probe()
        counts: dict[str, int] = {}
        for v in self.store.vms():
            counts[v["host"]] = counts.get(v["host"], 0) + 1
        rows = []
        for h in cluster.hosts:
            o = outcomes[h.name]
            r = o.result if o.ok else {}
            mem = r.get("memory") or {}
            rows.append({
                "host": h.name, "address": h.address, "state": "up" if o.ok else "down",
                "load": r.get("load"), "cpus": r.get("cpus"),
                "mem_total_mb": mem["total"] // 2**20 if "total" in mem else None,
                "mem_available_mb": mem["available"] // 2**20 if "available" in mem else None,
                "vms": counts.get(h.name, 0), "uml": (r.get("uml") or {}).get("installed"),
                "error": None if o.ok else o.error})
        return rows

    def vm_state(self, name: str, vm: str, action: str, quiet: bool) -> dict:
        with self._service(self._cluster_of(name)) as svc:
            return svc.vm_action(name, vm, action)

    def cleanup_scope(self) -> tuple[list[str], int]:
        return ([r.name for r in self.store.scenarios()],
                len(resolve_cluster(self.cluster_path).hosts))

    def cleanup(self) -> dict:
        from ediv.client.progress import ProgressDisplay

        cluster = resolve_cluster(self.cluster_path)
        display = ProgressDisplay("cleanup")
        with display, self._service(cluster, display) as svc:
            return svc.cleanup()

    def console(self, name: str, vm: str, command: tuple[str, ...]) -> NoReturn:
        """Replace this process with ``ssh HOST ediv-host console`` (a terminal, or one
        command whose exit status becomes ours)."""
        cluster = self._cluster_of(name)
        row = next((v for v in self.store.vms(name) if v["name"] == vm), None)
        if row is None:
            raise NotFound("VM", vm, scenario=name,
                           message=f"no VM {vm!r} in scenario {name!r}")
        host = cluster.host(row["host"])
        part = next(p for p in self.store.parts(name) if p["host"] == row["host"])
        agent = f"{host.agent} console --key {shlex.quote(part['key'])} {shlex.quote(vm)}"
        if command:
            agent += " -- " + " ".join(shlex.quote(c) for c in command)
        ssh = ["ssh", "-p", str(host.ssh_port), "-o", "StrictHostKeyChecking=yes",
               "-o", "BatchMode=yes"]
        if cluster.known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={cluster.known_hosts}"]
        if cluster.ssh_key:
            ssh += ["-i", cluster.ssh_key]
        ssh += ["-t"] if not command and sys.stdin.isatty() else ["-T"]
        ssh += [f"{host.ssh_user}@{host.address or host.name}", agent]
        self.close()
        os.execvp("ssh", ssh)
