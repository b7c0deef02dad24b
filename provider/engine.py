"""What the root/ediv providers share: the state store, the cluster, the parsed scenarios.

The server's threads (cheroot workers, job threads, the indication poller) each read the
SQLite state store through their own connection (WAL lets them run side by side); the
engine service of a job gets a connection of its own too. Nothing here changes the engine:
it is the glue between the WBEM server and ``ediv.service``. The one lock is the state
store's claim (``Engine.claim``), correct between server threads and server processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pywbem import CIM_ERR_FAILED, CIM_ERR_INVALID_PARAMETER, CIMError

from ediv import state as st
from ediv import testbed
from ediv.cluster import Cluster, load_cluster, parse_cluster
from ediv.errors import EdivError, InputError, cim_status, message
from ediv.private import private_dir
from ediv.provider.config import ServerConfig
from ediv.scenario import edit
from ediv.scenario.model import Scenario
from ediv.service import Service
from ediv.service.models import stored_model

Progress = Callable[[dict], None]


def check_name(name: str, what: str = "scenario") -> str:
    """The engine's name rule (a scenario name becomes a directory name under the data dir)
    as the CIMError a client gets."""
    try:
        return edit.check_name(name, what)
    except InputError as exc:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, str(exc.diagnostics[0].message)) from None


class Engine:
    """One per server: opens stores per thread, knows the cluster and the data dir."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.state_path = str(config.state_path)
        self.data_dir = private_dir(config.data_dir)  # scenario specs and their files
        self._local = threading.local()

    # -- state store -----------------------------------------------------------------
    def store(self) -> st.StateStore:
        """This thread's connection to the state store."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = st.StateStore(self.state_path)
            self._local.store = store
        return store

    def new_store(self) -> st.StateStore:
        """A connection of its own (for a job thread; close it when done)."""
        return st.StateStore(self.state_path)

    # -- cluster ---------------------------------------------------------------------
    def cluster_path(self) -> Path | None:
        if self.config.cluster_file is not None:
            return Path(self.config.cluster_file)
        default = Path(testbed.DEFAULT_DIR) / "cluster.conf"
        return default if default.exists() else None

    def cluster(self, scenario: str | None = None, store: st.StateStore | None = None
                ) -> Cluster:
        """The cluster a scenario was deployed with (stored), else the server's."""
        if scenario is not None:
            stored = (store or self.store()).cluster_of(scenario)
            if stored is not None:
                return parse_cluster(stored[1], stored[0])
        path = self.cluster_path()
        if path is None:
            raise CIMError(CIM_ERR_FAILED, "the server has no cluster file: set 'cluster' in "
                           "its config, or run 'ediv testbed up'")
        try:
            cluster = load_cluster(str(path))
        except InputError as exc:
            raise CIMError(CIM_ERR_FAILED, "\n".join(str(d) for d in exc.diagnostics)) from None
        except (EdivError, OSError) as exc:
            raise CIMError(CIM_ERR_FAILED, f"cluster file {path}: {exc}") from None
        # besides its Archive, a scenario's files may come from the admin's file_dirs only
        cluster.file_dirs += [str(d) for d in self.config.file_dirs]
        return cluster

    def cluster_hosts(self) -> list:
        """Hosts of the server's cluster file ([] when there is none or it is broken)."""
        try:
            return list(self.cluster().hosts)
        except CIMError:
            return []

    # -- scenario models -------------------------------------------------------------
    def model(self, row: st.ScenarioRow) -> Scenario | None:
        """The parsed spec of a scenario (parsed once per content); None if it no longer
        parses."""
        try:
            return stored_model(row.spec or "", row.name, row.basedir or ".", False)
        except (InputError, EdivError):
            return None

    def scenario_dir(self, name: str) -> Path:
        return self.data_dir / "scenarios" / check_name(name)

    # -- the engine service ----------------------------------------------------------
    def service(self, store: st.StateStore | None = None, *, scenario: str | None = None,
                progress: Progress | None = None, hosts: bool = True) -> Service:
        """The engine service over ``store`` (this thread's by default), with the cluster
        ``scenario`` was deployed with (else the server's). ``hosts=False``: the call acts on
        no host (define, checks), so a server without a cluster file can serve it. Close it
        when done."""
        store = store or self.store()
        try:
            cluster = self.cluster(scenario, store)
        except CIMError:
            if hosts:
                raise
            cluster = Cluster(file_dirs=[str(d) for d in self.config.file_dirs],
                              source="<no cluster file>")
        return Service(store, cluster, progress=progress or _quiet)

    # -- one change at a time per scenario: the store's claims -------------------------
    @contextmanager
    def claim(self, name: str, what: str) -> Iterator[st.Claim]:
        """Hold scenario ``name``'s claim for the block (CIMError when another call holds
        it or there is no such scenario)."""
        held = self.take(name, what)
        try:
            yield held
        finally:
            self.give(held)

    def take(self, name: str, what: str) -> st.Claim:
        try:
            return self.store().claim(name, what)
        except EdivError as exc:
            raise to_cim(exc) from None

    def give(self, claim: st.Claim | None) -> None:
        if claim is not None:
            self.store().unclaim(claim)

    def busy(self, name: str) -> str | None:
        """What the live call holding ``name``'s claim does (None: nobody holds it)."""
        held = self.store().claimed(name)
        return held[0] if held else None


def _quiet(_event: dict) -> None:
    pass


def to_cim(exc: BaseException) -> CIMError:
    """The CIMError a WBEM client gets for an engine error (status from ediv.errors.CODES)."""
    if isinstance(exc, CIMError):
        return exc
    return CIMError(cim_status(exc), message(exc))
