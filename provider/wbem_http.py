"""The HTTP side of DSP0200 as a WSGI application: headers, authentication, body limits.

CIM-level failures travel inside a 200 response as ERROR elements (the dispatcher's job);
this layer answers with HTTP status codes only for what DSP0200 puts at the HTTP level:
401 (credentials), 429 + Retry-After (too many failed logins from the client's address),
400 + CIMError header (request not well-formed / not valid / header mismatch), 405 (not
POST), 413 (body too large), 501 (unsupported protocol version).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from ediv.provider import cimxml
from ediv.provider.auth import Role, TooManyFailures, UserStore
from ediv.provider.operations import Dispatcher

log = logging.getLogger("ediv.provider")

REALM = "ediv"
_CHUNK = 64 * 1024

StartResponse = Callable[..., object]


class WBEMApp:
    def __init__(self, dispatcher: Dispatcher, users: UserStore, max_body_bytes: int):
        self.dispatcher = dispatcher
        self.users = users
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._handle(environ, start_response)
        except Exception:  # last resort: never leak a traceback to the client
            log.exception("internal error")
            return _plain(start_response, "500 Internal Server Error", "internal error\n")

    def _handle(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("POST", "M-POST"):
            return _plain(start_response, "405 Method Not Allowed",
                          "CIM operations use POST\n", [("Allow", "POST, M-POST")])
        try:
            user = self._authenticate(environ)
        except TooManyFailures as exc:  # per client address (auth.LoginThrottle)
            return _plain(start_response, "429 Too Many Requests", f"{exc}\n",
                          [("Retry-After", str(exc.retry_after))])
        if user is None:
            return _plain(start_response, "401 Unauthorized", "authentication required\n",
                          [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        name, role = user
        prefix = _mpost_prefix(environ) if method == "M-POST" else ""

        def header(h: str) -> str | None:
            key = "HTTP_" + (prefix + h).upper().replace("-", "_")
            return environ.get(key)

        if (header("CIMOperation") or "").strip().lower() != "methodcall":
            return _cim_error(start_response, "400 Bad Request", "header-mismatch")
        version = (header("CIMProtocolVersion") or "1.0").strip()
        if not version.startswith("1."):
            return _cim_error(start_response, "501 Not Implemented",
                              "unsupported-protocol-version")
        if header("CIMBatch") is not None:
            return _cim_error(start_response, "501 Not Implemented",
                              "multiple-requests-unsupported")
        body = self._read_body(environ)
        if body is None:
            return _plain(start_response, "413 Content Too Large",
                          f"request body larger than {self.max_body_bytes} bytes\n",
                          [("Connection", "close")])
        try:
            req = cimxml.parse_request(body)
        except cimxml.RequestNotValid as exc:
            log.info("rejected request from %s: %s", name, exc)
            return _cim_error(start_response, "400 Bad Request", exc.cimerror_header)
        cim_method = header("CIMMethod")
        if cim_method is not None and unquote(cim_method).lower() != req.method.lower():
            return _cim_error(start_response, "400 Bad Request", "header-mismatch")
        host = environ.get("HTTP_HOST") or self.dispatcher.host
        host = host if host else self.dispatcher.host
        out = self.dispatcher.call(req, role, user=name, host=host)
        start_response("200 OK", [
            ("Content-Type", 'application/xml; charset="utf-8"'),
            ("Content-Length", str(len(out))),
            ("CIMOperation", "MethodResponse"),
        ])
        return [out]

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

    def _read_body(self, environ: dict) -> bytes | None:
        """The request body, or None when it exceeds the limit."""
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0 or size > self.max_body_bytes:
                return None
            return stream.read(size)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self.max_body_bytes:
                return None
            chunks.append(chunk)


def _mpost_prefix(environ: dict) -> str:
    # M-POST: Man: http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73  -> headers "73-CIMOperation"
    man = environ.get("HTTP_MAN", "")
    for part in man.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "ns" and value.strip().isdigit():
            return value.strip() + "-"
    return ""


def _plain(start_response: StartResponse, status: str, text: str,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), *(headers or [])])
    return [data]


def _cim_error(start_response: StartResponse, status: str, cimerror: str) -> list[bytes]:
    return _plain(start_response, status, f"{cimerror}\n", [("CIMError", cimerror)])
