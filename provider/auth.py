"""Users, roles and HTTP Basic credentials checked against salted scrypt hashes.

The users file is JSON: ``{"users": {"NAME": {"role": "reader|operator|admin",
"password": "scrypt$N$r$p$SALT_B64$HASH_B64"}}}``, written with mode 0600.

Failed logins are limited per client address (:class:`LoginThrottle`): each address has a
bucket of ``burst`` failures refilled at one per ``refill`` seconds; an address whose bucket is
empty is answered at once (HTTP 429 with Retry-After) without checking its password, so a
brute-force loop neither learns anything nor costs scrypt time that other clients would wait
for. Nothing sleeps and no lock is held while a password is checked. Checks of credentials
not already verified (scrypt: CPU-bound) also run at most ``verify_slots`` at a time, so many
addresses together cannot take every CPU from clients whose credentials are verified: an
address with a clean record waits up to ``CLEAN_WAIT`` seconds for a slot (concurrent first
logins of one user then cost one scrypt), one that failed recently is answered 429
(Retry-After: 1) at once when every slot is busy.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from ediv.errors import Diagnostic, EdivError, InputError
from ediv.private import private_dir

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
CLEAN_WAIT = 5.0  # seconds an address without recent failures may wait for a check slot
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class Role(IntEnum):
    NONE = 0
    READER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            role = cls[text.strip().upper()]
        except KeyError:
            role = cls.NONE
        if role is cls.NONE:
            raise ValueError(f"unknown role {text!r} (reader, operator or admin)")
        return role


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
                  ) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


class UserStore:
    """The users file, re-read when it changes; verified passwords cached in memory so that
    Basic authentication on every request does not pay scrypt every time.

    The cache holds, per user, a SHA-256 of the stored hash and the password scrypt last
    accepted (emptied when the users file changes): a wrong password never matches, and a
    match (``cached_login``) costs one SHA-256 and a constant-time comparison, cheap enough
    for the server's event loop; anything else is checked with ``authenticate``."""

    def __init__(self, path: Path, throttle: LoginThrottle | None = None,
                 verify_slots: int | None = None):
        self.path = Path(path)
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._slots = threading.BoundedSemaphore(
            verify_slots or max(1, (os.cpu_count() or 2) // 2))
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._users: dict[str, User] = {}
        self._verified: dict[str, bytes] = {}

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._users, self._mtime, self._verified = {}, None, {}
            return
        if mtime == self._mtime:
            return
        self._users = read_users(self.path)
        self._mtime = mtime
        self._verified = {}

    def cached_login(self, name: str, password: str) -> User | None:
        """The user when ``password`` is the one scrypt last accepted for ``name`` and the
        users file has not changed since; else None (then check it with ``authenticate``).
        Never runs scrypt."""
        user = self.get(name)
        if user is not None and self._cached(name, _token(user, password)):
            return user
        return None

    def get(self, name: str) -> User | None:
        with self._lock:
            self._load()
            return self._users.get(name)

    def authenticate(self, name: str, password: str, client: str | None = None
                     ) -> User | None:
        """The user, or None for wrong credentials; TooManyFailures when ``client`` (the
        remote address) failed too often: then nothing is checked at all."""
        if client is None:
            return self._check(name, password, CLEAN_WAIT)
        self.throttle.check(client)
        user = self._check(name, password, CLEAN_WAIT if self.throttle.clean(client) else 0.0)
        if user is None:
            self.throttle.failed(client)
        return user

    def _check(self, name: str, password: str, wait: float) -> User | None:
        user = self.get(name)
        if user is None:
            # same cost as a real check, so names cannot be probed by timing
            with self._slot(wait):
                verify_password(password, _DUMMY_HASH)
            return None
        token = _token(user, password)
        if self._cached(name, token):
            return user
        with self._slot(wait):
            if self._cached(name, token):  # verified meanwhile by a concurrent login
                return user
            ok = verify_password(password, user.password_hash)
        if not ok:
            return None
        with self._lock:
            self._verified[name] = token
        return user

    def _cached(self, name: str, token: bytes) -> bool:
        with self._lock:
            cached = self._verified.get(name)
        return cached is not None and hmac.compare_digest(cached, token)

    @contextlib.contextmanager
    def _slot(self, wait: float) -> Iterator[None]:
        if not self._slots.acquire(timeout=wait) if wait > 0 else \
                not self._slots.acquire(blocking=False):
            raise TooManyFailures(1, "too many logins are being checked right now")
        try:
            yield
        finally:
            self._slots.release()


def _token(user: User, password: str) -> bytes:
    return hashlib.sha256(f"{user.password_hash}\0{password}".encode()).digest()


_DUMMY_HASH = hash_password(secrets.token_hex(8))


class TooManyFailures(EdivError):
    """This address failed to log in too often; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int,
                 reason: str = "too many failed logins from this address"):
        super().__init__(f"{reason}; retry in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    """Per-address token buckets of allowed failures; bounded to ``max_addresses`` entries
    (the least recently seen address goes first — a full bucket is the state it would reset
    to anyway, so forgetting one only ever forgives, never blocks)."""

    def __init__(self, burst: int = 10, refill: float = 2.0, max_addresses: int = 10000,
                 clock=time.monotonic):
        self.burst, self.refill, self.max_addresses = burst, refill, max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill)

    def clean(self, address: str) -> bool:
        """True when ``address`` has no failure left unforgiven."""
        with self._lock:
            return self._tokens(address, self._clock()) >= self.burst

    def check(self, address: str) -> None:
        """TooManyFailures when ``address`` has no failure left to spend."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(address, now)
            if tokens < 1.0:
                raise TooManyFailures(max(1, math.ceil((1.0 - tokens) * self.refill)))

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            tokens = self._tokens(address, now) - 1.0
            self._buckets[address] = (max(0.0, tokens), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def read_users(path: Path) -> dict[str, User]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        users = {}
        for name, entry in data.get("users", {}).items():
            users[name] = User(name, Role.parse(entry["role"]), entry["password"])
        return users
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(Diagnostic(str(path), 0, f"unreadable users file: {exc}")) from None


def add_user(path: Path, name: str, role: Role, password: str) -> None:
    """Add or replace ``name`` in the users file (created, mode 0600, when missing)."""
    if not name or not set(name) <= _NAME_OK or ":" in name:
        raise EdivError(f"invalid user name {name!r}")
    if not password:
        raise EdivError("empty password")
    path = Path(path)
    data: dict = {"users": {}}
    if path.exists():
        data = {"users": {n: {"role": u.role.name.lower(), "password": u.password_hash}
                          for n, u in read_users(path).items()}}
    data["users"][name] = {"role": role.name.lower(), "password": hash_password(password)}
    if not path.parent.exists():
        private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
