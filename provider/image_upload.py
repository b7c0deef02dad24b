"""``HEAD|PUT /ediv/images/sha256/<hex>``: disk images into the server's image store.

``ediv ovf import --server`` converts a VM's disk on the client and sends it here, so that the
scenario can name it ``image:sha256:<hex>`` and a deploy ships it to the hosts by digest
(``ediv.images.distribute``) - no folder shared by every host needed. The store is the one
the server's controller resolves ``image:`` references in (``$EDIV_IMAGES`` of the server
process, default ``/var/lib/ediv/images``).

- ``HEAD``: 200 when the store holds a blob of that digest, 404 when not.
- ``PUT`` with header ``Ediv-Image-Name: NAME`` (an image name, ``ediv.images.store``): when
  the blob is already there, the body is not read (send none) and NAME is pointed at it (200);
  otherwise the body is streamed to a file under the store's ``tmp/`` while hashed, and only a
  body of exactly that digest is renamed into the store under NAME (201); any other is
  deleted and refused with 422. A NAME the server's admin built or imported (origin not
  ``upload``) is never re-pointed at other bytes (409).

Both need an operator (or admin) of the server's users file, checked from the headers before a
byte of the body is read (401, 403; a refused body is drained, bounded, then the connection
closed). Nothing from the request becomes a path: the digest must be 64 lower-case hex digits,
the name matches the store's name pattern. A body is bounded by ``max_image_bytes`` (server
config, default 8 GiB: 413) and uploads at once by ``MAX_UPLOADS`` (503).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ediv.errors import EdivError
from ediv.images.digest import PREFIX
from ediv.images.store import ImageStore, Manifest, check_name, detect_format
from ediv.provider.auth import Role, TooManyFailures
from ediv.provider.wbem_http import REALM, Reply, WBEMApp

PATH_PREFIX = "/ediv/images/"
PATH_RE = re.compile(r"/ediv/images/sha256/([0-9a-f]{64})")
NAME_HEADER = "HTTP_EDIV_IMAGE_NAME"
DEFAULT_MAX_IMAGE = 8 * 1024**3
MAX_UPLOADS = 4


def is_image_path(path: str) -> bool:
    return path.startswith(PATH_PREFIX)


@dataclass(frozen=True)
class ImageRequest:
    """A request ``check`` accepted: who, what, and under which name."""

    user: str
    method: str
    digest: str  # sha256:<hex>
    name: str
    length: int | None  # Content-Length, when announced


class Upload:
    """One body being written under the store's ``tmp/``, hashed as it comes."""

    def __init__(self, endpoint: ImageEndpoint, store: ImageStore, req: ImageRequest):
        self.endpoint, self.store, self.req = endpoint, store, req
        fd, name = tempfile.mkstemp(dir=store.init().tmp, prefix=".upload-")
        os.fchmod(fd, 0o600)
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)
        self.size += len(data)

    def abort(self) -> None:
        """Nothing kept (in any thread; safe twice)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.file.close()
            self.path.unlink(missing_ok=True)
            self.endpoint.release()

    def finish(self) -> Reply:
        """Verify the digest, then publish (or delete and refuse)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            got = PREFIX + self.hash.hexdigest()
            if got != self.req.digest:
                return _plain(422, "Unprocessable Content",
                                   f"the body's digest is {got}, not {self.req.digest}: "
                                   "nothing stored\n")
            refused = self.endpoint.replaces_local(self.store, self.req)  # again: it took time
            if refused is not None:
                return refused
            m = Manifest(name=self.req.name, digest=got, format=detect_format(self.path),
                         size=0, origin="upload")
            self.store.adopt(self.path, m)
            return _plain(201, "Created", f"{self.req.name} {got} {self.size}\n")
        except (OSError, EdivError) as exc:
            return _plain(500, "Internal Server Error", f"could not store the image: "
                               f"{exc}\n")
        finally:
            self.abort()  # after adopt the file is gone already; otherwise it goes now


class ImageEndpoint:
    def __init__(self, app: WBEMApp, max_image_bytes: int = DEFAULT_MAX_IMAGE,
                 store_root: str | Path | None = None):
        self.app = app
        self.max_image_bytes = max_image_bytes
        self.store_root = store_root
        self._uploads = 0
        self._lock = threading.Lock()

    def store(self) -> ImageStore:
        return ImageStore(self.store_root)  # None: $EDIV_IMAGES at the time of the request

    def release(self) -> None:
        with self._lock:
            self._uploads -= 1

    def check(self, environ: dict) -> Reply | ImageRequest:
        """From the request line and headers alone (in a worker thread: scrypt is slow)."""
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("HEAD", "PUT"):
            return _plain(405, "Method Not Allowed", "images take HEAD or PUT\n",
                               [("Allow", "HEAD, PUT")])
        try:
            user = self.app._authenticate(environ)
        except TooManyFailures as exc:
            return _plain(429, "Too Many Requests", f"{exc}\n",
                               [("Retry-After", str(exc.retry_after))])
        if user is None:
            return _plain(401, "Unauthorized", "authentication required\n",
                               [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        name, role = user
        if role < Role.OPERATOR:
            return _plain(403, "Forbidden", f"{name}: images need the operator role\n")
        m = PATH_RE.fullmatch(environ.get("PATH_INFO", ""))
        if m is None:
            return _plain(404, "Not Found", "images are /ediv/images/sha256/<64 lower-case "
                               "hex digits>\n")
        digest = PREFIX + m.group(1)
        image_name = (environ.get(NAME_HEADER) or f"upload-{m.group(1)[:12]}").strip()
        try:
            check_name(image_name)
        except EdivError as exc:
            return _plain(400, "Bad Request", f"Ediv-Image-Name: {exc}\n")
        try:
            length = int(environ["CONTENT_LENGTH"]) if "CONTENT_LENGTH" in environ else None
        except ValueError:
            return _plain(400, "Bad Request", "Content-Length is not a number\n")
        if length is not None and (length < 0 or length > self.max_image_bytes):
            return too_large(self.max_image_bytes)
        return ImageRequest(name, method, digest, image_name, length)

    @staticmethod
    def replaces_local(store: ImageStore, req: ImageRequest) -> Reply | None:
        """409 when NAME is an image the server's admin built or imported and it would now
        name other bytes: an upload may re-point names uploads made, never those."""
        try:
            old = store.get(req.name)
        except (OSError, ValueError):
            old = None
        if old is not None and old.digest != req.digest and old.origin != "upload":
            return _plain(409, "Conflict", f"{req.name} is an image of the server's "
                               f"store ({old.origin}, {old.digest}); uploads may not replace "
                               "it: use another name\n")
        return None

    def head(self, req: ImageRequest) -> Reply:
        if self.store().blob_path(req.digest).is_file():
            return Reply(200, "OK", [("Content-Type", "application/octet-stream")])
        return Reply(404, "Not Found", [("Content-Type", "application/octet-stream")])

    def begin(self, req: ImageRequest) -> Reply | Upload:
        """A present blob is only named (200); otherwise an Upload to stream the body into."""
        store = self.store()
        refused = self.replaces_local(store, req)
        if refused is not None:
            return refused
        try:
            if store.blob_path(req.digest).is_file():
                m = store.name_digest(req.name, req.digest)
                return _plain(200, "OK", f"{m.name} {m.digest} {m.size} (present)\n")
        except (OSError, EdivError) as exc:
            return _plain(500, "Internal Server Error", f"{exc}\n")
        with self._lock:
            if self._uploads >= MAX_UPLOADS:
                return _plain(503, "Service Unavailable", "too many image uploads at "
                                   "once, retry shortly\n", [("Retry-After", "5")])
            self._uploads += 1
        try:
            return Upload(self, store, req)
        except OSError as exc:
            self.release()
            return _plain(500, "Internal Server Error", f"{exc}\n")


def _plain(status: int, reason: str, text: str,
           headers: list[tuple[str, str]] | None = None) -> Reply:
    """A text reply; a refusal's text also in an ``Ediv-Error`` header (a HEAD answer has
    no body, and the client shows the server's reason)."""
    extra = [("Ediv-Error", " ".join(text.split()))] if status >= 400 else []
    return Reply.plain(status, reason, text, [*(headers or []), *extra])


def too_large(limit: int) -> Reply:
    return _plain(413, "Content Too Large", f"image larger than {limit} bytes "
                       "(max_image_bytes of the server config)\n")

