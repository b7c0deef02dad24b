"""Lifecycle indications (DSP1054): subscriptions in interop, CIM-XML export to listeners.

Clients create CIM_IndicationFilter, CIM_ListenerDestinationCIMXML and
CIM_IndicationSubscription instances in interop (CreateInstance / DeleteInstance, operator
role); they live in the server's memory (PersistenceType 3, Transient). A watcher compares
the scenarios, virtual systems and jobs of the state store every ``interval`` seconds (so
changes made by ``ediv`` processes sharing the store count too) and, for every change that a
subscription's filter selects, POSTs an ExportIndication message to the listener.

Supported filter queries (WQL or DMTF:CQL, case-insensitive), nothing else:

    SELECT * FROM <indication class>
    SELECT * FROM <indication class> WHERE SourceInstance ISA <class>

where the indication class is CIM_InstCreation, CIM_InstDeletion, CIM_InstModification or
one of their superclasses (CIM_InstIndication, CIM_Indication), and <class> is a root/ediv
class (EDIV_Scenario, EDIV_VirtualSystem, EDIV_ConcreteJob or one of their superclasses).
The filter's SourceNamespace / SourceNamespaces must be empty or include root/ediv.
"""

from __future__ import annotations

import http.client
import logging
import queue
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pywbem import (
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
)

from ediv.provider.providers import InstanceProvider, ProviderRegistry, same_path
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE, Schema

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
    """Instances created by clients, kept in memory."""

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
            self.items.append(inst)
        return inst.path

    def delete(self, path: CIMInstanceName) -> None:
        with self.hub.lock:
            inst = self.find(path)
            if inst is None:
                raise CIMError(CIM_ERR_NOT_FOUND, f"no instance {path}")
            self.check_unused(inst)
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
        keys = self._system_keys(inst)
        inst.classname = self.classname
        inst.path = CIMInstanceName(self.classname, keys, namespace=INTEROP_NAMESPACE)
        for k, v in keys.items():
            inst[k] = v
        return inst


class _Destinations(_Store):
    def complete(self, inst: CIMInstance) -> CIMInstance:
        url = inst.get("Destination") or ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CIMError(CIM_ERR_INVALID_PARAMETER,
                           f"Destination {url!r} must be an http:// or https:// URL")
        keys = self._system_keys(inst)
        inst.classname = self.classname
        inst.path = CIMInstanceName(self.classname, keys, namespace=INTEROP_NAMESPACE)
        for k, v in keys.items():
            inst[k] = v
        inst["PersistenceType"] = Uint16(3)  # Transient: kept in memory
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

    def check_unused(self, inst: CIMInstance) -> None:
        return None


Snapshot = dict[str, CIMInstance]


class IndicationHub:
    """Subscriptions, the store watcher and the exporter."""

    def __init__(self, schema: Schema, system_name: str,
                 sources: dict[str, Callable[[], Iterable[CIMInstance]]],
                 interval: float = 0.5):
        self.schema = schema
        self.system_name = system_name
        self.sources = sources
        self.interval = interval
        self.lock = threading.RLock()
        self.filters = _Filters(FILTER, self)
        self.destinations = _Destinations(DESTINATION, self)
        self.subscriptions = _Subscriptions(SUBSCRIPTION, self)
        self._previous: Snapshot | None = None
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

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for t in self._threads:
            t.join(timeout=10)

    # -- watching ------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for classname, source in self.sources.items():
            for inst in source():
                out[f"{classname}:{_key(inst.path)}"] = inst
        return out

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # keep watching: a bad poll must not end indications
                log.exception("indication poll failed")

    def poll(self) -> list[CIMInstance]:
        """Compare with the last snapshot; queue and return the indications to send."""
        with self.lock:
            active = bool(self.subscriptions.items)
        if not active:
            self._previous = None
            return []
        now = self.snapshot()
        before, self._previous = self._previous, now
        if before is None:
            return []
        out = []
        for key, inst in now.items():
            old = before.get(key)
            if old is None:
                out.append(self.indication("CIM_InstCreation", inst))
            elif changed(old, inst):
                out.append(self.indication("CIM_InstModification", inst, old))
        for key, old in before.items():
            if key not in now:
                out.append(self.indication("CIM_InstDeletion", old))
        for ind in out:
            self.deliver(ind)
        return out

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
            try:
                export(url, ind)
                self.sent += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                log.warning("cannot deliver an indication to %s: %s", url, exc)


def _namespace_ok(flt: CIMInstance) -> bool:
    spaces = [flt.get("SourceNamespace"), *(flt.get("SourceNamespaces") or [])]
    spaces = [s.strip("/").lower() for s in spaces if s]
    return not spaces or EDIV_NAMESPACE in spaces


def _key(path: CIMInstanceName) -> str:
    return ",".join(f"{k}={path.keybindings[k]}" for k in sorted(path.keybindings))


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
