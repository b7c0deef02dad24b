"""What the indication hub watches: EDIV_Scenario, EDIV_VirtualSystem and EDIV_ConcreteJob
instances from the state store, in groups, read again only where the store says it changed.

Groups: ("scenario", name) the scenario's instance, ("vms", name) the instances of its VMs,
("job", id) a job's instance. The store's change counter and ``changes`` table (migration 3,
kept by triggers in every writer's transaction, whatever process writes) tell which groups
changed after a mark; nothing is read when the counter did not move.
"""

from __future__ import annotations

from pywbem import CIMInstance

from ediv import state as st
from ediv.provider.engine import Engine
from ediv.provider.engine_providers import job_instance, scenario_instance, vm_instance, vm_rows
from ediv.provider.indications import Groups

Group = tuple[str, str]


class StoreWatch:
    """A ChangeSource (ediv.provider.indications) over the engine's state store."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def everything(self) -> tuple[int, Groups]:
        store = self.engine.store()
        with store.reading():
            mark = store.change_count()
            stored: dict[str, list[dict]] = {}
            for v in store.vms():
                stored.setdefault(v["scenario"], []).append(v)
            scenarios: Groups = {}
            vms: Groups = {}
            for row in store.scenarios():
                mine = stored.get(row.name, [])
                scenarios[("scenario", row.name)] = [scenario_instance(self.engine, row, mine)]
                vms[("vms", row.name)] = self._vms(row, mine)
            jobs: Groups = {("job", str(j["id"])): [job_instance(j)] for j in store.jobs()}
        return mark, {**scenarios, **vms, **jobs}

    def since(self, mark: int) -> tuple[int, Groups]:
        store = self.engine.store()
        with store.reading():
            now, changes = store.changes_since(mark)
            names = sorted({key for kind, key in changes if kind in ("scenario", "vms")})
            vms_changed = {key for kind, key in changes if kind == "vms"}
            scenarios: Groups = {}
            vms: Groups = {}
            for name in names:
                self._scenario(store, name, name in vms_changed, scenarios, vms)
            jobs: Groups = {}
            for key in dict.fromkeys(key for kind, key in changes if kind == "job"):
                job = store.job(int(key))
                jobs[("job", key)] = [job_instance(job)] if job else []
        return now, {**scenarios, **vms, **jobs}

    def _scenario(self, store: st.StateStore, name: str, vms_changed: bool,
                  scenarios: Groups, vms: Groups) -> None:
        """One scenario's groups: its instance always; its VMs when their rows changed or
        when they come from its spec (a defined scenario: the spec may have changed)."""
        row = store.scenario(name)
        if row is None:
            scenarios[("scenario", name)] = []
            vms[("vms", name)] = []
            return
        stored = store.vms(name)
        scenarios[("scenario", name)] = [scenario_instance(self.engine, row, stored)]
        if vms_changed or not stored:
            vms[("vms", name)] = self._vms(row, stored)

    def _vms(self, row: st.ScenarioRow, stored: list[dict]) -> list[CIMInstance]:
        return [vm_instance(v) for v in vm_rows(self.engine, row, stored)]
