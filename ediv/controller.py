"""The controller: runs agent verbs (probe, receive + deploy, exec, vm, release, purge,
status) on the hosts over SSH, all hosts of a step in parallel, and records in the state store
what each host did. The lifecycle rules (states, claims, stages) are ediv.service's.

Time is bounded: a host silent for the cluster's ``host_timeout`` fails its step (and a
deploy rolls back); each agent verb has a deadline the agent enforces itself. A bundle is
sent with the agent's ``receive`` verb into its private state directory, then ``deploy
--key`` takes the scenario's lock before anything else and refuses when the bundle is gone:
a release that ran first removed it, so a late agent (stopped, resumed) builds nothing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ediv import state as st
from ediv.cluster import Cluster, Host
from ediv.errors import EdivError
from ediv.protocol import EXIT_FAILED
from ediv.remote import AgentFailed, Connections, HostUnreachable, SshOptions, run_agent

Progress = Callable[[dict], None]
AGENT_TIMEOUT = 1800.0  # deadline of a deploy, exec or release verb on a host
SHORT_TIMEOUT = 60.0  # probe, status


@dataclass
class HostOutcome:
    host: str
    ok: bool
    error: str | None = None
    result: dict = field(default_factory=dict)


def _quiet(_event: dict) -> None:
    pass


class Controller:
    """Runs agent verbs on hosts over SSH, all hosts in parallel, each bounded by the
    cluster's host_timeout: probe, receive + deploy (``build_parts``), exec, vm, release,
    status. It owns the SSH connections; the lifecycle rules are the service's."""

    def __init__(
        self,
        store: st.StateStore,
        cluster: Cluster,
        *,
        trust_new_hosts: bool = False,
        progress: Progress = _quiet,
        workers: int = 32,
    ):
        self.store = store
        self.cluster = cluster
        self.progress = progress
        self.workers = workers
        # one agent session per host for the whole command: a deploy's probe, receive and
        # deploy run in one agent process over one channel (ediv.agent_session)
        self.conns = Connections(SshOptions.from_cluster(cluster, trust_new=trust_new_hosts),
                                 sessions=True)
        self._early: dict[str, Future] = {}  # host -> its probe started by start_probe
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.conns.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------
    def _host(self, name: str) -> Host:
        host = self.cluster.host(name)
        if host is None:
            raise EdivError(f"host {name!r} is not in {self.cluster.source}")
        return host

    def _parallel(self, hosts: list[str], work: Callable[[Host], dict]) -> dict[str, HostOutcome]:
        def one(name: str) -> HostOutcome:
            try:
                return HostOutcome(name, True, result=work(self._host(name)) or {})
            except (AgentFailed, HostUnreachable, EdivError) as exc:
                return HostOutcome(
                    name, False, error=str(exc), result=getattr(exc, "result", {}) or {}
                )
            except Exception as exc:  # a bug or an unexpected transport error: report it
                return HostOutcome(name, False, error=f"{name}: {type(exc).__name__}: {exc}")

        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(hosts))) as pool:
            return {o.host: o for o in pool.map(one, hosts)}

    def _emit(self, **event) -> None:
        self.progress(event)

    # -- probe ---------------------------------------------------------------------------
    def start_probe(self, hosts: list[str] | None = None) -> None:
        """Begin the probe of ``hosts`` (default: all) now, in the background: the SSH
        connection, the agent session's start-up and the probe itself go ahead while the
        caller does its local work (imports, parsing, the state store); :meth:`probe` then
        collects them. Only the network part runs early: the events, the store records and
        the errors come from :meth:`probe` as if it had run them, and a probe never
        collected (the command failed first) changes nothing but its host's sessions."""
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for name in hosts or [h.name for h in self.cluster.hosts]:
            host = self.cluster.host(name)
            if host is None or name in self._early:
                continue
            self._early[name] = Future()
            todo.put((host, self._early[name]))

        def worker() -> None:
            # daemon threads, not a pool: a command that ends before collecting does not
            # wait here for a slow host's connect timeout
            while True:
                try:
                    host, fut = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    fut.set_result(run_agent(self.conns, host, "probe", timeout=SHORT_TIMEOUT))
                except BaseException as exc:  # re-raised where probe() collects it
                    fut.set_exception(exc)
                with self._lock:
                    if self._closed:  # closed meanwhile: what this thread opened goes too
                        self.conns.drop(host)

        for _ in range(min(self.workers, todo.qsize())):
            threading.Thread(target=worker, name="ediv-probe", daemon=True).start()

    def probe(self, hosts: list[str] | None = None) -> dict[str, HostOutcome]:
        names = hosts or [h.name for h in self.cluster.hosts]

        def work(host: Host) -> dict:
            self._emit(event="host", host=host.name, state="probing")
            early = self._early.pop(host.name, None)
            result = (early.result() if early is not None else
                      run_agent(self.conns, host, "probe", timeout=SHORT_TIMEOUT))
            self.store.record_probe(host, result, "up")
            self._emit(event="host", host=host.name, state="up", load=result.get("load"))
            return result

        outcomes = self._parallel(names, work)
        for o in outcomes.values():
            if not o.ok:
                self.store.record_probe(self._host(o.host), None, "unreachable")
                self._emit(event="host", host=o.host, state="unreachable", error=o.error)
        return outcomes

    def host(self, name: str) -> Host:
        """The cluster's host ``name`` (EdivError when the cluster file lacks it)."""
        return self._host(name)

    # -- upload + build (the deploy's host stages) --------------------------------------
    def build_parts(self, name: str, parts: list, bundles: dict[str, bytes], *, total: int,
                    job: int | None = None) -> dict[str, str]:
        """Upload each part's bundle (``receive``) and build it (``deploy --key``) on all
        hosts in parallel; when one fails, the others' connections are dropped so their agents
        roll back at once. Returns host -> error of the hosts that failed ({}: all built)."""
        total = max(1, total)
        ready = [0]
        by_host = {p.host: p for p in parts}

        def work(host: Host) -> dict:
            key = by_host[host.name].info.key
            self.store.set_part_state(name, host.name, "deploying")
            self._emit(event="host", host=host.name, state="uploading")
            run_agent(self.conns, host, "receive", "--key", key, stdin=bundles[host.name],
                      timeout=AGENT_TIMEOUT)

            def on_event(event: dict) -> None:
                event = {**event, "host": host.name}
                if event.get("event") == "vm" and event.get("state") in ("running", "ready"):
                    ready[0] += 1
                    if job:
                        self.store.job_progress(job, int(100 * ready[0] / total))
                self.progress(event)

            result = run_agent(self.conns, host, "deploy", "--key", key, on_event=on_event,
                               timeout=AGENT_TIMEOUT)
            self.store.set_part_state(name, host.name, "deployed")
            self.store.set_vm_states(name, host.name, "running")
            return result

        def guarded(host: Host) -> dict:
            try:
                return work(host)
            except BaseException:
                # the others stop too: their agents see the connection go and roll back
                # at once, instead of finishing a deploy that is rolled back anyway
                for other in parts:
                    if other.host != host.name:
                        self.conns.drop(self._host(other.host))
                raise

        outcomes = self._parallel([p.host for p in parts], guarded)
        return {h: o.error or "failed" for h, o in outcomes.items() if not o.ok}

    # -- exec (EDIV -x) ------------------------------------------------------------------
    def run_exec(self, seq: str, targets: list) -> dict:
        """Run ``exec SEQ`` on each target host in parallel (``--vm`` for a selection);
        returns host -> HostRun with every command result the agent reported before it
        finished, failed, was killed or its host was lost."""
        from ediv.service.exec import HostRun

        runs = {t.host: HostRun(t.host) for t in targets}

        def work(host: Host) -> dict:
            t = next(t for t in targets if t.host == host.name)
            run = runs[host.name]

            def on_event(event: dict) -> None:
                run.on_event(event)
                self.progress({**event, "host": host.name})

            result = run_agent(self.conns, host, "exec", seq,
                               *(a for vm in (t.only or ()) for a in ("--vm", vm)),
                               "--key", t.key, on_event=on_event, timeout=AGENT_TIMEOUT,
                               ok_status=(0, EXIT_FAILED))
            run.finished = True
            return result

        outcomes = self._parallel(list(runs), work)
        for host, o in outcomes.items():
            if not o.ok:
                runs[host].error = o.error
                # a verb that ran to its end and said ok: false (kept for older agents)
                if o.result.get("results") is not None:
                    runs[host].finished = True
        return runs

    # -- one VM --------------------------------------------------------------------------
    def vm(self, host: Host, key: str, vm: str, action: str) -> dict:
        """``ediv-host vm VM ACTION`` on ``host``."""
        return run_agent(self.conns, host, "vm", vm, action, "--key", key,
                         on_event=lambda e: self.progress({**e, "host": host.name}),
                         timeout=AGENT_TIMEOUT)

    def host_status(self, host: Host, key: str | None = None) -> dict:
        """``ediv-host status`` (of one scenario key, or of all)."""
        args = ("--key", key) if key else ()
        return run_agent(self.conns, host, "status", *args, timeout=SHORT_TIMEOUT)

    # -- release (EDIV -d / -P) ----------------------------------------------------------
    def release_parts(self, name: str, purge: bool) -> list[str]:
        """Release (or purge) every part of ``name`` on its host in parallel, removing each
        part row that is gone; returns the hosts that could not be reached (their part rows
        stay, marked unreachable)."""
        parts = {p["host"]: p for p in self.store.parts(name)}

        def work(host: Host) -> dict:
            self._emit(event="host", host=host.name, state="releasing")
            result = run_agent(
                self.conns,
                host,
                "purge" if purge else "release",
                "--key",
                parts[host.name]["key"],
                on_event=lambda e: self.progress({**e, "host": host.name}),
                timeout=AGENT_TIMEOUT,
            )
            self.store.remove_part(name, host.name)
            self._emit(event="host", host=host.name, state="released")
            return result

        unknown = [h for h in parts if self.cluster.host(h) is None]
        outcomes = self._parallel([h for h in parts if h not in unknown], work)
        left = unknown + [h for h, o in outcomes.items() if not o.ok]
        for h in left:
            err = outcomes[h].error if h in outcomes else "host no longer in the cluster file"
            self.store.set_part_state(name, h, "unreachable", err)
        return left


    # -- cleanup -------------------------------------------------------------------------
    def purge_unknown(self, known: set[str]) -> dict[str, HostOutcome]:
        """On every host, purge the scenarios whose key the state store does not know."""

        def work(host: Host) -> dict:
            status = self.host_status(host)
            purged = []
            for sc in status.get("scenarios", []):
                key = sc.get("key")
                if key and key not in known:
                    run_agent(self.conns, host, "purge", "--key", key, timeout=AGENT_TIMEOUT)
                    purged.append(key)
            return {"purged": purged}

        return self._parallel([h.name for h in self.cluster.hosts], work)
