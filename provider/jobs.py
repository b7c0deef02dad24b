"""Long operations as EDIV_ConcreteJob: a row in the jobs table and a thread doing the work.

The row is the job's whole state (percent, log, result, error), so every process sharing the
store sees it, and a server restart turns jobs it was running into failed ones
(``StateStore.fail_orphaned_jobs``). Failures are offered as CIM_Error instances by
GetError / GetErrors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from pywbem import CIMError, CIMInstance, Uint16, Uint32

from ediv import state as st
from ediv.errors import EdivError, InputError
from ediv.provider.engine import Engine

log = logging.getLogger("ediv.provider")

Work = Callable[[int, st.StateStore], Any]

# the authenticated user of the request being served (set by the HTTP layer around a call):
# recorded as the Owner of the jobs that request starts
requester: ContextVar[str | None] = ContextVar("ediv_requester", default=None)


def error_text(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return "\n".join(str(d) for d in exc.diagnostics)
    if isinstance(exc, CIMError):
        return exc.status_description or str(exc)
    if isinstance(exc, EdivError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


class JobRunner:
    """Long CIM method calls as EDIV_ConcreteJob rows, each worked in a thread of its own
    with its own store connection; a job whose process died reads as failed."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, scenario: str | None, work: Work,
              claim: st.Claim | None = None, element: str | None = None) -> int:
        """Record a running job and run ``work(job, store)`` in a thread. The work may finish
        the job row itself (the service does); otherwise its return value is the result.
        ``claim``: the scenario's claim the request took, given back with the job's end
        (one transaction: a client that sees the job finished finds the scenario free).
        ``element``: the VM key (``scenario/vm``) when the job affects one VM only."""
        job = self.engine.store().start_job(kind, scenario, requested_by=requester.get(),
                                            element=element)
        thread = threading.Thread(target=self._run, args=(job, work, claim),
                                  name=f"ediv-job-{job}", daemon=True)
        with self._lock:
            self._threads[job] = thread
        thread.start()
        return job

    def _run(self, job: int, work: Work, claim: st.Claim | None) -> None:
        store = self.engine.new_store()
        if claim is not None:
            store.give_back_on_finish(job, claim)
        try:
            try:
                result = work(job, store)
            except BaseException as exc:  # the job records every failure
                if not isinstance(exc, (EdivError, InputError, CIMError)):
                    log.exception("job %s failed", job)
                if _running(store, job):
                    store.finish_job(job, False, error=error_text(exc))
            else:
                if _running(store, job):
                    store.finish_job(job, True, result)
        finally:
            if claim is not None:
                store.unclaim(claim)
            store.close()
            with self._lock:
                self._threads.pop(job, None)

    def wait(self, job: int, timeout: float | None = None) -> bool:
        """Wait for a job of this server to end (True when it did, or was not running here)."""
        with self._lock:
            thread = self._threads.get(job)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def wait_all(self, timeout: float = 60.0) -> None:
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)


def _running(store: st.StateStore, job: int) -> bool:
    row = store.job(job)
    return row is not None and row["state"] == "running"


def cim_errors(job: dict) -> list[CIMInstance]:
    """The CIM_Error instances of a failed job (none for a running or successful one)."""
    if job["state"] != "failed" or not job["error"]:
        return []
    err = CIMInstance("CIM_Error")
    err["ErrorType"] = Uint16(1)  # Other
    err["OtherErrorType"] = f"ediv {job['kind']} failed"
    err["OwningEntity"] = "ediv"
    err["MessageID"] = f"EDIV-{job['kind'].upper()}-FAILED"
    err["Message"] = job["error"]
    err["MessageArguments"] = [job["scenario"] or ""]
    err["PerceivedSeverity"] = Uint16(5)  # Major
    err["ProbableCause"] = Uint16(1)  # Other
    err["ProbableCauseDescription"] = job["error"].splitlines()[0][:200]
    err["ErrorSource"] = f"EDIV_ConcreteJob.InstanceID=\"ediv:job:{job['id']}\""
    err["ErrorSourceFormat"] = Uint16(2)  # CIMObjectPath
    err["CIMStatusCode"] = Uint32(1)  # CIM_ERR_FAILED
    err["CIMStatusCodeDescription"] = "CIM_ERR_FAILED"
    return [err]
