"""Lifecycle indications (DSP1054): subscriptions in interop, CIM-XML export to listeners.

Clients create CIM_IndicationFilter, CIM_ListenerDestinationCIMXML and
CIM_IndicationSubscription instances in interop (CreateInstance / DeleteInstance, operator
role); they are kept in the state store (``subscriptions`` table) and loaded again when the
server starts. While subscriptions exist, a watcher looks at the store's change counter every
``interval`` seconds (changes made by ``ediv`` processes sharing the store count too); when it
moved, it re-reads the scenarios, VM sets and jobs that changed, compares them with what it
saw before and, for every change that a subscription's filter selects, POSTs an
ExportIndication message to the listener.

Supported filter queries (WQL or DMTF:CQL, case-insensitive), nothing else:

    SELECT * FROM <indication class>
    SELECT * FROM <indication class> WHERE SourceInstance ISA <class>

where the indication class is CIM_InstCreation, CIM_InstDeletion, CIM_InstModification or
one of their superclasses (CIM_InstIndication, CIM_Indication), and <class> is a root/ediv
class (EDIV_Scenario, EDIV_VirtualSystem, EDIV_ConcreteJob or one of their superclasses).
The filter's SourceNamespace / SourceNamespaces must be empty or include root/ediv.

Where indications may go is the admin's choice, not the client's: a destination's URL must
match an entry of the server config's ``indication_listeners`` (``HOST``, ``HOST:PORT`` or
``SCHEME://HOST:PORT``; host names and addresses compared exactly, as written). The default
is an empty list: no destination is accepted, so a client cannot make the server POST to
any address or local port it picks (docs/threat-model.md). The check is made when a
destination is created and again before each delivery (the list may have changed since a
stored destination was created).
"""

from __future__ import annotations

import http.client
import logging
import queue
import re
import sqlite3
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from pywbem import (
    CIM_ERR_ACCESS_DENIED,
    CIM_ERR_ALREADY_EXISTS,
    CIM_ERR_FAILED,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_INVALID_QUERY,
    CIM_ERR_NOT_FOUND,
    CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED,
    CIMDateTime,
    CIMError,
    CIMInstance,
    CIMInstanceName,
    CIMProperty,
    Uint16,
    cimvalue,
)

from ediv.errors import EdivError
from ediv.provider.providers import InstanceProvider, ProviderRegistry, same_path
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE, Schema
from ediv.state import StateStore

log = logging.getLogger("ediv.provider")

FILTER, DESTINATION, SUBSCRIPTION = (
    "CIM_IndicationFilter", "CIM_ListenerDestinationCIMXML", "CIM_IndicationSubscription")
WATCHED = ("EDIV_Scenario", "EDIV_VirtualSystem", "EDIV_ConcreteJob")
# properties that change without anything happening (a running job's clock and log)
VOLATILE = frozenset(p.lower() for p in (
    "ElapsedTime", "TimeOfLastStateChange", "Description", "JobStatus"))
_QUERY = re.compile(
    r"^\s*select\s+\*\s+from\s+(?P<cls>\w+)"
    r"(?:\s+where\s+sourceinstance\s+isa\s+(?P<isa>\w+))?\s*;?\s*$", re.I)
_LANGUAGES = ("wql", "dmtf:cql", "cql")
EXPORT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Query:
    indication: str
    isa: str | None


def parse_query(text: str, language: str | None, schema: Schema) -> Query:
    if (language or "").strip().lower() not in _LANGUAGES:
        raise CIMError(CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED,
                       f"query language {language!r} is not supported (WQL or DMTF:CQL)")
    m = _QUERY.match(text or "")
    if not m:
        raise CIMError(CIM_ERR_INVALID_QUERY,
                       f"query {text!r} is not supported: use 'SELECT * FROM CIM_InstModification"
                       " [WHERE SourceInstance ISA EDIV_Scenario]'")
    interop = schema.namespace(INTEROP_NAMESPACE)
    cls = interop.get_class(m["cls"])
    if cls is None or not any(interop.is_subclass(c, cls.classname) for c in (
            "CIM_InstCreation", "CIM_InstDeletion", "CIM_InstModification")):
        raise CIMError(CIM_ERR_INVALID_QUERY,
                       f"{m['cls']} is not a lifecycle indication class this server sends "
                       "(CIM_InstCreation, CIM_InstDeletion, CIM_InstModification)")
    isa = m["isa"]
    if isa is not None:
        ediv = schema.namespace(EDIV_NAMESPACE)
        found = ediv.get_class(isa)
        if found is None:
            raise CIMError(CIM_ERR_INVALID_QUERY, f"class {isa} does not exist in root/ediv")
        isa = found.classname
    return Query(cls.classname, isa)


class _Store(InstanceProvider):
    """Instances created by clients: in memory, and in the state store when the hub has one."""

    writable = True

    def __init__(self, classname: str, hub: IndicationHub):
        self.classname = classname
        self.hub = hub
        self.items: list[CIMInstance] = []

    def enumerate(self) -> Iterable[CIMInstance]:
        with self.hub.lock:
            return [i.copy() for i in self.items]

    def find(self, path: CIMInstanceName) -> CIMInstance | None:
        for inst in self.items:
            if same_path(inst.path, path):
                return inst
        return None

    def create(self, instance: CIMInstance) -> CIMInstanceName:
        inst = self.complete(instance.copy())
        with self.hub.lock:
            if self.find(inst.path) is not None:
                raise CIMError(CIM_ERR_ALREADY_EXISTS, f"{inst.path} already exists")
            self.hub.save(self.classname, inst)
            self.items.append(inst)
        return inst.path

    def delete(self, path: CIMInstanceName) -> None:
        with self.hub.lock:
            inst = self.find(path)
            if inst is None:
                raise CIMError(CIM_ERR_NOT_FOUND, f"no instance {path}")
            self.check_unused(inst)
            self.hub.forget(self.classname, inst)
            self.items.remove(inst)

    def complete(self, inst: CIMInstance) -> CIMInstance:
        raise NotImplementedError

    def check_unused(self, inst: CIMInstance) -> None:
        for sub in self.hub.subscriptions.items:
            if any(same_path(sub[k], inst.path) for k in ("Filter", "Handler")):
                raise CIMError(CIM_ERR_FAILED, f"{inst.path} is used by subscription "
                               f"{sub.path}; delete the subscription first")

    def _system_keys(self, inst: CIMInstance) -> dict:
        name = inst["Name"] if "Name" in inst.properties else None
        if not name:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{self.classname} needs a Name")
        return {"SystemCreationClassName": inst.get("SystemCreationClassName")
                or "CIM_ComputerSystem",
                "SystemName": inst.get("SystemName") or self.hub.system_name,
                "CreationClassName": self.classname, "Name": name}


class _Filters(_Store):
    def complete(self, inst: CIMInstance) -> CIMInstance:
        parse_query(inst.get("Query"), inst.get("QueryLanguage"), self.hub.schema)
        check_source_namespaces(inst)
        keys = self._system_keys(inst)
        inst.classname = self.classname
        inst.path = CIMInstanceName(self.classname, keys, namespace=INTEROP_NAMESPACE)
        for k, v in keys.items():
            inst[k] = v
        return inst


def _url(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts


def _effective_port(parts: SplitResult) -> int:
    return parts.port or (5991 if parts.scheme == "https" else 5990)


@dataclass(frozen=True)
class ListenerPolicy:
    """The admin's ``indication_listeners``: which destination URLs are accepted."""

    entries: tuple[tuple[str | None, str, int | None], ...] = ()  # scheme, host, port

    @classmethod
    def parse(cls, items: Iterable[str]) -> ListenerPolicy:
        entries = []
        for item in items:
            text = item.strip()
            try:
                parts = urlsplit(text if "://" in text else f"//{text}")
                port = parts.port
            except ValueError:
                raise ValueError(f"indication_listeners: bad entry {item!r}") from None
            if not parts.hostname or (parts.scheme and parts.scheme not in ("http", "https")):
                raise ValueError(f"indication_listeners: bad entry {item!r} (HOST, HOST:PORT or "
                                 "http(s)://HOST:PORT)")
            entries.append((parts.scheme or None, parts.hostname.lower(), port))
        return cls(tuple(entries))

    def allows(self, url: str) -> bool:
        parts = _url(url)
        if parts is None:
            return False
        host, port = parts.hostname.lower(), _effective_port(parts)
        return any((scheme is None or scheme == parts.scheme) and h == host
                   and (p is None or p == port) for scheme, h, p in self.entries)


class _Destinations(_Store):
    def complete(self, inst: CIMInstance) -> CIMInstance:
        url = inst.get("Destination") or ""
        if _url(url) is None:
            raise CIMError(CIM_ERR_INVALID_PARAMETER,
                           f"Destination {url!r} must be an http:// or https:// URL")
        if not self.hub.listeners.allows(url):
            raise CIMError(CIM_ERR_ACCESS_DENIED,
                           f"Destination {url!r} is not an allowed indication listener: an "
                           "admin lists them in the server config (indication_listeners)")
        keys = self._system_keys(inst)
        inst.classname = self.classname
        inst.path = CIMInstanceName(self.classname, keys, namespace=INTEROP_NAMESPACE)
        for k, v in keys.items():
            inst[k] = v
        # as the client set it (pywbem: 3 for owned destinations), else 2 Permanent; either
        # way it is kept across restarts until deleted, and never dropped for failed deliveries
        persistence = inst.get("PersistenceType")
        inst["PersistenceType"] = Uint16(persistence if persistence in (1, 2, 3) else 2)
        inst["Protocol"] = Uint16(2)  # CIM-XML
        return inst


class _Subscriptions(_Store):
    def complete(self, inst: CIMInstance) -> CIMInstance:
        refs = {}
        for key, store in (("Filter", self.hub.filters), ("Handler", self.hub.destinations)):
            ref = inst.get(key)
            if not isinstance(ref, CIMInstanceName):
                raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{key} must be a reference")
            ref = ref.copy()
            ref.namespace = ref.namespace or INTEROP_NAMESPACE
            ref.host = None
            with self.hub.lock:
                if store.find(ref) is None:
                    raise CIMError(CIM_ERR_NOT_FOUND, f"{key} {ref} does not exist")
            refs[key] = ref
        inst.classname = self.classname
        inst.path = CIMInstanceName(self.classname, refs, namespace=INTEROP_NAMESPACE)
        inst["Filter"], inst["Handler"] = refs["Filter"], refs["Handler"]
        if inst.get("SubscriptionState") is None:
            inst["SubscriptionState"] = Uint16(2)  # Enabled
        inst["OnFatalErrorPolicy"] = inst.get("OnFatalErrorPolicy") or Uint16(2)  # Ignore
        return inst

    def create(self, instance: CIMInstance) -> CIMInstanceName:
        path = super().create(instance)
        try:  # the first look at the store: every change after CreateInstance returns counts
            self.hub.poll()
        except Exception:  # the watcher tries again on its next tick
            log.exception("indication poll failed")
        return path

    def check_unused(self, inst: CIMInstance) -> None:
        return None


# ---------------------------------------------------------------- subscription objects as JSON

def instance_json(inst: CIMInstance) -> dict:
    """A filter, destination or subscription as JSON for the state store (its path is derived
    from its properties again when it is loaded)."""
    return {"classname": inst.classname, "properties": [
        {"name": p.name, "type": p.type, "array": p.is_array, "value": _json_value(p.value, p.type)}
        for p in inst.properties.values()]}


def instance_from_json(data: dict) -> CIMInstance:
    inst = CIMInstance(data["classname"])
    for prop in data["properties"]:
        inst.properties[prop["name"]] = CIMProperty(
            prop["name"], _cim_value(prop["value"], prop["type"]), type=prop["type"],
            is_array=prop["array"])
    return inst


def _json_value(value: Any, cimtype: str) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_json_value(v, cimtype) for v in value]
    if cimtype == "reference":
        return value.to_wbem_uri()
    if cimtype == "datetime":
        return str(value)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise CIMError(CIM_ERR_INVALID_PARAMETER, f"a {cimtype} value cannot be kept: {value!r}")


def _cim_value(value: Any, cimtype: str) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_cim_value(v, cimtype) for v in value]
    if cimtype == "reference":
        return CIMInstanceName.from_wbem_uri(value)
    return cimvalue(value, cimtype)


# ---------------------------------------------------------------- what is watched

Snapshot = dict[str, CIMInstance]
# instances by group: a group (a scenario, the VMs of one scenario, a job) is re-read whole
Groups = dict[Hashable, list[CIMInstance]]


class ChangeSource(Protocol):
    """The watched instances, by group, with a mark of the store's change counter."""

    def everything(self) -> tuple[int, Groups]:
        """Every group, and the mark they were read at."""

    def since(self, mark: int) -> tuple[int, Groups]:
        """The groups changed after ``mark`` (an empty list: the group is gone), and the mark
        now. Nothing when nothing changed."""


class IndicationHub:
    """Subscriptions, the store watcher and the exporter."""

    def __init__(self, schema: Schema, system_name: str, source: ChangeSource, *,
                 store: Callable[[], StateStore] | None = None, interval: float = 0.5,
                 listeners: Iterable[str] = ()):
        """``store`` gives the calling thread's state store connection, where subscription
        objects are kept (None: in memory only); ``listeners`` the admin's allow-list of
        destinations (empty: none)."""
        self.listeners = ListenerPolicy.parse(listeners)
        self.schema = schema
        self.system_name = system_name
        self.source = source
        self.store = store
        self.interval = interval
        self.lock = threading.RLock()
        self.filters = _Filters(FILTER, self)
        self.destinations = _Destinations(DESTINATION, self)
        self.subscriptions = _Subscriptions(SUBSCRIPTION, self)
        self._poll_lock = threading.Lock()
        self._previous: dict[Hashable, Snapshot] | None = None
        self._mark = 0
        self._outbox: queue.Queue = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sent = 0

    def register(self, registry: ProviderRegistry) -> None:
        for store in (self.filters, self.destinations, self.subscriptions):
            registry.register(INTEROP_NAMESPACE, store)

    def start(self) -> None:
        for target, name in ((self._watch, "ediv-indications"), (self._send, "ediv-export")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._outbox.put(None)
        for t in self._threads:
            t.join(timeout=timeout)

    # -- keeping subscription objects ----------------------------------------------------
    def save(self, classname: str, inst: CIMInstance) -> None:
        if self.store is None:
            return
        try:
            self.store().add_subscription(classname, inst.path.to_wbem_uri(), instance_json(inst))
        except (sqlite3.Error, EdivError) as exc:
            raise CIMError(CIM_ERR_FAILED, f"cannot keep {inst.path} in the state store: {exc}"
                           ) from None

    def forget(self, classname: str, inst: CIMInstance) -> None:
        if self.store is None:
            return
        try:
            self.store().delete_subscription(classname, inst.path.to_wbem_uri())
        except (sqlite3.Error, EdivError) as exc:
            raise CIMError(CIM_ERR_FAILED, f"cannot remove {inst.path} from the state store: "
                           f"{exc}") from None

    def load(self) -> int:
        """Take back the subscription objects kept in the state store (at server start);
        one that is no longer valid is skipped with a warning. Returns how many were taken."""
        if self.store is None:
            return 0
        rows = self.store().subscriptions()
        order = (self.filters, self.destinations, self.subscriptions)  # references resolve
        loaded = 0
        for target in order:
            for row in (r for r in rows if r["kind"].lower() == target.classname.lower()):
                loaded += self._take_back(target, row)
        if loaded:
            self.poll()  # the first look at the store, before any client can change it
        return loaded

    def _take_back(self, target: _Store, row: dict) -> int:
        try:
            inst = target.complete(instance_from_json(row["data"]))
        except (CIMError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s %s in the state store is not usable, skipped: %s",
                        row["kind"], row["name"], exc)
            return 0
        with self.lock:
            if target.find(inst.path) is not None:
                return 0
            target.items.append(inst)
        return 1

    # -- watching ------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # keep watching: a bad poll must not end indications
                log.exception("indication poll failed")

    def poll(self) -> list[CIMInstance]:
        """Compare what changed in the store with what was seen before; queue and return the
        indications to send. The first poll with subscriptions only takes the first look."""
        with self._poll_lock:
            with self.lock:
                active = bool(self.subscriptions.items)
            if not active:
                self._previous = None
                return []
            if self._previous is None:
                self._mark, groups = self.source.everything()
                self._previous = {g: _snapshot(insts) for g, insts in groups.items()}
                return []
            self._mark, groups = self.source.since(self._mark)
            out = self._compare(groups)
        for ind in out:
            self.deliver(ind)
        return out

    def _compare(self, groups: Groups) -> list[CIMInstance]:
        """Creations and modifications in the order of ``groups``, then deletions."""
        out: list[CIMInstance] = []
        deleted: list[CIMInstance] = []
        for group, insts in groups.items():
            now = _snapshot(insts)
            before = self._previous.pop(group, {})
            if now:
                self._previous[group] = now
            for key, inst in now.items():
                old = before.get(key)
                if old is None:
                    out.append(self.indication("CIM_InstCreation", inst))
                elif changed(old, inst):
                    out.append(self.indication("CIM_InstModification", inst, old))
            deleted += [old for key, old in before.items() if key not in now]
        return out + [self.indication("CIM_InstDeletion", old) for old in deleted]

    def indication(self, classname: str, source: CIMInstance,
                   previous: CIMInstance | None = None) -> CIMInstance:
        ind = CIMInstance(classname)
        ind.properties["SourceInstance"] = CIMProperty(
            "SourceInstance", _embeddable(source), type="string", embedded_object="instance")
        if previous is not None:
            ind.properties["PreviousInstance"] = CIMProperty(
                "PreviousInstance", _embeddable(previous), type="string",
                embedded_object="instance")
            ind["ChangedPropertyNames"] = sorted(
                p for p in set(source.properties) | set(previous.properties)
                if p.lower() not in VOLATILE and _value(source, p) != _value(previous, p))
        path = source.path.copy()
        path.host = None
        path.namespace = EDIV_NAMESPACE
        ind["SourceInstanceModelPath"] = path.to_wbem_uri()
        ind["SourceInstanceHost"] = self.system_name
        ind["IndicationIdentifier"] = uuid.uuid4().hex
        ind["IndicationTime"] = CIMDateTime(datetime.now(UTC))
        ind["PerceivedSeverity"] = Uint16(2)  # Information
        return ind

    # -- matching and export ---------------------------------------------------------------
    def deliver(self, ind: CIMInstance) -> None:
        source = ind["SourceInstance"]
        interop = self.schema.namespace(INTEROP_NAMESPACE)
        ediv = self.schema.namespace(EDIV_NAMESPACE)
        with self.lock:
            subs = [s.copy() for s in self.subscriptions.items]
            for sub in subs:
                if int(sub.get("SubscriptionState") or 2) != 2:
                    continue
                flt = self.filters.find(sub["Filter"])
                dest = self.destinations.find(sub["Handler"])
                if flt is None or dest is None:
                    continue
                if not _namespace_ok(flt):
                    continue
                query = parse_query(flt["Query"], flt["QueryLanguage"], self.schema)
                if not interop.is_subclass(ind.classname, query.indication):
                    continue
                if query.isa and not ediv.is_subclass(source.classname, query.isa):
                    continue
                named = ind.copy()
                named["IndicationFilterName"] = flt["Name"]
                try:
                    self._outbox.put_nowait((dest["Destination"], named))
                except queue.Full:
                    log.warning("indication queue full: dropping an indication")

    def _send(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stop.is_set():
                return
            url, ind = item
            if not self.listeners.allows(url):
                log.warning("not delivering an indication to %s: not in indication_listeners",
                            url)
                continue
            try:
                export(url, ind)
                self.sent += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                log.warning("cannot deliver an indication to %s: %s", url, exc)


def check_source_namespaces(flt: CIMInstance) -> None:
    """A filter whose source namespaces are not root/ediv would never fire: refused."""
    given = [flt.get("SourceNamespace"), *(flt.get("SourceNamespaces") or [])]
    wrong = [s for s in given if s and s.strip("/").lower() != EDIV_NAMESPACE]
    if wrong:
        raise CIMError(CIM_ERR_INVALID_PARAMETER,
                       f"SourceNamespace(s) {', '.join(wrong)}: this server's indications come "
                       f"from {EDIV_NAMESPACE} only (namespaces served: {INTEROP_NAMESPACE}, "
                       f"{EDIV_NAMESPACE})")


def _namespace_ok(flt: CIMInstance) -> bool:
    spaces = [flt.get("SourceNamespace"), *(flt.get("SourceNamespaces") or [])]
    spaces = [s.strip("/").lower() for s in spaces if s]
    return not spaces or EDIV_NAMESPACE in spaces


def _key(path: CIMInstanceName) -> str:
    return ",".join(f"{k}={path.keybindings[k]}" for k in sorted(path.keybindings))


def _snapshot(insts: Iterable[CIMInstance]) -> Snapshot:
    return {f"{inst.classname}:{_key(inst.path)}": inst for inst in insts}


def _value(inst: CIMInstance, name: str):
    return inst.properties[name].value if name in inst.properties else None


def changed(old: CIMInstance, new: CIMInstance) -> bool:
    names = {p for p in set(old.properties) | set(new.properties) if p.lower() not in VOLATILE}
    return any(_value(old, p) != _value(new, p) for p in names)


def _embeddable(inst: CIMInstance) -> CIMInstance:
    out = inst.copy()
    out.path = None
    return out


def export_message(ind: CIMInstance) -> bytes:
    msg_id = str(int(time.time() * 1000) % 10**9)
    return ('<?xml version="1.0" encoding="utf-8" ?>\n'
            '<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
            f'<MESSAGE ID="{msg_id}" PROTOCOLVERSION="1.0"><SIMPLEEXPREQ>'
            '<EXPMETHODCALL NAME="ExportIndication"><EXPPARAMVALUE NAME="NewIndication">'
            f"{ind.tocimxmlstr()}</EXPPARAMVALUE></EXPMETHODCALL>"
            "</SIMPLEEXPREQ></MESSAGE></CIM>").encode()


def export(url: str, ind: CIMInstance) -> None:
    """POST one indication to a CIM-XML listener (DSP0200 export request)."""
    parts = urlsplit(url)
    port = parts.port or (5991 if parts.scheme == "https" else 5990)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=EXPORT_TIMEOUT, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=EXPORT_TIMEOUT)
    body = export_message(ind)
    try:
        conn.request("POST", parts.path or "/", body=body, headers={
            "Content-Type": 'application/xml; charset="utf-8"',
            "CIMExport": "MethodRequest", "CIMExportMethod": "ExportIndication",
            "CIMProtocolVersion": "1.0"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise ValueError(f"listener answered HTTP {response.status}")
    finally:
        conn.close()
