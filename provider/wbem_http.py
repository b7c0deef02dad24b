"""The HTTP side of DSP0200: headers, authentication, version checks; no I/O of its own.

CIM-level failures travel inside a 200 response as ERROR elements (the dispatcher's job);
this layer answers with HTTP status codes only for what DSP0200 puts at the HTTP level:
401 (credentials), 429 + Retry-After (too many failed logins from the client's address),
400 + CIMError header (request not well-formed / not valid / header mismatch), 405 (not
POST), 501 + CIMError (unsupported CIM or protocol version, multiple requests). The transport
(``ediv.provider.transport``) reads the body, enforces the size and concurrency limits (413,
503), calls ``quick`` on its event loop (refusals decided from headers, and GetInstance /
GetClass measured fast: ``QuickPath``) and runs the rest (``check`` and ``answer``, or
``answer_prepared``) in its worker threads; requests are described by a
WSGI-style ``environ`` dict (REQUEST_METHOD, HTTP_*, REMOTE_ADDR, SSL_CLIENT_VERIFY /
SSL_CLIENT_S_DN_CN) so this module stays independent of the server.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

from ediv.provider import cimxml, jobs
from ediv.provider.auth import Role, TooManyFailures, UserStore
from ediv.provider.operations import Dispatcher
from ediv.provider.request import CLIENT_GONE

log = logging.getLogger("ediv.provider")

REALM = "ediv"
# DSP0200 6.2: CIM-XML travels as application/xml or text/xml (a missing header is tolerated)
XML_TYPES = ("application/xml", "text/xml")


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def plain(cls, status: int, reason: str, text: str,
              headers: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, reason, [("Content-Type", "text/plain; charset=utf-8"),
                                    *(headers or [])], text.encode())

    @classmethod
    def cim_error(cls, status: int, reason: str, cimerror: str, why: str = "") -> Reply:
        text = f"{cimerror}: {why}\n" if why else f"{cimerror}\n"
        return cls.plain(status, reason, text, [("CIMError", cimerror)])


@dataclass(frozen=True)
class Caller:
    """An authenticated client and the header accessor of its request (M-POST aware)."""
    name: str
    role: Role
    prefix: str

    def header(self, environ: dict, name: str) -> str | None:
        return environ.get("HTTP_" + (self.prefix + name).upper().replace("-", "_"))


@dataclass(frozen=True)
class Prepared:
    """A request checked and parsed (on the event loop) for a worker thread to answer."""
    caller: Caller
    req: cimxml.CIMRequest
    key: tuple[str, str, str] | None


class NeedsWorker(Exception):
    """The request needs work too slow for the event loop (a password to verify)."""


# operations that may be answered on the event loop once measured fast (see QuickPath)
QUICK_OPERATIONS = frozenset({"getinstance", "getclass"})


class QuickPath:
    """Which (operation, namespace, class) answer fast enough to run on the event loop.

    A thread hand-off costs more than a GetInstance's own work (bench/bench_wbem.py: 0.3 ms
    of server CPU against 0.4 ms), and with one GIL a short call in a worker holds up the
    event loop just as much as the same call on it. So a key runs inline once ``PROMOTE``
    of its runs in a worker took under ``FAST_CPU`` of thread CPU and under ``FAST_WALL``
    of wall time, with none over ``FAST_CPU`` in between (a run that only waited longer,
    for the GIL or the disk, neither counts nor resets: on a loaded machine the wall time
    of a worker says little). One inline run over ``DEMOTE_CPU`` of CPU (the interpreter's
    switch interval: what a worker could hold the GIL anyway) or ``DEMOTE_WALL`` of wall
    time (it blocked) sends the key back to the workers, to earn its place again. Anything
    else (methods, enumerations, associations, an unknown class, a first call) always runs
    in a worker."""

    PROMOTE = 16
    FAST_CPU = 0.002
    FAST_WALL = 0.02
    DEMOTE_CPU = 0.005
    DEMOTE_WALL = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streak: dict[tuple, int] = {}

    def inline(self, key: tuple) -> bool:
        return self._streak.get(key, 0) >= self.PROMOTE

    def ran_in_worker(self, key: tuple, cpu: float, wall: float) -> None:
        with self._lock:
            if len(self._streak) > 10000:
                self._streak.clear()
            if cpu >= self.FAST_CPU:
                self._streak[key] = 0
            elif wall < self.FAST_WALL:
                self._streak[key] = min(self.PROMOTE, self._streak.get(key, 0) + 1)

    def ran_inline(self, key: tuple, cpu: float, wall: float) -> None:
        if cpu > self.DEMOTE_CPU or wall > self.DEMOTE_WALL:
            with self._lock:
                self._streak[key] = 0
            log.info("%s %s:%s took %.1f ms (%.1f ms CPU) on the event loop: back to the "
                     "workers", key[0], key[1], key[2], wall * 1000, cpu * 1000)


class WBEMApp:
    def __init__(self, dispatcher: Dispatcher, users: UserStore, max_body_bytes: int):
        self.dispatcher = dispatcher
        self.users = users
        self.max_body_bytes = max_body_bytes
        self.quick_path = QuickPath()

    def quick(self, environ: dict, body: bytes) -> Reply | Prepared | None:
        """On the event loop: the reply, when the request is refused on its headers or is an
        operation measured fast (``QuickPath``); a ``Prepared`` request for a worker; or None
        when a worker must do it all (any other operation, a password not verified yet)."""
        if environ.get("REQUEST_METHOD") != "POST" or \
                environ.get("HTTP_CIMMETHOD", "").lower() not in QUICK_OPERATIONS:
            return None
        try:
            checked = self.check(environ, worker=False)
        except NeedsWorker:
            return None
        if isinstance(checked, Reply):
            return checked
        req = self._parse(environ, checked, body)
        if isinstance(req, Reply):
            return req
        key = _quick_key(req)
        if key is None or not self.quick_path.inline(key):
            return Prepared(checked, req, key)
        wall, cpu = time.perf_counter(), time.thread_time()
        reply = self._dispatch(environ, checked, req)
        self.quick_path.ran_inline(key, time.thread_time() - cpu, time.perf_counter() - wall)
        return reply

    def answer_prepared(self, environ: dict, prepared: Prepared) -> Reply:
        """In a worker: the reply to a request ``quick`` prepared; timed for ``QuickPath``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        reply = self._dispatch(environ, prepared.caller, prepared.req)
        if prepared.key is not None:
            self.quick_path.ran_in_worker(prepared.key, time.thread_time() - cpu,
                                          time.perf_counter() - wall)
        return reply

    def check(self, environ: dict, worker: bool = True) -> Reply | Caller:
        """Everything decided from the request line and headers: a refusal, or the caller.
        With ``worker`` False (on the event loop), NeedsWorker instead of a password check."""
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("POST", "M-POST"):
            return Reply.plain(405, "Method Not Allowed", "CIM operations use POST\n",
                               [("Allow", "POST, M-POST")])
        try:
            user = self._authenticate(environ, worker)
        except TooManyFailures as exc:  # per client address (auth.LoginThrottle)
            return Reply.plain(429, "Too Many Requests", f"{exc}\n",
                               [("Retry-After", str(exc.retry_after))])
        if user is None:
            return Reply.plain(401, "Unauthorized", "authentication required\n",
                               [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        caller = Caller(*user, _mpost_prefix(environ) if method == "M-POST" else "")
        if (caller.header(environ, "CIMOperation") or "").strip().lower() != "methodcall":
            return Reply.cim_error(400, "Bad Request", "header-mismatch",
                                   "CIMOperation must be MethodCall")
        version = (caller.header(environ, "CIMProtocolVersion") or "1.0").strip()
        if not version.startswith("1."):
            return Reply.cim_error(501, "Not Implemented", "unsupported-protocol-version",
                                   f"CIMProtocolVersion {version}: this server speaks 1.x")
        if caller.header(environ, "CIMBatch") is not None:
            return Reply.cim_error(501, "Not Implemented", "multiple-requests-unsupported")
        ctype = (environ.get("CONTENT_TYPE") or environ.get("HTTP_CONTENT_TYPE") or "")
        ctype = ctype.split(";")[0].strip().lower()
        if ctype and ctype not in XML_TYPES:
            return Reply.cim_error(400, "Bad Request", "request-not-valid",
                                   f"Content-Type {ctype} is not application/xml")
        return caller

    def answer(self, environ: dict, caller: Caller, body: bytes) -> Reply:
        """The response to a request ``check`` accepted, its body read."""
        req = self._parse(environ, caller, body)
        if isinstance(req, Reply):
            return req
        return self._dispatch(environ, caller, req)

    def _parse(self, environ: dict, caller: Caller, body: bytes) -> cimxml.CIMRequest | Reply:
        try:
            req = cimxml.parse_request(body)
        except cimxml.RequestNotValid as exc:
            log.info("rejected request from %s: %s", caller.name, exc)
            reason = "Not Implemented" if exc.status == 501 else "Bad Request"
            return Reply.cim_error(exc.status, reason, exc.cimerror_header)
        cim_method = caller.header(environ, "CIMMethod")
        if cim_method is not None and unquote(cim_method).lower() != req.method.lower():
            return Reply.cim_error(400, "Bad Request", "header-mismatch",
                                   f"CIMMethod {cim_method} but the body calls {req.method}")
        mismatch = _cimobject_mismatch(caller.header(environ, "CIMObject"), req)
        if mismatch:
            return Reply.cim_error(400, "Bad Request", "header-mismatch", mismatch)
        return req

    def _dispatch(self, environ: dict, caller: Caller, req: cimxml.CIMRequest) -> Reply:
        host = environ.get("HTTP_HOST") or self.dispatcher.host
        token = jobs.requester.set(caller.name)
        try:
            out = self.dispatcher.call(req, caller.role, user=caller.name, host=host,
                                       cancelled=environ.get(CLIENT_GONE))
        finally:
            jobs.requester.reset(token)
        return Reply(200, "OK", [("Content-Type", 'application/xml; charset="utf-8"'),
                                 ("CIMOperation", "MethodResponse")], out)

    def _authenticate(self, environ: dict, worker: bool = True) -> tuple[str, Role] | None:
        if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS":
            cn = environ.get("SSL_CLIENT_S_DN_CN")
            user = self.users.get(cn) if cn else None
            if user is not None:
                return user.name, user.role
        credentials = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return None
        client = environ.get("REMOTE_ADDR") or "?"
        known = self.users.cached_login(*credentials)
        if known is not None:
            self.users.throttle.check(client)  # as for a password checked anew
            return known.name, known.role
        if not worker:
            raise NeedsWorker  # scrypt never runs on the event loop
        user = self.users.authenticate(*credentials, client)
        return (user.name, user.role) if user is not None else None


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(name, password) of a Basic ``Authorization`` value, else None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def _quick_key(req: cimxml.CIMRequest) -> tuple[str, str, str] | None:
    """(operation, namespace, class) of a GetInstance or GetClass, else None."""
    if not req.intrinsic:
        return None
    method = req.method.lower()
    if method == "getinstance":
        path = req.params.get("InstanceName")
        classname = getattr(path, "classname", None)
    elif method == "getclass":
        classname = req.params.get("ClassName")
        classname = getattr(classname, "classname", classname)
    else:
        return None
    if not isinstance(classname, str):
        return None
    return method, (req.namespace or "").lower(), classname.lower()


def _cimobject_mismatch(header: str | None, req: cimxml.CIMRequest) -> str | None:
    """Why the CIMObject header (DSP0200 6.3.7) does not name the request's object, if so."""
    if header is None:
        return None
    value = unquote(header).strip()
    if req.intrinsic:
        if value.strip("/").lower() != (req.namespace or "").strip("/").lower():
            return f"CIMObject {value} but the request is for namespace {req.namespace}"
        return None
    namespace, sep, objname = value.partition(":")
    if not sep:  # a class or instance path without namespace is not a CIMObject value
        return f"CIMObject {value} names no namespace"
    target = req.target
    classname = objname.split(".", 1)[0].strip()
    if namespace.strip("/").lower() != (target.namespace or "").strip("/").lower() or \
            classname.lower() != target.classname.lower():
        return f"CIMObject {value} but the request is for {target}"
    return None


def _mpost_prefix(environ: dict) -> str:
    # M-POST: Man: http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73  -> headers "73-CIMOperation"
    man = environ.get("HTTP_MAN", "")
    for part in man.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "ns" and value.strip().isdigit():
            return value.strip() + "-"
    return ""
