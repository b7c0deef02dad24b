"""Extrinsic methods of root/ediv: DefineSystem, DestroySystem, PlanScenario, ExecuteSequence
(EDIV_VirtualSystemManagementService), RequestStateChange (EDIV_Scenario, EDIV_VirtualSystem)
and GetError / GetErrors (EDIV_ConcreteJob).

Return values follow DSP1042/DSP1052: 0 done, 4096 job started (Job OUT names the
EDIV_ConcreteJob), 5 invalid parameter (a RequestedState outside the method's ValueMap),
4097 invalid state transition, 4098 TimeoutPeriod not supported (0 or NULL asks for nothing).
A method invoked on an instance path that names no instance is CIM_ERR_NOT_FOUND.
Bad input is a CIM_ERR_INVALID_PARAMETER error with a message saying what is wrong (VNUML
``file:line: message`` diagnostics for a scenario with errors).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pywbem
from pywbem import (
    CIM_ERR_FAILED,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_NOT_FOUND,
    CIM_ERR_NOT_SUPPORTED,
    CIMError,
    CIMInstance,
    CIMInstanceName,
    Uint32,
)

from ediv import state as st
from ediv.errors import EdivError, InputError, NotFound, WrongState, no_scenario
from ediv.partition import registry as algorithms
from ediv.provider import archive
from ediv.provider import cim_paths as P
from ediv.provider.embedded import EmbeddedParser, text_property
from ediv.provider.engine import Engine, check_name, to_cim
from ediv.provider.jobs import JobRunner, cim_errors
from ediv.provider.operations import Dispatcher, MethodProvider
from ediv.provider.providers import same_path
from ediv.provider.schema import EDIV_NAMESPACE
from ediv.provider.vm_settings import ovf_environment, vm_from_settings
from ediv.restrictions import parse_restrictions
from ediv.scenario import load_string
from ediv.scenario.model import Scenario
from ediv.service import edit, files

OK, NOT_SUPPORTED, INVALID_STATE, INVALID_PARAMETER = 0, 1, 5, 5
JOB_STARTED, INVALID_TRANSITION, NO_TIMEOUT = 4096, 4097, 4098
_SEQ = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")



def _bad(message: str) -> CIMError:
    return CIMError(CIM_ERR_INVALID_PARAMETER, message)


def _cim(exc: BaseException, what: str | None = None) -> BaseException:
    """An engine error as the CIMError the client sees (status from ediv.errors.CODES);
    ``what`` prefixes the diagnostics of an InputError. Other exceptions pass unchanged."""
    if isinstance(exc, InputError) and what:
        return diagnostics_error(what, exc)
    if isinstance(exc, EdivError):
        return to_cim(exc)
    return exc


def diagnostics_error(what: str, exc: InputError) -> CIMError:
    lines = "\n".join(str(d) for d in exc.diagnostics)
    return _bad(f"{what} has errors:\n{lines}")


def _allow(method: str, params: pywbem.NocaseDict, *names: str) -> None:
    allowed = {n.lower() for n in names}
    for name in params:
        if name.lower() not in allowed:
            raise _bad(f"{method} has no parameter {name}")


def _ref(params: pywbem.NocaseDict, name: str, classname: str) -> CIMInstanceName:
    value = params.get(name)
    if not isinstance(value, CIMInstanceName):
        raise _bad(f"{name} must be a reference to {classname}")
    return value


def _requested_state(params: pywbem.NocaseDict) -> int:
    value = params.get("RequestedState")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad("RequestedState is required (an integer)") from None


def _timeout_required(params: pywbem.NocaseDict) -> bool:
    """DSP1052: a TimeoutPeriod of NULL or 0 means no time requirement."""
    value = params.get("TimeoutPeriod")
    if value is None:
        return False
    if isinstance(value, str):  # sent without PARAMTYPE
        try:
            value = pywbem.CIMDateTime(value)
        except ValueError:
            raise _bad(f"TimeoutPeriod {value!r} is not a CIM datetime interval") from None
    if isinstance(value, pywbem.CIMDateTime) and value.is_interval:
        return value.timedelta.total_seconds() != 0
    return True


def valuemap(nss, classname: str, method: str, param: str) -> list[str]:
    cls = nss.get_class(classname)
    qual = cls.methods[method].parameters[param].qualifiers.get("ValueMap") if cls else None
    return list(qual.value) if qual is not None else []


def in_valuemap(entries: list[str], value: int) -> bool:
    """True when ``value`` is one of the ValueMap's values or ranges ('..' alone is the
    reserved rest, which is not a value)."""
    for entry in entries:
        low, sep, high = entry.strip().partition("..")
        if sep and low.isdigit() and high.isdigit():
            if int(low) <= value <= int(high):
                return True
        elif not sep and low.isdigit() and int(low) == value:
            return True
    return False


class EngineMethods:
    """The method providers, sharing the engine, the job runner and the embedded parser."""

    def __init__(self, engine: Engine, jobs: JobRunner, dispatcher: Dispatcher):
        self.engine = engine
        self.jobs = jobs
        nss = dispatcher.schema.namespace(EDIV_NAMESPACE)
        self.nss = nss
        self.parser = EmbeddedParser(nss)
        self.service = P.service_path(dispatcher.host)
        self.requested_states = {
            cls: valuemap(nss, cls, "RequestStateChange", "RequestedState")
            for cls in ("EDIV_Scenario", "EDIV_VirtualSystem")}

    def register(self, dispatcher: Dispatcher) -> None:
        # DSP1042 resource methods; imported here because that module imports this one
        from ediv.provider.resource_methods import ResourceMethods

        service = _Service(self, ResourceMethods(self).handlers(), self.service)
        for provider in (service, _StateChange("EDIV_Scenario", self.scenario_state),
                         _StateChange("EDIV_VirtualSystem", self.vm_state),
                         _JobMethods(self)):
            dispatcher.register_methods(EDIV_NAMESPACE, provider)

    # ------------------------------------------------------------ helpers
    def scenario_name(self, ref: CIMInstanceName) -> str:
        """The scenario an EDIV_Scenario / EDIV_ScenarioSettingData reference names."""
        cls = ref.classname
        if self.nss.is_subclass(cls, "EDIV_Scenario"):
            name = str(ref.keybindings.get("Name", ""))
        elif self.nss.is_subclass(cls, "EDIV_ScenarioSettingData"):
            name = str(ref.keybindings.get("InstanceID", "")).removeprefix("ediv:scenario:")
        else:
            raise _bad(f"{ref.classname} does not name a scenario "
                       "(use EDIV_Scenario or EDIV_ScenarioSettingData)")
        if self.engine.store().scenario(name) is None:
            raise to_cim(no_scenario(name))
        return name

    def load_definition(self, inst: CIMInstance, basedir: str
                        ) -> tuple[Scenario, str, str | None, str | None]:
        spec = text_property(inst, "ScenarioDefinition")
        if not spec:
            raise _bad("SystemSettings needs ScenarioDefinition (the VNUML XML text)")
        algorithm = text_property(inst, "PartitionAlgorithm")
        if algorithm:
            try:
                algorithms.get(algorithm)
            except EdivError as exc:
                raise _bad(f"PartitionAlgorithm: {exc}") from None
        restrictions = text_property(inst, "Restrictions")
        if restrictions:
            try:
                parse_restrictions(restrictions.encode("utf-8"), "Restrictions")
            except InputError as exc:
                raise diagnostics_error("Restrictions", exc) from None
        try:
            scenario, _warnings = load_string(spec, "ScenarioDefinition", basedir,
                                              deployable=True)
        except InputError as exc:
            raise diagnostics_error("ScenarioDefinition", exc) from None
        return scenario, spec, algorithm, restrictions

    def staging(self) -> Path:
        return self.engine.data_dir / "staging" / uuid.uuid4().hex

    # ------------------------------------------------------------ DefineSystem
    def define_system(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("DefineSystem", params, "SystemSettings", "ResourceSettings",
               "ReferenceConfiguration")
        if params.get("SystemSettings") is None:
            raise _bad("SystemSettings is required (an embedded EDIV_ScenarioSettingData or "
                       "EDIV_VirtualSystemSettingData)")
        settings = self.parser.parse("SystemSettings", params["SystemSettings"],
                                     "CIM_VirtualSystemSettingData")
        if self.nss.is_subclass(settings.classname, "EDIV_ScenarioSettingData"):
            if params.get("ResourceSettings"):
                raise _bad("ResourceSettings go with an EDIV_VirtualSystemSettingData, "
                           "not with a scenario")
            name = self.define_scenario(settings)
            return Uint32(OK), [("ResultingSystem", P.scenario_path(name))]
        raw = params.get("ResourceSettings") or []
        rasds = [self.parser.parse(f"ResourceSettings[{i}]", r,
                                   "CIM_ResourceAllocationSettingData")
                 for i, r in enumerate(raw if isinstance(raw, list) else [raw])]
        ref = params.get("ReferenceConfiguration")
        if not isinstance(ref, CIMInstanceName):
            raise _bad("to add a VM, ReferenceConfiguration must name its scenario "
                       "(EDIV_ScenarioSettingData or EDIV_Scenario)")
        scenario, vm = self.define_vm(self.scenario_name(ref), settings, rasds)
        return Uint32(OK), [("ResultingSystem", P.vm_path(scenario, vm))]

    def load_staged(self, settings: CIMInstance, staging: Path):
        """Unpack the settings' Archive (if any) into ``staging`` and load the definition
        with it as the scenario's directory (the caller owns and removes ``staging``)."""
        encoded = text_property(settings, "Archive")
        if encoded:
            archive.extract(encoded, staging)
        else:
            staging.mkdir(parents=True)
        return self.load_definition(settings, str(staging))

    def define_scenario(self, settings: CIMInstance) -> str:
        staging = self.staging()
        try:
            _scenario, spec, algorithm, restrictions = self.load_staged(settings, staging)
            check_name(_scenario.name)

            def install(name: str) -> str:
                """The Archive's files, checked in staging, moved to the scenario's dir."""
                return files.install_tree(staging, self.engine.scenario_dir(name))

            with self.engine.service(hosts=False) as svc:
                return svc.define(spec, basedir=str(staging), source_name="ScenarioDefinition",
                                  algorithm=algorithm, restrictions=restrictions,
                                  install=install)
        except EdivError as exc:
            raise _cim(exc, "ScenarioDefinition") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def define_vm(self, name: str, vssd: CIMInstance, rasds: list[CIMInstance]
                  ) -> tuple[str, str]:
        """The VM from its CIM settings, added by the engine (ediv.service.edit.add_vm)."""
        vm = vm_from_settings(vssd, rasds)
        try:
            added = edit.add_vm(self.engine.store(), name, vm, self.engine.claim,
                                default_basedir=str(self.engine.scenario_dir(name)),
                                environment=ovf_environment(vssd))
        except EdivError as exc:
            raise _cim(exc) from None
        return name, added

    # ------------------------------------------------------------ DestroySystem
    def destroy_system(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("DestroySystem", params, "AffectedSystem")
        ref = _ref(params, "AffectedSystem", "EDIV_Scenario or EDIV_VirtualSystem")
        if self.nss.is_subclass(ref.classname, "EDIV_VirtualSystem"):
            return self._destroy_vm(ref)
        name = self.scenario_name(ref)
        claim = self.engine.take(name, "destroy")
        try:
            row = self.engine.store().scenario(name)
            with self.engine.service(hosts=False) as svc:
                if svc.transition(name, "destroyed") == "now":
                    svc.destroy(name, claim=claim)
                    self._remove_files(name, row)
                    self.engine.give(claim)
                    return Uint32(OK), []

            def work(job: int, jstore: st.StateStore) -> Any:
                with self.engine.service(jstore, scenario=name,
                                         progress=self._progress(jstore, job)) as svc:
                    left = svc.destroy(name, claim=claim)
                if left:
                    raise EdivError(f"release could not reach {', '.join(left)}; the scenario "
                                    "stays (failed) until they are back")
                self._remove_files(name, row)
                return {"destroyed": name}

            job = self.jobs.start("release", name, work, claim=claim)
        except BaseException as exc:
            self.engine.give(claim)
            raise _cim(exc) from None
        return Uint32(JOB_STARTED), [("Job", P.job_path(job))]

    def _remove_files(self, name: str, row: st.ScenarioRow) -> None:
        files.remove_tree(self.engine.scenario_dir(name), row.basedir)

    def _destroy_vm(self, ref: CIMInstanceName) -> tuple[Any, list]:
        key = P.split_key(ref.keybindings.get("Name", ""))
        if key is None:
            raise CIMError(CIM_ERR_NOT_FOUND, f"no virtual system {ref}")
        name, vm = key
        try:
            edit.remove_vm(self.engine.store(), name, vm, self.engine.claim)
        except EdivError as exc:
            raise _cim(exc) from None
        return Uint32(OK), []

    # ------------------------------------------------------------ state changes
    def scenario_state(self, target: CIMInstanceName, params: pywbem.NocaseDict
                       ) -> tuple[Any, list]:
        _allow("RequestStateChange", params, "RequestedState", "TimeoutPeriod")
        if not isinstance(target, CIMInstanceName):
            raise _bad("RequestStateChange is invoked on an EDIV_Scenario instance")
        name = self.scenario_name(target)
        requested = _requested_state(params)
        if not in_valuemap(self.requested_states["EDIV_Scenario"], requested):
            return Uint32(INVALID_PARAMETER), []
        if _timeout_required(params):
            return Uint32(NO_TIMEOUT), []
        if requested not in (2, 3):
            return Uint32(INVALID_TRANSITION), []
        target_state = "deployed" if requested == 2 else "defined"
        claim = self.engine.take(name, "deploy" if requested == 2 else "release")
        try:
            with self.engine.service(hosts=False) as svc:
                try:
                    if svc.transition(name, target_state) == "noop":
                        self.engine.give(claim)
                        return Uint32(OK), []
                except WrongState:
                    self.engine.give(claim)
                    return Uint32(INVALID_TRANSITION), []
            if requested == 2:
                job = self.jobs.start("deploy", name, lambda j, s: self._deploy(j, s, name, claim),
                                      claim=claim)
            else:
                job = self.jobs.start("release", name, lambda j, s: self._release_checked(
                    j, s, name, claim), claim=claim)
        except BaseException as exc:
            self.engine.give(claim)
            raise _cim(exc) from None
        return Uint32(JOB_STARTED), [("Job", P.job_path(job))]

    def vm_state(self, target: CIMInstanceName, params: pywbem.NocaseDict) -> tuple[Any, list]:
        """2 starts (or resumes a paused VM), 3 stops (killed after stop_timeout), 4 shuts
        down (asked only), 9 pauses, 10 reboots, 11 resets one VM, as a job; 0 at once when
        the VM is already in the requested state, 5 when the scenario is not deployed or a
        stopped VM is asked to reboot or pause."""
        _allow("RequestStateChange", params, "RequestedState", "TimeoutPeriod")
        if not isinstance(target, CIMInstanceName):
            raise _bad("RequestStateChange is invoked on an EDIV_VirtualSystem instance")
        ids = P.split_key(target.keybindings.get("Name", ""))
        if ids is None or self.engine.store().scenario(ids[0]) is None:
            raise CIMError(CIM_ERR_NOT_FOUND,
                           f"no virtual system {target.keybindings.get('Name')!r}")
        name, vm = ids
        requested = _requested_state(params)
        if not in_valuemap(self.requested_states["EDIV_VirtualSystem"], requested):
            return Uint32(INVALID_PARAMETER), []
        action = P.VM_REQUESTS.get(requested)
        with self.engine.service(hosts=False) as svc:
            try:  # NOT_FOUND first; a state (or "start" for an unmapped request) checked once
                verdict: str | None = svc.vm_transition(name, vm, action or "start")
            except NotFound:
                raise CIMError(CIM_ERR_NOT_FOUND,
                               f"no virtual system {target.keybindings.get('Name')!r}") from None
            except WrongState:
                verdict = None
        if _timeout_required(params):
            return Uint32(NO_TIMEOUT), []
        if action is None:
            return Uint32(INVALID_TRANSITION), []
        if verdict is None:
            return Uint32(INVALID_STATE), []
        if verdict == "noop":
            return Uint32(OK), []
        action = verdict  # 2 of a paused VM resumes it

        claim = self.engine.take(name, f"{action} {vm}")

        def work(job: int, jstore: st.StateStore) -> Any:
            with self.engine.service(jstore, scenario=name,
                                     progress=self._progress(jstore, job)) as svc:
                return svc.vm_action(name, vm, action, claim=claim)

        try:
            job = self.jobs.start(f"vm-{action}", name, work, claim=claim,
                                  element=P.vm_key(name, vm))
        except BaseException:
            self.engine.give(claim)
            raise
        return Uint32(JOB_STARTED), [("Job", P.job_path(job))]

    def _progress(self, store: st.StateStore, job: int):
        def emit(event: dict) -> None:
            parts = [f"{k} {event[k]}" for k in ("host", "vm", "net", "scenario") if event.get(k)]
            parts.append(str(event.get("state") or event.get("message") or event.get("event")))
            if event.get("error"):
                parts.append(f"({event['error']})")
            store.job_progress(job, line=" ".join(parts))
        return emit

    def _deploy(self, job: int, store: st.StateStore, name: str, claim: st.Claim) -> Any:
        """The deploy job: the stored definition, deployed by the service (no file is
        written: the service takes the stored text)."""
        with self.engine.service(store, progress=self._progress(store, job)) as svc:
            plan = svc.deploy(name=name, job=job, claim=claim)
        return plan.to_json()

    def _release_checked(self, job: int, store: st.StateStore, name: str, claim: st.Claim
                         ) -> Any:
        with self.engine.service(store, scenario=name,
                                 progress=self._progress(store, job)) as svc:
            left = svc.release(name, keep_definition=True, claim=claim)
        if left:
            raise EdivError(f"release could not reach {', '.join(left)}; run it again (or "
                            "'ediv cleanup') when they are back")
        return {"released": name}

    # ------------------------------------------------------------ extensions
    def execute_sequence(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("ExecuteSequence", params, "AffectedSystem", "Sequence", "VirtualSystems")
        name = self.scenario_name(_ref(params, "AffectedSystem", "EDIV_Scenario"))
        seq = params.get("Sequence")
        if not isinstance(seq, str) or not _SEQ.match(seq):
            raise _bad("Sequence must be the name of a command sequence (letters, digits, "
                       "'_', '.', ':', '+', '-')")
        vms = params.get("VirtualSystems") or None
        if vms is not None and not all(isinstance(v, str) for v in vms):
            raise _bad("VirtualSystems must be an array of VM names")
        claim = self.engine.take(name, "exec")
        try:
            with self.engine.service(hosts=False) as svc:
                try:
                    svc.exec_targets(name, seq, vms)  # checked before the job starts
                except WrongState:
                    self.engine.give(claim)
                    return Uint32(INVALID_STATE), []

            def work(job: int, jstore: st.StateStore) -> Any:
                with self.engine.service(jstore, scenario=name,
                                         progress=self._progress(jstore, job)) as svc:
                    results = [r.to_json() for r in svc.exec(name, seq, vms, claim=claim)]
                failed = [r for r in results if r["exit_code"] != 0]
                if failed:
                    jstore.finish_job(job, False, results, error=(
                        f"{len(failed)} of {len(results)} failed: "
                        + ", ".join(str(r["vm"] or r["host"]) for r in failed)))
                return results

            job = self.jobs.start("exec", name, work, claim=claim)
        except BaseException as exc:
            self.engine.give(claim)
            raise _cim(exc) from None
        return Uint32(JOB_STARTED), [("Job", P.job_path(job))]

    def plan_scenario(self, params: pywbem.NocaseDict) -> tuple[Any, list]:
        _allow("PlanScenario", params, "SystemSettings", "HostLoads")
        if params.get("SystemSettings") is None:
            raise _bad("SystemSettings is required (an embedded EDIV_ScenarioSettingData)")
        settings = self.parser.parse("SystemSettings", params["SystemSettings"],
                                     "EDIV_ScenarioSettingData")
        loads = parse_loads(params.get("HostLoads"))
        staging = self.staging()
        try:
            _scenario, spec, algorithm, restrictions = self.load_staged(settings, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.mkdir(parents=True, exist_ok=True)
        try:
            with self.engine.service() as svc:
                plan = svc.plan(spec, basedir=str(staging), source_name="ScenarioDefinition",
                                algorithm=algorithm, restrictions=restrictions, loads=loads)
        except InputError as exc:
            raise diagnostics_error("the placement", exc) from None
        except EdivError as exc:
            raise CIMError(CIM_ERR_FAILED, f"cannot place the scenario: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Uint32(OK), [("Plan", json.dumps(plan.to_json()))]


def parse_loads(value: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in value or []:
        host, sep, number = str(item).partition("=")
        try:
            load = float(number)
        except ValueError:
            load = -1.0
        if not sep or not host or not 0.0 <= load <= 1.0:
            raise _bad(f"HostLoads entry {item!r} is not HOST=FRACTION (0.0 to 1.0)")
        out[host] = load
    return out


class _Service(MethodProvider):
    classname = "EDIV_VirtualSystemManagementService"

    def __init__(self, m: EngineMethods, more: dict[str, Any], path: CIMInstanceName):
        self.path = path  # the one instance; a call on the class is accepted too
        self.handlers = {  # method name -> handler(params)
            "DefineSystem": m.define_system,
            "DestroySystem": m.destroy_system,
            "PlanScenario": m.plan_scenario,
            "ExecuteSequence": m.execute_sequence,
            **more,
        }
        self._by_lower = {name.lower(): h for name, h in self.handlers.items()}

    def invoke(self, namespace, target, method, params):
        if isinstance(target, CIMInstanceName) and not same_path(target, self.path):
            raise CIMError(CIM_ERR_NOT_FOUND, f"no {self.classname} {target} (the service is "
                           f"{self.path})")
        handler = self._by_lower.get(method.lower())
        if handler is None:
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{method} is not supported by this server "
                           f"(supported: {', '.join(self.handlers)})")
        return handler(params)


class _StateChange(MethodProvider):
    """RequestStateChange, the only method of EDIV_Scenario and EDIV_VirtualSystem."""

    def __init__(self, classname: str, handler: Any):
        self.classname = classname
        self.handler = handler  # handler(target, params)

    def invoke(self, namespace, target, method, params):
        if method.lower() != "requeststatechange":
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{self.classname}.{method} is not supported")
        return self.handler(target, params)


class _JobMethods(MethodProvider):
    classname = "EDIV_ConcreteJob"

    def __init__(self, m: EngineMethods):
        self.m = m

    def invoke(self, namespace, target, method, params):
        number = P.job_id(target) if isinstance(target, CIMInstanceName) else None
        job = self.m.engine.store().job(number) if number is not None else None
        if job is None:
            raise CIMError(CIM_ERR_NOT_FOUND, f"no job {target}")
        name = method.lower()
        if name == "geterror":
            errors = cim_errors(job)
            return Uint32(OK), [("Error", errors[0] if errors else None)]
        if name == "geterrors":
            return Uint32(OK), [("Errors", cim_errors(job))]
        # KillJob, RequestStateChange: a running deploy cannot be interrupted safely
        return Uint32(NOT_SUPPORTED), []
