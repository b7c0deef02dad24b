"""The ``--server URL`` back end of the cluster commands (:class:`WbemBackend`, see
``ediv.client.backend``): each request is a CIM call to an ediv WBEM server, through pywbem.

Its results have the shapes of direct mode, so the commands print the same; long
operations are followed by polling the EDIV_ConcreteJob (JobState, PercentComplete, and the
job's log in Description). Options: ``--server URL --user NAME --password-file FILE
--ca-cert PEM``, or ``--profile FILE`` (TOML with server, user, password_file, ca_cert).
The password may also come from EDIV_PASSWORD, else it is asked for on a terminal.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ediv import cim_names as N
from ediv.errors import AlreadyExists, EdivError, InputError, NotFound, WrongState, no_scenario

if TYPE_CHECKING:
    from ediv.client.backend import Deployed, DeployRequest

NS = N.NAMESPACE
POLL_SECONDS = 0.5
scenario_path = N.scenario_path


@dataclass
class Target:
    url: str
    user: str | None
    password: str | None
    ca_cert: str | None

    def connect(self):
        import pywbem

        creds = (self.user, self.password or "") if self.user else None
        return pywbem.WBEMConnection(self.url, creds, default_namespace=NS,
                                     ca_certs=self.ca_cert, timeout=120)


def target_of(server: str | None, user: str | None, password_file: str | None,
            ca_cert: str | None, profile: str | None) -> Target | None:
    data: dict[str, Any] = {}
    if profile:
        try:
            data = tomllib.loads(Path(profile).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EdivError(f"{profile}: cannot read the profile: {exc}") from None
        base = Path(profile).resolve().parent
        for key in ("password_file", "ca_cert"):
            if data.get(key) and not Path(data[key]).expanduser().is_absolute():
                data[key] = str(base / Path(data[key]).expanduser())
    url = server or data.get("server")
    if not url:
        return None
    user = user or data.get("user")
    password_file = password_file or data.get("password_file")
    password = os.environ.get("EDIV_PASSWORD")
    if password_file:
        try:
            password = Path(password_file).expanduser().read_text(encoding="utf-8") \
                .splitlines()[0]
        except (OSError, IndexError) as exc:
            raise EdivError(f"{password_file}: cannot read the password: {exc}") from None
    elif password is None and user and sys.stdin.isatty():
        password = click.prompt(f"Password for {user}", hide_input=True, err=True)
    return Target(url, user, password, ca_cert or data.get("ca_cert"))


SERVER_OPTIONS = (
    click.option("--server", metavar="URL", envvar="EDIV_SERVER",
                 help="Run through this ediv WBEM server (https://HOST:5989)."),
    click.option("--user", metavar="NAME", help="WBEM user (with --server)."),
    click.option("--password-file", type=click.Path(dir_okay=False),
                 help="File whose first line is the password (with --server)."),
    click.option("--ca-cert", type=click.Path(dir_okay=False, exists=True),
                 help="CA (or the server's own) certificate, PEM (with --server)."),
    click.option("--profile", type=click.Path(dir_okay=False, exists=True),
                 help="TOML file with server, user, password_file, ca_cert."),
)


@contextmanager
def wbem_errors(target: Target) -> Iterator[None]:
    """pywbem's errors as ediv errors: a CIM status the engine's table knows becomes that
    error class (so both modes exit alike), anything else an EdivError with its message."""
    import pywbem

    try:
        yield
    except pywbem.CIMError as exc:
        text = exc.status_description or exc.status_code_name
        if exc.status_code == pywbem.CIM_ERR_NOT_FOUND:
            raise NotFound("object", "", message=text) from None
        if exc.status_code == pywbem.CIM_ERR_ALREADY_EXISTS:
            raise AlreadyExists("object", "", message=text) from None
        raise EdivError(text) from None
    except pywbem.AuthError:
        raise EdivError(f"{target.url}: authentication failed for user {target.user!r}") \
            from None
    except pywbem.ConnectionError as exc:
        raise EdivError(f"{target.url}: cannot connect: {exc}") from None
    except pywbem.Error as exc:
        raise EdivError(f"{target.url}: {exc}") from None


def wbem_options(fn: Callable) -> Callable:
    """Adds the WBEM options to a command that has a server side of its own (``ediv ovf
    import``): it is called with ``target=`` (a Target, or None without a server)."""

    @functools.wraps(fn)
    def wrapper(*args, server=None, user=None, password_file=None, ca_cert=None,
                profile=None, **kwargs):
        return fn(*args, target=target_of(server, user, password_file, ca_cert, profile),
                  **kwargs)

    for option in reversed(SERVER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def run_wbem(target: Target, handler: Callable, **kwargs) -> Any:
    """``handler(conn, **kwargs)`` on a connection to ``target``, with pywbem's errors as
    ediv errors."""
    with wbem_errors(target):
        return handler(target.connect(), **kwargs)


# ---------------------------------------------------------------- paths and helpers

def service_path(conn):
    paths = conn.EnumerateInstanceNames(N.MANAGEMENT_SERVICE)
    if not paths:
        raise EdivError("the server has no EDIV_VirtualSystemManagementService")
    return paths[0]


def get_scenario(conn, name: str):
    import pywbem

    try:
        return conn.GetInstance(scenario_path(name))
    except pywbem.CIMError as exc:
        if exc.status_code == pywbem.CIM_ERR_NOT_FOUND:
            raise no_scenario(name) from None
        raise


# the EDIV_VirtualSystem properties the status and locate outputs read
VM_PROPERTIES = ["ScenarioName", "ElementName", "HostName", "StatusDescriptions",
                 "VirtualSystemType"]


def state_of(inst) -> str:
    descriptions = inst.get("StatusDescriptions") or []
    return descriptions[0] if descriptions else "unknown"


def follow(conn, job, title: str, quiet: bool = False) -> Any:
    """Poll a job until it ends; print its new log lines (stderr) unless quiet."""
    start = time.monotonic()
    seen = 0
    while True:
        inst = conn.GetInstance(job)
        log = (inst.get("Description") or "").splitlines()
        if not quiet:
            # the job shows the tail of its log: find where we stopped
            new = log[seen:] if len(log) >= seen else log
            for line in new:
                click.echo(f"[{time.monotonic() - start:6.1f}s] {title}: {line} "
                           f"({inst.get('PercentComplete') or 0}%)", err=True)
        seen = len(log)
        if inst.get("JobState") != N.JOB_RUNNING:
            return inst
        time.sleep(POLL_SECONDS)


def finished(conn, rv: int, out: Any, title: str, quiet: bool):
    if rv == N.JOB_STARTED:
        job = follow(conn, out["Job"], title, quiet)
        result = json.loads(job.get("ResultData")) if job.get("ResultData") else None
        return job.get("JobState") == N.JOB_COMPLETED, result, job.get("ErrorDescription")
    if rv == N.OK:
        return True, None, None
    reason = N.RETURN_REASONS.get(int(rv), "failed")
    return False, None, f"{title}: the server answered {rv} ({reason})"


def scenario_files(scenario_path: Path) -> bytes | None:
    """tar.gz of the files a scenario refers to (filetree sources, exec files), relative to
    its directory; None when it refers to none."""
    from ediv.scenario import load_scenario

    scenario, _ = load_scenario(str(scenario_path), deployable=True)
    base = scenario_path.resolve().parent
    wanted: set[str] = set()
    defaults = scenario.global_.vm_defaults
    for vm in scenario.vms:
        for ft in [*vm.filetrees, *(defaults.filetrees if defaults else [])]:
            wanted.add(ft.source)
        for ex in vm.execs:
            if ex.type == "file":
                wanted.add(ex.command.split()[0] if ex.command.split() else ex.command)
    members = []
    for rel in sorted(wanted):
        path = (base / rel).resolve()
        if Path(rel).is_absolute() or base not in path.parents or not path.exists():
            continue  # absolute or outside: the server's hosts must have it themselves
        members.append((path, str(path.relative_to(base))))
    if not members:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, arc in members:
            tar.add(str(path), arcname=arc, filter=_plain_member)
    return buf.getvalue()


def _plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if not (info.isfile() or info.isdir()):
        return None  # the server refuses links and devices
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------- the back end

class WbemBackend:
    """The cluster commands as CIM calls to an ediv WBEM server (``--server``): long
    operations start a job that is followed (its log on stderr unless quiet). Results have
    the shapes of direct mode. Used as a context manager: pywbem's errors become ediv
    errors (:func:`wbem_errors`)."""

    live_hosts = False  # hosts() gives the server's last probe

    def __init__(self, target: Target, cluster_path: str | None = None):
        self.target = target
        self.cluster_path = cluster_path
        self.conn = target.connect()
        self._errors = wbem_errors(target)

    def __enter__(self) -> WbemBackend:
        self._errors.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        return self._errors.__exit__(*exc)

    # -- the commands -------------------------------------------------------------------
    def deploy(self, req: DeployRequest) -> Deployed:
        import pywbem

        from ediv.client.backend import Deployed

        conn = self.conn
        if self.cluster_path:
            raise EdivError("-c/--cluster does not apply with --server: the server's cluster "
                            "is used")
        if req.loads:
            raise EdivError("--load is not available with --server (the server measures "
                            "loads)")
        if req.allow_files:
            raise EdivError("--allow-files does not apply with --server: the server's admin "
                            "lists allowed directories (file_dirs in its config)")
        path = Path(req.scenario)
        spec = path.read_text(encoding="utf-8")
        try:
            archive = scenario_files(path)
        except InputError:
            archive = None  # let the server report the errors, with their lines
        props: dict[str, Any] = {"ScenarioDefinition": spec}
        if req.algorithm:
            props["PartitionAlgorithm"] = req.algorithm
        if req.restrictions_path:
            props["Restrictions"] = Path(req.restrictions_path).read_text(encoding="utf-8")
        if archive:
            props["Archive"] = base64.b64encode(archive).decode()
        settings = pywbem.CIMInstance(N.SCENARIO_SETTINGS, properties=props)
        service = service_path(conn)
        try:
            _rv, out = conn.InvokeMethod("DefineSystem", service,
                                         [("SystemSettings", settings)])
        except pywbem.CIMError as exc:
            if exc.status_code != pywbem.CIM_ERR_ALREADY_EXISTS:
                raise
            name = _name_of(spec)
            if name is None or state_of(get_scenario(conn, name)) != "defined":
                raise
            # defined earlier (by WBEM): deploy this file's version instead
            conn.InvokeMethod("DestroySystem", service,
                              [("AffectedSystem", scenario_path(name))])
            _rv, out = conn.InvokeMethod("DefineSystem", service,
                                         [("SystemSettings", settings)])
        target = out["ResultingSystem"]
        name = target.keybindings["Name"]
        rv, out = conn.InvokeMethod("RequestStateChange", target,
                                    [("RequestedState", pywbem.Uint16(N.SCENARIO_DEPLOY))])
        ok, plan, error = finished(conn, rv, out, f"deploying {path.name}", req.quiet)
        if not ok:
            raise EdivError(error or "deploy failed")
        status = self.status(name)[0]
        hosts = len([h for h, v in (plan or {}).get("hosts", {}).items() if v["vms"]])
        return Deployed(name, len(status["vms"]), hosts, len(status["segments"]), status)

    def exec(self, name: str, seq: str, vms: list[str] | None) -> list[dict]:
        """ExecuteSequence; its job's ResultData is the per-VM list of direct mode."""
        conn = self.conn
        get_scenario(conn, name)
        params: list[tuple[str, Any]] = [("AffectedSystem", scenario_path(name)),
                                         ("Sequence", seq)]
        if vms:
            params.append(("VirtualSystems", list(vms)))
        rv, out = conn.InvokeMethod("ExecuteSequence", service_path(conn), params)
        if rv == N.INVALID_STATE:
            state = state_of(get_scenario(conn, name))
            raise WrongState(f"scenario {name!r} is {state}, not deployed", name=name,
                             state=state)
        _ok, results, error = finished(conn, rv, out, f"exec {seq}", True)
        if results is None:
            raise EdivError(error or "exec failed")
        return results

    def release(self, name: str, purge: bool) -> str | None:
        if purge:
            raise EdivError("--purge is not available with --server")
        conn = self.conn
        get_scenario(conn, name)
        rv, out = conn.InvokeMethod("DestroySystem", service_path(conn),
                                    [("AffectedSystem", scenario_path(name))])
        ok, _result, error = finished(conn, rv, out, f"releasing {name}", False)
        return None if ok else (error or "release failed")

    def status(self, name: str | None) -> list[dict]:
        """One scenario, or all: three enumerations either way (VMs and networks grouped by
        scenario here, not enumerated again per scenario)."""
        conn = self.conn
        scenarios = ([get_scenario(conn, name)] if name else
                     conn.EnumerateInstances(N.SCENARIO))
        vms: dict[str, list] = {}
        for v in self._vms():
            vms.setdefault(v.get("ScenarioName"), []).append(v)
        nets: dict[str, list] = {}
        for n in conn.EnumerateInstances(N.VIRTUAL_NETWORK):
            if n.get("SegmentKind") not in (None, "none"):
                nets.setdefault(n.get("ScenarioName"), []).append(n)
        return [_status_of(sc, vms.get(sc.get("ElementName"), []),
                           nets.get(sc.get("ElementName"), [])) for sc in scenarios]

    def _vms(self) -> list:
        """Every EDIV_VirtualSystem with only what status and locate read (the client's
        parsing is the cost of a big enumeration: docs/cim.md, "NULL properties in
        responses")."""
        return self.conn.EnumerateInstances(N.VIRTUAL_SYSTEM, PropertyList=VM_PROPERTIES)

    def locate(self, vm: str | None, name: str | None) -> list[dict]:
        return [{"scenario": v.get("ScenarioName"), "vm": v.get("ElementName"),
                 "host": v.get("HostName"), "state": state_of(v)} for v in self._vms()
                if v.get("HostName") and (name is None or v.get("ScenarioName") == name)
                and (vm is None or v.get("ElementName") == vm)]

    def segments(self, name: str | None) -> list[dict]:
        return sorted(({"kind": n.get("SegmentKind"), "id": int(n.get("SegmentID")),
                        "scenario": n.get("ScenarioName"), "net": n.get("ElementName"),
                        "hosts": list(n.get("Hosts") or [])}
                       for n in self.conn.EnumerateInstances(N.VIRTUAL_NETWORK)
                       if n.get("SegmentKind") not in (None, "none")
                       and (name is None or n.get("ScenarioName") == name)),
                      key=lambda s: (s["kind"], s["id"]))

    def hosts(self) -> list[dict]:
        """The hosts as the server last probed them (the server probes on each deploy)."""
        rows = []
        for h in sorted(self.conn.EnumerateInstances(N.HOST_SYSTEM),
                        key=lambda h: h.get("Name")):
            status = (h.get("OperationalStatus") or [0])[0]
            state = {2: "up", 13: "down"}.get(status, "unknown")
            load = h.get("Load")
            rows.append({"host": h.get("Name"), "address": h.get("Address"), "state": state,
                         "load": float(load) if load is not None and state == "up" else None,
                         "cpus": None, "mem_total_mb": None, "mem_available_mb": None,
                         "vms": int(h.get("NumberOfVirtualSystems") or 0), "uml": None,
                         "error": None if state != "down" else "unreachable at the last probe"})
        return rows

    def vm_state(self, name: str, vm: str, action: str, quiet: bool) -> dict:
        """RequestStateChange on the EDIV_VirtualSystem, its job followed."""
        import pywbem

        conn = self.conn
        get_scenario(conn, name)
        path = N.vm_path(name, vm)
        try:
            before = conn.GetInstance(path)
        except pywbem.CIMError as exc:
            if exc.status_code == pywbem.CIM_ERR_NOT_FOUND:
                raise NotFound("VM", vm, scenario=name) from None
            raise
        requested = {**{a: s for s, a in N.VM_REQUESTS.items()}, "resume": 2}[action]  # 2 resumes
        rv, out = conn.InvokeMethod("RequestStateChange", path,
                                    [("RequestedState", pywbem.Uint16(requested))])
        ok, result, error = finished(conn, rv, out, f"{action} {name}/{vm}", quiet)
        if not ok:
            raise (WrongState if rv == N.INVALID_STATE else EdivError)(
                error or f"{action} {name}/{vm} failed")
        if result is None:  # 0: already in the requested state
            result = {"vm": vm, "action": action, "previous": state_of(before),
                      "state": state_of(before), "host": before.get("HostName") or None}
        return result

    def cleanup_scope(self) -> tuple[list[str], int]:
        raise _direct_only("cleanup")

    def cleanup(self) -> dict:
        raise _direct_only("cleanup")

    def console(self, name: str, vm: str, command: tuple[str, ...]) -> NoReturn:
        raise _direct_only("console (an SSH session into a VM)")


def _direct_only(what: str) -> EdivError:
    return EdivError(f"{what} is not available with --server; run it on the controller")


def _name_of(spec: str) -> str | None:
    from ediv.scenario import parse_string

    try:
        return parse_string(spec).name
    except (InputError, EdivError):
        return None


def _status_of(sc, vms: list, nets: list) -> dict:
    """``ediv status`` of one scenario from its EDIV_Scenario, VMs and segment networks."""
    return {
        "name": sc.get("ElementName"),
        "state": state_of(sc),
        "error": sc.get("Description"),
        "vms": [{"name": v.get("ElementName"), "host": v.get("HostName") or None,
                 "state": state_of(v), "type": v.get("VirtualSystemType")} for v in vms],
        "segments": sorted(({"net": n.get("ElementName"), "hosts": list(n.get("Hosts") or []),
                             "kind": n.get("SegmentKind"), "id": int(n.get("SegmentID"))}
                            for n in nets), key=lambda s: (s["kind"], s["id"])),
    }
