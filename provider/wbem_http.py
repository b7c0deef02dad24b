"""The HTTP side of DSP0200: headers, authentication, version checks; no I/O of its own.

CIM-level failures travel inside a 200 response as ERROR elements (the dispatcher's job);
this layer answers with HTTP status codes only for what DSP0200 puts at the HTTP level:
401 (credentials), 429 + Retry-After (too many failed logins from the client's address),
400 + CIMError header (request not well-formed / not valid / header mismatch), 405 (not
POST), 501 + CIMError (unsupported CIM or protocol version, multiple requests). The transport
(``ediv.provider.transport``) reads the body, enforces the size and concurrency limits (413,
503) and runs ``check`` and ``answer`` in its worker threads; requests are described by a
WSGI-style ``environ`` dict (REQUEST_METHOD, HTTP_*, REMOTE_ADDR, SSL_CLIENT_VERIFY /
SSL_CLIENT_S_DN_CN) so this module stays independent of the server.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote

from ediv.provider import cimxml, jobs
from ediv.provider.auth import Role, TooManyFailures, UserStore
from ediv.provider.operations import Dispatcher

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


class WBEMApp:
    def __init__(self, dispatcher: Dispatcher, users: UserStore, max_body_bytes: int):
        self.dispatcher = dispatcher
        self.users = users
        self.max_body_bytes = max_body_bytes

    def check(self, environ: dict) -> Reply | Caller:
        """Everything decided from the request line and headers: a refusal, or the caller."""
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("POST", "M-POST"):
            return Reply.plain(405, "Method Not Allowed", "CIM operations use POST\n",
                               [("Allow", "POST, M-POST")])
        try:
            user = self._authenticate(environ)
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
        host = environ.get("HTTP_HOST") or self.dispatcher.host
        token = jobs.requester.set(caller.name)
        try:
            out = self.dispatcher.call(req, caller.role, user=caller.name, host=host)
        finally:
            jobs.requester.reset(token)
        return Reply(200, "OK", [("Content-Type", 'application/xml; charset="utf-8"'),
                                 ("CIMOperation", "MethodResponse")], out)

    def _authenticate(self, environ: dict) -> tuple[str, Role] | None:
        if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS":
            cn = environ.get("SSL_CLIENT_S_DN_CN")
            user = self.users.get(cn) if cn else None
            if user is not None:
                return user.name, user.role
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep:
            return None
        user = self.users.authenticate(name, password, environ.get("REMOTE_ADDR") or "?")
        return (user.name, user.role) if user else None


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
