"""The cluster commands against an ediv WBEM server (``--server URL``), through pywbem.

Each command keeps the output of direct mode (the same text, the same JSON shapes); long
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ediv.client.output import (
    print_exec_results,
    print_locate,
    print_segments,
    print_status,
    print_vm_state,
)
from ediv.errors import EdivError, InputError, WrongState

NS = "root/ediv"
POLL_SECONDS = 0.5


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


def _target(server: str | None, user: str | None, password_file: str | None,
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


def server_options(command: str) -> Callable:
    """Adds the WBEM options to a direct-mode command; with a server given, the command runs
    through WBEM (``HANDLERS[command]``) and the direct-mode function is not called."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, server=None, user=None, password_file=None, ca_cert=None,
                    profile=None, **kwargs):
            target = _target(server, user, password_file, ca_cert, profile)
            if target is None:
                return fn(*args, **kwargs)
            return _run(target, HANDLERS[command], **kwargs)

        for option in reversed((
            click.option("--server", metavar="URL", envvar="EDIV_SERVER",
                         help="Run through this ediv WBEM server (https://HOST:5989)."),
            click.option("--user", metavar="NAME", help="WBEM user (with --server)."),
            click.option("--password-file", type=click.Path(dir_okay=False),
                         help="File whose first line is the password (with --server)."),
            click.option("--ca-cert", type=click.Path(dir_okay=False, exists=True),
                         help="CA (or the server's own) certificate, PEM (with --server)."),
            click.option("--profile", type=click.Path(dir_okay=False, exists=True),
                         help="TOML file with server, user, password_file, ca_cert."),
        )):
            wrapper = option(wrapper)
        return wrapper

    return deco


def _run(target: Target, handler: Callable, **kwargs) -> Any:
    import pywbem

    conn = target.connect()
    try:
        return handler(conn, **kwargs)
    except pywbem.CIMError as exc:
        raise EdivError(exc.status_description or exc.status_code_name) from None
    except pywbem.AuthError:
        raise EdivError(f"{target.url}: authentication failed for user {target.user!r}") \
            from None
    except pywbem.ConnectionError as exc:
        raise EdivError(f"{target.url}: cannot connect: {exc}") from None
    except pywbem.Error as exc:
        raise EdivError(f"{target.url}: {exc}") from None


# ---------------------------------------------------------------- paths and helpers

def scenario_path(name: str):
    import pywbem

    return pywbem.CIMInstanceName("EDIV_Scenario", {"CreationClassName": "EDIV_Scenario",
                                                    "Name": name}, namespace=NS)


def service_path(conn):
    paths = conn.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    if not paths:
        raise EdivError("the server has no EDIV_VirtualSystemManagementService")
    return paths[0]


def get_scenario(conn, name: str):
    import pywbem

    try:
        return conn.GetInstance(scenario_path(name))
    except pywbem.CIMError as exc:
        if exc.status_code == pywbem.CIM_ERR_NOT_FOUND:
            raise EdivError(f"no scenario named {name!r}") from None
        raise


def state_of(inst) -> str:
    descriptions = inst["StatusDescriptions"] or []
    return descriptions[0] if descriptions else "unknown"


def follow(conn, job, title: str, quiet: bool = False) -> Any:
    """Poll a job until it ends; print its new log lines (stderr) unless quiet."""
    start = time.monotonic()
    seen = 0
    while True:
        inst = conn.GetInstance(job)
        log = (inst["Description"] or "").splitlines()
        if not quiet:
            # the job shows the tail of its log: find where we stopped
            new = log[seen:] if len(log) >= seen else log
            for line in new:
                click.echo(f"[{time.monotonic() - start:6.1f}s] {title}: {line} "
                           f"({inst['PercentComplete'] or 0}%)", err=True)
        seen = len(log)
        if inst["JobState"] != 4:
            return inst
        time.sleep(POLL_SECONDS)


def finished(conn, rv: int, out: Any, title: str, quiet: bool):
    if rv == 4096:
        job = follow(conn, out["Job"], title, quiet)
        result = json.loads(job["ResultData"]) if job["ResultData"] else None
        return job["JobState"] == 7, result, job["ErrorDescription"]
    if rv == 0:
        return True, None, None
    reasons = {1: "not supported", 4097: "invalid state transition", 5: "invalid state"}
    return False, None, f"{title}: the server answered {rv} ({reasons.get(rv, 'failed')})"


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


# ---------------------------------------------------------------- commands

def deploy(conn, scenario, cluster_path, algorithm, restrictions_path, loads, as_json,
           trust_new_hosts=False, **_: Any) -> None:
    import pywbem

    if cluster_path:
        raise EdivError("-c/--cluster does not apply with --server: the server's cluster is "
                        "used")
    if loads:
        raise EdivError("--load is not available with --server (the server measures loads)")
    if _.get("allow_files"):
        raise EdivError("--allow-files does not apply with --server: the server's admin lists "
                        "allowed directories (file_dirs in its config)")
    path = Path(scenario)
    spec = path.read_text(encoding="utf-8")
    try:
        archive = scenario_files(path)
    except InputError:
        archive = None  # let the server report the errors, with their lines
    props: dict[str, Any] = {"ScenarioDefinition": spec}
    if algorithm:
        props["PartitionAlgorithm"] = algorithm
    if restrictions_path:
        props["Restrictions"] = Path(restrictions_path).read_text(encoding="utf-8")
    if archive:
        props["Archive"] = base64.b64encode(archive).decode()
    settings = pywbem.CIMInstance("EDIV_ScenarioSettingData", properties=props)
    service = service_path(conn)
    try:
        _rv, out = conn.InvokeMethod("DefineSystem", service, [("SystemSettings", settings)])
    except pywbem.CIMError as exc:
        if exc.status_code != pywbem.CIM_ERR_ALREADY_EXISTS:
            raise
        name = _name_of(spec)
        if name is None or state_of(get_scenario(conn, name)) != "defined":
            raise
        # defined earlier (by WBEM): deploy this file's version instead
        conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", scenario_path(name))])
        _rv, out = conn.InvokeMethod("DefineSystem", service, [("SystemSettings", settings)])
    target = out["ResultingSystem"]
    name = target.keybindings["Name"]
    rv, out = conn.InvokeMethod("RequestStateChange", target,
                                [("RequestedState", pywbem.Uint16(2))])
    ok, plan, error = finished(conn, rv, out, f"deploying {path.name}", as_json)
    if not ok:
        raise EdivError(error or "deploy failed")
    status = _status(conn, name)
    if as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        hosts = len([h for h, v in (plan or {}).get("hosts", {}).items() if v["vms"]])
        click.echo(f"{name}: deployed {len(status['vms'])} VMs on {hosts} hosts, "
                   f"{len(status['segments'])} segments")


def _name_of(spec: str) -> str | None:
    from ediv.scenario import parse_string

    try:
        return parse_string(spec).name
    except (InputError, EdivError):
        return None


def exec_cmd(conn, name, seq, vms=(), cluster_path=None, as_json=False, **_: Any) -> None:
    get_scenario(conn, name)
    params = [("AffectedSystem", scenario_path(name)), ("Sequence", seq)]
    if vms:
        params.append(("VirtualSystems", list(vms)))
    rv, out = conn.InvokeMethod("ExecuteSequence", service_path(conn), params)
    if rv == 5:
        raise EdivError(f"scenario {name!r} is {state_of(get_scenario(conn, name))}, not deployed")
    _ok, results, error = finished(conn, rv, out, f"exec {seq}", True)
    if results is None:
        raise EdivError(error or "exec failed")
    print_exec_results(results, as_json)


def release(conn, name, purge=False, cluster_path=None, **_: Any) -> None:
    if purge:
        raise EdivError("--purge is not available with --server")
    get_scenario(conn, name)
    rv, out = conn.InvokeMethod("DestroySystem", service_path(conn),
                                [("AffectedSystem", scenario_path(name))])
    ok, _result, error = finished(conn, rv, out, f"releasing {name}", False)
    if not ok:
        click.echo(f"{name}: {error}", err=True)
        sys.exit(1)
    click.echo(f"{name}: released")


def _status(conn, name: str) -> dict:
    sc = get_scenario(conn, name)
    vms = [v for v in conn.EnumerateInstances("EDIV_VirtualSystem") if v["ScenarioName"] == name]
    nets = [n for n in conn.EnumerateInstances("EDIV_VirtualNetwork")
            if n["ScenarioName"] == name and n["SegmentKind"] not in (None, "none")]
    return {
        "name": name,
        "state": state_of(sc),
        "error": sc["Description"],
        "vms": [{"name": v["ElementName"], "host": v["HostName"] or None, "state": state_of(v),
                 "type": v["VirtualSystemType"]} for v in vms],
        "segments": sorted(({"net": n["ElementName"], "hosts": list(n["Hosts"] or []),
                             "kind": n["SegmentKind"], "id": int(n["SegmentID"])}
                            for n in nets), key=lambda s: (s["kind"], s["id"])),
    }


def status(conn, name=None, as_json=False, **_: Any) -> None:
    names = [name] if name else [s["ElementName"] for s in conn.EnumerateInstances(
        "EDIV_Scenario")]
    print_status([_status(conn, n) for n in names], bool(name), as_json)


def locate(conn, vm=None, name=None, as_json=False, **_: Any) -> None:
    print_locate([{"scenario": v["ScenarioName"], "vm": v["ElementName"], "host": v["HostName"],
                   "state": state_of(v)} for v in conn.EnumerateInstances("EDIV_VirtualSystem")
                  if v["HostName"] and (name is None or v["ScenarioName"] == name)
                  and (vm is None or v["ElementName"] == vm)], vm, as_json)


def segments(conn, name=None, as_json=False, **_: Any) -> None:
    rows = sorted(({"kind": n["SegmentKind"], "id": int(n["SegmentID"]),
                    "scenario": n["ScenarioName"], "net": n["ElementName"],
                    "hosts": list(n["Hosts"] or [])}
                   for n in conn.EnumerateInstances("EDIV_VirtualNetwork")
                   if n["SegmentKind"] not in (None, "none")
                   and (name is None or n["ScenarioName"] == name)),
                  key=lambda s: (s["kind"], s["id"]))
    print_segments(rows, as_json)


def hosts(conn, cluster_path=None, as_json=False, **_: Any) -> None:
    """The hosts as the server last probed them (the server probes on each deploy)."""
    rows = []
    for h in sorted(conn.EnumerateInstances("EDIV_HostSystem"), key=lambda h: h["Name"]):
        status = (h["OperationalStatus"] or [0])[0]
        state = {2: "up", 13: "down"}.get(status, "unknown")
        rows.append({"host": h["Name"], "address": h["Address"], "state": state,
                     "load": float(h["Load"]) if h["Load"] is not None and state == "up"
                     else None,
                     "cpus": None, "mem_total_mb": None, "mem_available_mb": None,
                     "vms": int(h["NumberOfVirtualSystems"] or 0), "uml": None,
                     "error": None if state != "down" else "unreachable at the last probe"})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for col in ("host", "address", "state", "load", "VMs"):
        t.add_column(col)
    for r in rows:
        load = f"{r['load']:.2f}" if isinstance(r["load"], float) else ""
        t.add_row(r["host"], r["address"] or "", r["error"] or r["state"], load, str(r["vms"]))
    Console().print(t)
    if any(r["error"] for r in rows):
        sys.exit(1)


def vm_state(conn, action, name, vm, as_json=False, **_: Any) -> None:
    """`ediv vm ACTION NAME VM`: RequestStateChange on the EDIV_VirtualSystem, job followed."""
    import pywbem

    from ediv.provider.cim_paths import VM_REQUESTS, vm_path

    get_scenario(conn, name)
    path = vm_path(name, vm)
    try:
        before = conn.GetInstance(path)
    except pywbem.CIMError as exc:
        if exc.status_code == pywbem.CIM_ERR_NOT_FOUND:
            raise EdivError(f"scenario {name!r} has no VM named {vm!r}") from None
        raise
    requested = {**{a: s for s, a in VM_REQUESTS.items()}, "resume": 2}[action]  # 2 resumes
    rv, out = conn.InvokeMethod("RequestStateChange", path,
                                [("RequestedState", pywbem.Uint16(requested))])
    ok, result, error = finished(conn, rv, out, f"{action} {name}/{vm}", as_json)
    if not ok:
        raise (WrongState if rv == 5 else EdivError)(error or f"{action} {name}/{vm} failed")
    if result is None:  # 0: already in the requested state
        result = {"vm": vm, "action": action, "previous": state_of(before),
                  "state": state_of(before), "host": before["HostName"] or None}
    print_vm_state(name, result, as_json)


def _direct_only(what: str) -> Callable:
    def handler(conn, **_: Any) -> None:
        raise EdivError(f"{what} is not available with --server; run it on the controller")
    return handler


HANDLERS: dict[str, Callable] = {
    "deploy": deploy, "exec": exec_cmd, "release": release, "status": status,
    "locate": locate, "segments": segments, "hosts": hosts, "vm": vm_state,
    "console": _direct_only("console (an SSH session into a VM)"),
    "cleanup": _direct_only("cleanup"),
}
