"""The state store: SQLite in WAL mode, shared by CLI processes and the WBEM server.

What it keeps: hosts (as last probed), scenarios (spec, plan, state, lock), the part of each
scenario on each host (sub-scenario, agent input, state), VMs, segments (pool, id) and jobs;
for the WBEM server, its indication subscriptions and (kept by triggers, whoever writes) which
scenarios, VM sets and jobs changed when (``change_count``, ``changes_since``).
Every allocation that must not collide between scenarios running at once (segment ids,
management /30 blocks, MAC bases) happens inside one ``BEGIN IMMEDIATE`` transaction, so two
processes cannot take the same id. The schema is versioned with ``PRAGMA user_version`` and
upgraded by the ordered ``MIGRATIONS`` below.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ediv.errors import AlreadyExists, Busy, EdivError, no_scenario
from ediv.private import FILE_MODE, private_dir, tighten

DEFAULT_PATH = os.environ.get("EDIV_STATE", "/var/lib/ediv/state.db")


def _change_triggers(table: str, kind: str, key: str) -> str:
    """Triggers recording every insert, update and delete of ``table`` in ``changes``.
    (Part of migration 3: never change what a released migration produces.)"""
    out = []
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        out.append(
            f"CREATE TRIGGER {table}_{event.lower()}_changes AFTER {event} ON {table} BEGIN"
            " UPDATE change_counter SET n = n + 1;"
            " INSERT OR REPLACE INTO changes (kind, key, seq)"
            f" VALUES ('{kind}', {row}.{key}, (SELECT n FROM change_counter));"
            " END;"
        )
    return "\n".join(out) + "\n"


MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE hosts (
        name TEXT PRIMARY KEY, address TEXT, cpu INTEGER, mem INTEGER, max_vhost INTEGER,
        ifname TEXT, vm_type TEXT, load REAL, mem_free INTEGER, cpus INTEGER,
        features TEXT, status TEXT, last_probe REAL
    );
    CREATE TABLE scenarios (
        name TEXT PRIMARY KEY, state TEXT NOT NULL, spec TEXT, restrictions TEXT,
        algorithm TEXT, plan TEXT, cluster TEXT, basedir TEXT,
        mac_base INTEGER UNIQUE, mgmt_offset INTEGER, mgmt_count INTEGER,
        lock_owner TEXT, lock_time REAL, error TEXT, created REAL, updated REAL
    );
    CREATE TABLE parts (
        scenario TEXT NOT NULL REFERENCES scenarios(name) ON DELETE CASCADE,
        host TEXT NOT NULL, key TEXT NOT NULL UNIQUE, subscenario TEXT, deploy TEXT,
        state TEXT NOT NULL, error TEXT, PRIMARY KEY (scenario, host)
    );
    CREATE TABLE vms (
        scenario TEXT NOT NULL REFERENCES scenarios(name) ON DELETE CASCADE,
        name TEXT NOT NULL, host TEXT, type TEXT, state TEXT NOT NULL,
        PRIMARY KEY (scenario, name)
    );
    CREATE TABLE segments (
        kind TEXT NOT NULL, id INTEGER NOT NULL,
        scenario TEXT NOT NULL REFERENCES scenarios(name) ON DELETE CASCADE,
        net TEXT NOT NULL, hosts TEXT NOT NULL, PRIMARY KEY (kind, id)
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, scenario TEXT,
        state TEXT NOT NULL, percent INTEGER NOT NULL DEFAULT 0, log TEXT NOT NULL DEFAULT '',
        result TEXT, error TEXT, owner TEXT, started REAL, finished REAL
    );
    CREATE INDEX jobs_scenario ON jobs(scenario);
    """,
    # 2: the WBEM server's indication subscriptions (filters, listener destinations,
    # subscriptions created in interop), kept across server restarts
    """
    CREATE TABLE subscriptions (
        kind TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, created REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    """,
    # 3: change tracking for the indications: a counter and, per scenario / VM set / job, the
    # counter value of its last change, kept by triggers inside every writer's transaction
    """
    CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
    INSERT INTO change_counter (id, n) VALUES (0, 0);
    CREATE TABLE changes (
        kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, key)
    );
    CREATE INDEX changes_seq ON changes(seq);
    """
    + _change_triggers("scenarios", "scenario", "name")
    + _change_triggers("vms", "vms", "scenario")
    + _change_triggers("jobs", "job", "id"),
    # 4: who asked for a job (CIM Owner) and the one VM it affects, if it is a per-VM job
    """
    ALTER TABLE jobs ADD COLUMN requested_by TEXT;
    ALTER TABLE jobs ADD COLUMN element TEXT;
    """,
    # 5: the scenario claim (the one lock): besides lock_owner (the process, for staleness),
    # a token per call, so two calls of one process (two server threads) are told apart, and
    # what the holder is doing (for the "busy" message)
    """
    ALTER TABLE scenarios ADD COLUMN lock_token TEXT;
    ALTER TABLE scenarios ADD COLUMN lock_what TEXT;
    """,
]

# Scenario states
DEFINED, DEPLOYING, DEPLOYED, RELEASING, RELEASED, FAILED = (
    "defined",
    "deploying",
    "deployed",
    "releasing",
    "released",
    "failed",
)
# Never stored: what a deploying/releasing scenario reads as once the process doing it (its
# lock owner) is gone (killed controller, crashed server). Release works from it.
INTERRUPTED = "interrupted"
IN_PROGRESS = (DEPLOYING, RELEASING)
ACTIVE_STATES = (DEPLOYING, DEPLOYED, RELEASING, FAILED, INTERRUPTED)


def _start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` (field 22 of /proc/PID/stat): with the pid it names one process,
    not a later one that got the same pid."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


def owner_id() -> str:
    """``host:pid:start`` of this process (the owner recorded with locks and jobs)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by ``owner`` (``host:pid[:start]``) still runs; a process of
    another machine is assumed alive."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        pass
    return not start or start == "0" or _start_ticks(int(pid)) == start


_owner_alive = owner_alive


@dataclass
class ScenarioRow:
    name: str
    state: str
    spec: str | None
    plan: dict | None
    algorithm: str | None
    basedir: str | None
    mac_base: int | None
    mgmt_offset: int | None
    error: str | None
    lock_owner: str | None
    updated: float | None
    restrictions: str | None = None  # the restriction file's text, as given at define/deploy
    stored_state: str | None = None  # as written; ``state`` says INTERRUPTED when its owner died

    @property
    def interrupted_note(self) -> str | None:
        """Why an interrupted scenario reads so (None for any other state)."""
        if self.state != INTERRUPTED:
            return None
        return (f"{self.stored_state} by {self.lock_owner or 'a process'} was interrupted: "
                f"that process is gone; 'ediv release {self.name}' removes what it built")


@dataclass(frozen=True)
class Claim:
    """A held claim on a scenario: the one lock of ediv. ``token`` is unique per call (two
    threads of one process hold different tokens), ``owner`` the process (``host:pid:start``)
    that decides staleness: a claim whose process is gone may be taken by anybody;
    ``interrupted`` then names the dead owner and what it was doing."""

    name: str
    token: str
    what: str
    owner: str
    interrupted: str | None = None


def _clear_claim(db: sqlite3.Connection, name: str | None, token: str) -> None:
    """Inside a transaction: scenario ``name`` is free again if ``token`` still holds it."""
    db.execute("UPDATE scenarios SET lock_owner=NULL, lock_token=NULL, lock_what=NULL"
               " WHERE name=? AND lock_token=?", (name, token))


def new_token() -> str:
    return uuid.uuid4().hex


def _private_db(path: Path) -> None:
    """state.db holds specs and job outputs: 0600 (SQLite gives -wal/-shm the database's
    mode), its directory 0700 when ediv creates it."""
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        tighten(p)


class StateStore:
    """The one record of what exists: scenarios (spec, plan, state, claim), parts per host,
    VMs, segments, host probes, jobs and subscriptions. One SQLite file in WAL mode, shared by
    CLI processes and server threads; every write is one transaction, written before the
    hosts act, so a process killed at any point leaves what release/cleanup need."""

    def __init__(self, path: str | Path = DEFAULT_PATH):
        self.path = str(path)
        if self.path != ":memory:":
            _private_db(Path(self.path))
        self.db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._given_on_finish: dict[int, Claim] = {}
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the log before it returns, so a killed process loses
        # nothing (the record release and cleanup need); only an OS crash or power loss may
        # drop the last commits (hosts' parts the store then lacks are what 'ediv cleanup'
        # purges). FULL would add an fsync to each of a deploy's ~12 commits (5 ms each here).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self) -> None:
        self.db.close()


    # -- schema --------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise EdivError(
                    f"{self.path}: state store schema {version} is newer than this ediv "
                    f"({len(MIGRATIONS)}); upgrade ediv"
                )
            for i in range(version, len(MIGRATIONS)):
                # statement by statement: executescript() would commit the open transaction
                for statement in _statements(MIGRATIONS[i]):
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so allocations serialize
        between processes; the lock serializes this store's threads on its one connection."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- scenarios -----------------------------------------------------------------------
    def create_scenario(
        self,
        name: str,
        spec: str,
        *,
        basedir: str | None,
        algorithm: str | None,
        restrictions: str | None = None,
        state: str = DEFINED,
        token: str | None = None,
        what: str | None = None,
    ) -> str | None:
        """Register a scenario (``DEFINED``, unclaimed) or start deploying one (``DEPLOYING``),
        claimed with ``token`` (a fresh one when None: :meth:`unlock` without a token gives it
        back).
        Deploying a scenario that was only defined takes it over (refused while another live
        call holds its claim); any other scenario of the same name (defined twice, deploying,
        deployed, failed half way) is refused with AlreadyExists. Returns the state the
        scenario had before (None when it is new)."""
        now = time.time()
        me = owner_id()
        explicit = token is not None
        token = token or new_token()
        what = what or ("deploy" if state == DEPLOYING else "define")
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, lock_owner, lock_token, lock_what FROM scenarios WHERE name=?",
                (name,)).fetchone()
            if row is None:
                # a defined scenario is not being changed, unless its creator asks to hold it
                held = state in IN_PROGRESS or explicit
                db.execute(
                    "INSERT INTO scenarios (name, state, spec, restrictions, algorithm, basedir,"
                    " lock_owner, lock_token, lock_what, lock_time, created, updated)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (name, state, spec, restrictions, algorithm, basedir,
                     me if held else None, token if held else None, what if held else None,
                     now, now, now),
                )
                return None
            if state != DEPLOYING or row["state"] != DEFINED:
                advice = (
                    "" if row["state"] == DEFINED else f"; release it first ('ediv release {name}')"
                )
                raise AlreadyExists("scenario", name, state=row["state"],
                                    message=f"scenario {name!r} is already {row['state']}{advice}")
            if _held_by_other(row, token):
                raise Busy(name, row["lock_what"], row["lock_owner"])
            db.execute(
                "UPDATE scenarios SET state=?, spec=?, basedir=COALESCE(?, basedir),"
                " algorithm=COALESCE(?, algorithm), restrictions=COALESCE(?, restrictions),"
                " lock_owner=?, lock_token=?, lock_what=?, lock_time=?, updated=? WHERE name=?",
                (state, spec, basedir, algorithm, restrictions, me, token, what, now, now, name),
            )
            return row["state"]

    def scenario(self, name: str) -> ScenarioRow | None:
        row = self.db.execute("SELECT * FROM scenarios WHERE name=?", (name,)).fetchone()
        return _scenario_row(row) if row else None

    def scenarios(self) -> list[ScenarioRow]:
        rows = self.db.execute("SELECT * FROM scenarios ORDER BY created, name").fetchall()
        return [_scenario_row(r) for r in rows]

    def reset_to_defined(self, name: str, error: str | None = None) -> None:
        """Back to only defined: placement, parts, VMs, segments and addressing dropped (the
        spec, restrictions and files stay), lock released."""
        with self.transaction() as db:
            for table in ("parts", "vms", "segments"):
                db.execute(f"DELETE FROM {table} WHERE scenario=?", (name,))
            db.execute(
                "UPDATE scenarios SET state=?, error=?, plan=NULL, mac_base=NULL,"
                " mgmt_offset=NULL, mgmt_count=NULL, lock_owner=NULL, lock_token=NULL,"
                " lock_what=NULL,"
                " updated=? WHERE name=?",
                (DEFINED, error, time.time(), name),
            )

    def set_scenario_state(self, name: str, state: str, error: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE scenarios SET state=?, error=?, updated=? WHERE name=?",
                (state, error, time.time(), name),
            )

    def set_basedir(self, name: str, basedir: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE scenarios SET basedir=?, updated=? WHERE name=?",
                       (basedir, time.time(), name))

    def set_plan(self, name: str, plan: dict, algorithm: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE scenarios SET plan=?, algorithm=?, updated=? WHERE name=?",
                (json.dumps(plan), algorithm, time.time(), name),
            )

    def set_cluster(self, name: str, source: str, text: str) -> None:
        """The cluster file a scenario was deployed with, so release needs no -c."""
        with self.transaction() as db:
            db.execute(
                "UPDATE scenarios SET cluster=? WHERE name=?",
                (json.dumps({"source": source, "text": text}), name),
            )

    def cluster_of(self, name: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT cluster FROM scenarios WHERE name=?", (name,)).fetchone()
        if row is None or not row["cluster"]:
            return None
        data = json.loads(row["cluster"])
        return data["source"], data["text"]

    def delete_scenario(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM scenarios WHERE name=?", (name,))

    # -- claims (the one lock) -----------------------------------------------------------
    def claim(self, name: str, what: str, token: str | None = None) -> Claim:
        """Claim scenario ``name`` for one call doing ``what``: refused (Busy) while another
        live claim holds it, whichever thread or process that is; a claim whose process is gone
        is taken over (the Claim says what was interrupted). Passing the ``token`` of a claim
        already held renews it (a job thread carrying on the request's claim)."""
        me = owner_id()
        token = token or new_token()
        with self.transaction() as db:
            row = db.execute("SELECT lock_owner, lock_token, lock_what, state FROM scenarios"
                             " WHERE name=?", (name,)).fetchone()
            if row is None:
                raise no_scenario(name)
            if _held_by_other(row, token):
                raise Busy(name, row["lock_what"], row["lock_owner"])
            interrupted = None
            if row["lock_owner"] and row["lock_token"] != token:  # stale: its process is gone
                interrupted = f"{row['lock_what'] or row['state']} by {row['lock_owner']}"
            db.execute(
                "UPDATE scenarios SET lock_owner=?, lock_token=?, lock_what=?, lock_time=?"
                " WHERE name=?", (me, token, what, time.time(), name))
        return Claim(name, token, what, me, interrupted)

    def unclaim(self, claim: Claim | str, name: str | None = None) -> None:
        """Give a claim back (nothing happens when it is no longer held: a rollback that
        reset the scenario, or a delete, gave it back already)."""
        token = claim.token if isinstance(claim, Claim) else claim
        name = claim.name if isinstance(claim, Claim) else name
        with self.transaction() as db:
            _clear_claim(db, name, token)

    def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` is still the scenario's claim."""
        row = self.db.execute("SELECT lock_token FROM scenarios WHERE name=?",
                              (claim.name,)).fetchone()
        return row is not None and row["lock_token"] == claim.token

    def claimed(self, name: str) -> tuple[str, str] | None:
        """(what, owner) of the live claim on ``name``, None when nobody holds one."""
        row = self.db.execute("SELECT lock_owner, lock_token, lock_what FROM scenarios"
                              " WHERE name=?", (name,)).fetchone()
        if row is None or not row["lock_token"] or not owner_alive(row["lock_owner"]):
            return None
        return row["lock_what"] or "change", row["lock_owner"]

    @contextmanager
    def locked(self, name: str, what: str = "change") -> Iterator[Claim]:
        """Hold the scenario's claim for the block."""
        claim = self.claim(name, what)
        try:
            yield claim
        finally:
            self.unclaim(claim)

    def lock(self, name: str, what: str = "change") -> str:
        """Claim ``name`` (see :meth:`claim`); returns the token for :meth:`unlock`."""
        return self.claim(name, what).token

    def unlock(self, name: str, token: str | None = None) -> None:
        """Give back the claim ``token``; without one, any claim of this process on ``name``
        (what a caller of create_scenario without a token does)."""
        if token is not None:
            self.unclaim(token, name)
            return
        with self.transaction() as db:
            db.execute("UPDATE scenarios SET lock_owner=NULL, lock_token=NULL, lock_what=NULL"
                       " WHERE name=? AND lock_owner=?", (name, owner_id()))

    # -- allocations ---------------------------------------------------------------------
    def allocate_segments(
        self, scenario: str, kind: str, first: int, last: int, nets: list[tuple[str, list[str]]]
    ) -> list[int]:
        """Ids for ``nets`` from the pool [first, last], never one in use by anybody."""
        if not nets:
            return []
        with self.transaction() as db:
            used = {
                r[0]
                for r in db.execute(
                    "SELECT id FROM segments WHERE kind=? AND id BETWEEN ? AND ?",
                    (kind, first, last),
                )
            }
            free = (i for i in range(first, last + 1) if i not in used)
            ids = []
            for net, hosts in nets:
                seg_id = next(free, None)
                if seg_id is None:
                    raise EdivError(
                        f"the {kind} pool [{first}..{last}] is exhausted: {len(used)} ids in use, "
                        f"{len(nets)} more needed; release a scenario or widen the pool"
                    )
                db.execute(
                    "INSERT INTO segments (kind, id, scenario, net, hosts) VALUES (?,?,?,?,?)",
                    (kind, seg_id, scenario, net, json.dumps(hosts)),
                )
                ids.append(seg_id)
            return ids

    def free_segments(self, scenario: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM segments WHERE scenario=?", (scenario,))

    def segments(self, scenario: str | None = None) -> list[dict]:
        q = (
            "SELECT * FROM segments"
            + (" WHERE scenario=?" if scenario else "")
            + " ORDER BY kind, id"
        )
        rows = self.db.execute(q, (scenario,) if scenario else ()).fetchall()
        return [
            {
                "kind": r["kind"],
                "id": r["id"],
                "scenario": r["scenario"],
                "net": r["net"],
                "hosts": json.loads(r["hosts"]),
            }
            for r in rows
        ]

    def allocate_addressing(self, scenario: str, vm_count: int, capacity: int) -> tuple[int, int]:
        """(mac_base, mgmt_offset) for a scenario: a MAC base no other scenario holds and a
        run of ``vm_count`` management /30 blocks (of ``capacity``) that overlaps no other."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT mac_base, mgmt_offset, mgmt_count FROM scenarios "
                "WHERE name != ? AND mac_base IS NOT NULL",
                (scenario,),
            ).fetchall()
            bases = {r["mac_base"] for r in rows}
            mac_base = next(b for b in range(1, 1 << 16) if b not in bases)
            taken = sorted(
                (r["mgmt_offset"], r["mgmt_offset"] + r["mgmt_count"])
                for r in rows
                if r["mgmt_offset"] is not None
            )
            offset = 0
            for start, end in taken:
                if offset + vm_count <= start:
                    break
                offset = max(offset, end)
            if offset + vm_count > capacity:
                free = capacity - sum(e - s for s, e in taken)
                raise EdivError(
                    f"the management network has room for {capacity} VMs; {free} are free "
                    f"and scenario {scenario!r} needs {vm_count} in one run"
                )
            db.execute(
                "UPDATE scenarios SET mac_base=?, mgmt_offset=?, mgmt_count=? WHERE name=?",
                (mac_base, offset, vm_count, scenario),
            )
            return mac_base, offset

    # -- parts and VMs -------------------------------------------------------------------
    def add_part(self, scenario: str, host: str, key: str, subscenario: str, deploy: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts (scenario, host, key, subscenario, deploy, state)"
                " VALUES (?,?,?,?,?,?)",
                (scenario, host, key, subscenario, json.dumps(deploy), "planned"),
            )

    def set_part_state(
        self, scenario: str, host: str, state: str, error: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE parts SET state=?, error=? WHERE scenario=? AND host=?",
                (state, error, scenario, host),
            )

    def parts(self, scenario: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM parts WHERE scenario=? ORDER BY rowid", (scenario,)
        ).fetchall()
        return [
            {
                "host": r["host"],
                "key": r["key"],
                "subscenario": r["subscenario"],
                "deploy": json.loads(r["deploy"] or "{}"),
                "state": r["state"],
                "error": r["error"],
            }
            for r in rows
        ]

    def remove_part(self, scenario: str, host: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM parts WHERE scenario=? AND host=?", (scenario, host))

    def used_keys(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM parts")}

    def set_vms(self, scenario: str, vms: list[tuple[str, str, str, str]]) -> None:
        """(name, host, type, state) for every VM of the scenario."""
        with self.transaction() as db:
            db.execute("DELETE FROM vms WHERE scenario=?", (scenario,))
            db.executemany(
                "INSERT INTO vms (scenario, name, host, type, state) VALUES (?,?,?,?,?)",
                [(scenario, *v) for v in vms],
            )

    def set_vm_states(self, scenario: str, host: str | None, state: str) -> None:
        with self.transaction() as db:
            if host is None:
                db.execute("UPDATE vms SET state=? WHERE scenario=?", (state, scenario))
            else:
                db.execute(
                    "UPDATE vms SET state=? WHERE scenario=? AND host=?", (state, scenario, host)
                )

    def set_spec(self, name: str, spec: str, *, state: str = DEFINED) -> bool:
        """Replace the scenario text while the scenario is in ``state``; False when it is not
        (another process moved it on), and nothing was written."""
        with self.transaction() as db:
            cur = db.execute("UPDATE scenarios SET spec=?, updated=? WHERE name=? AND state=?",
                             (spec, time.time(), name, state))
            return cur.rowcount == 1

    def has_vms(self, scenario: str) -> bool:
        """The scenario has VM rows (it was placed: deploying, deployed, releasing, failed)."""
        return self.db.execute("SELECT 1 FROM vms WHERE scenario=? LIMIT 1",
                               (scenario,)).fetchone() is not None

    def set_vm_state(self, scenario: str, vm: str, state: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE vms SET state=? WHERE scenario=? AND name=?", (state, scenario, vm))

    def vm(self, scenario: str, name: str) -> dict | None:
        row = self.db.execute(
            "SELECT * FROM vms WHERE scenario=? AND name=?", (scenario, name)
        ).fetchone()
        return dict(row) if row else None

    def vm_page(self, scenario: str, after: int = 0, limit: int = 1000) -> list[dict]:
        """A page of a scenario's VMs in insertion order: rows after rowid ``after`` (each
        dict carries its ``rowid`` for the next page). Read-only."""
        rows = self.db.execute(
            "SELECT rowid, * FROM vms WHERE scenario=? AND rowid>? ORDER BY rowid LIMIT ?",
            (scenario, after, limit)).fetchall()
        return [dict(r) for r in rows]

    def vm_counts_by_host(self) -> dict[str, int]:
        """How many VMs each host has (hosts with none left out). Read-only."""
        rows = self.db.execute("SELECT host, COUNT(*) FROM vms WHERE host IS NOT NULL"
                               " AND host != '' GROUP BY host")
        return {r[0]: r[1] for r in rows.fetchall()}

    def vms_on_host(self, host: str) -> list[dict]:
        """The VMs placed on ``host`` (any scenario). Read-only."""
        rows = self.db.execute("SELECT * FROM vms WHERE host=? ORDER BY rowid", (host,))
        return [dict(r) for r in rows.fetchall()]

    def vms(self, scenario: str | None = None) -> list[dict]:
        q = "SELECT * FROM vms" + (" WHERE scenario=?" if scenario else "") + " ORDER BY rowid"
        rows = self.db.execute(q, (scenario,) if scenario else ()).fetchall()
        return [dict(r) for r in rows]

    # -- hosts ---------------------------------------------------------------------------
    def record_probe(self, host, probe: dict | None, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO hosts (name, address, cpu, mem, max_vhost, ifname, vm_type,"
                " load, mem_free, cpus, features, status, last_probe)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    host.name,
                    host.address,
                    host.cpu,
                    host.mem,
                    host.max_vhost,
                    host.ifname,
                    host.vm_type,
                    (probe or {}).get("load"),
                    (probe or {}).get("mem_available_mb"),
                    (probe or {}).get("cpus"),
                    json.dumps((probe or {}).get("features", {})),
                    status,
                    time.time(),
                ),
            )

    def hosts(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM hosts ORDER BY name")]

    # -- jobs ----------------------------------------------------------------------------
    def start_job(self, kind: str, scenario: str | None, *, requested_by: str | None = None,
                  element: str | None = None) -> int:
        """``owner`` is this process (see fail_orphaned_jobs); ``requested_by`` the user."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, scenario, state, owner, started, requested_by, element)"
                " VALUES (?,?,?,?,?,?,?)",
                (kind, scenario, "running", owner_id(), time.time(), requested_by, element),
            )
            return int(cur.lastrowid)

    def job_progress(self, job: int, percent: int | None = None, line: str | None = None) -> None:
        with self.transaction() as db:
            if percent is not None:
                db.execute("UPDATE jobs SET percent=? WHERE id=?", (max(0, min(100, percent)), job))
            if line:
                db.execute(
                    "UPDATE jobs SET log = log || ? WHERE id=?", (line.rstrip("\n") + "\n", job)
                )

    def give_back_on_finish(self, job: int, claim: Claim) -> None:
        """Give ``claim`` back in the transaction that finishes ``job`` on this connection:
        a client that sees the job end may change the scenario at once, so the claim must not
        outlive the job row by even a moment (whoever finishes the job: the service or the
        job runner)."""
        self._given_on_finish[job] = claim

    def finish_job(
        self, job: int, ok: bool, result: object = None, error: str | None = None
    ) -> None:
        claim = self._given_on_finish.pop(job, None)
        with self.transaction() as db:
            if claim is not None:
                _clear_claim(db, claim.name, claim.token)
            db.execute(
                "UPDATE jobs SET state=?, percent=CASE WHEN ? THEN 100 ELSE percent END,"
                " result=?, error=?, finished=? WHERE id=?",
                ("completed" if ok else "failed", ok, json.dumps(result), error, time.time(), job),
            )

    def job(self, job: int) -> dict | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job,)).fetchone()
        return dict(row) if row else None

    def jobs(self, scenario: str | None = None) -> list[dict]:
        q = "SELECT * FROM jobs" + (" WHERE scenario=?" if scenario else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(q, (scenario,) if scenario else ())]

    def fail_orphaned_jobs(self) -> int:
        """Jobs whose process is gone are failed, never left running forever."""
        n = 0
        for job in self.db.execute("SELECT id, owner FROM jobs WHERE state='running'").fetchall():
            if not _owner_alive(job["owner"]):
                self.finish_job(job["id"], False, error="interrupted: its process ended")
                n += 1
        return n

    # -- indication subscriptions (the WBEM server's) ------------------------------------
    def add_subscription(self, kind: str, name: str, data: dict) -> None:
        """Keep one subscription object (``kind`` is its CIM class); replaces one of the
        same kind and name."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO subscriptions (kind, name, data, created)"
                " VALUES (?,?,?,?)",
                (kind, name, json.dumps(data), time.time()),
            )

    def delete_subscription(self, kind: str, name: str) -> bool:
        with self.transaction() as db:
            cur = db.execute("DELETE FROM subscriptions WHERE kind=? AND name=?", (kind, name))
            return cur.rowcount > 0

    def subscriptions(self, kind: str | None = None) -> list[dict]:
        """{kind, name, data, created} in the order they were created."""
        q = "SELECT * FROM subscriptions" + (" WHERE kind=?" if kind else "")
        rows = self.db.execute(q + " ORDER BY created, rowid", (kind,) if kind else ())
        return [
            {"kind": r["kind"], "name": r["name"], "data": json.loads(r["data"]),
             "created": r["created"]}
            for r in rows
        ]

    # -- change tracking (migration 3's triggers keep it) --------------------------------
    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same committed state."""
        with self._lock:
            if self.db.in_transaction:
                yield self.db
                return
            self.db.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.execute("COMMIT")

    def change_count(self) -> int:
        """A counter that every committed change of scenarios, VMs or jobs moves on (by any
        connection or process); cheap enough to read several times a second."""
        return int(self.db.execute("SELECT n FROM change_counter").fetchone()[0])

    def changes_since(self, mark: int) -> tuple[int, list[tuple[str, str]]]:
        """(the counter now, [(kind, key)]) for what changed after the counter was ``mark``:
        ("scenario", name) for a scenario row, ("vms", scenario) for any of its VM rows,
        ("job", id) for a job; inserted, updated or deleted alike."""
        with self.reading() as db:
            now = self.change_count()
            if now == mark:
                return now, []
            rows = db.execute("SELECT kind, key FROM changes WHERE seq > ? ORDER BY seq", (mark,))
            return now, [(r[0], r[1]) for r in rows]


# what a live claim must be doing for a stored in-progress state to be true
_DOING = {DEPLOYING: ("deploy",), RELEASING: ("release",)}


def _in_progress_by_live_claim(r: sqlite3.Row) -> bool:
    """A deploying/releasing row is so only while a live claim does that; a claim taken over
    from a dead one (to release what it left) leaves the row interrupted until it acts."""
    what = r["lock_what"]
    if what is not None and what not in _DOING.get(r["state"], ()):
        return False
    return owner_alive(r["lock_owner"])


def _held_by_other(row: sqlite3.Row, token: str) -> bool:
    """The row's claim is held by another call that is still alive."""
    held = row["lock_token"] or (row["lock_owner"] and "legacy")  # a lock of schema < 5
    return bool(held) and row["lock_token"] != token and owner_alive(row["lock_owner"])


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a migration; a trigger's body (with its own ';') stays whole."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer.strip()
            buffer = ""
    if buffer.strip(" \t\n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]}")


def _scenario_row(r: sqlite3.Row) -> ScenarioRow:
    state = r["state"]
    if state in IN_PROGRESS and not _in_progress_by_live_claim(r):
        state = INTERRUPTED
    return ScenarioRow(
        name=r["name"],
        state=state,
        spec=r["spec"],
        plan=json.loads(r["plan"]) if r["plan"] else None,
        algorithm=r["algorithm"],
        basedir=r["basedir"],
        mac_base=r["mac_base"],
        mgmt_offset=r["mgmt_offset"],
        error=r["error"],
        lock_owner=r["lock_owner"],
        updated=r["updated"],
        restrictions=r["restrictions"],
        stored_state=r["state"],
    )
