"""The image store: image files named by their sha256, plus one small JSON manifest per name.

Layout under the store root (``/var/lib/ediv/images``, ``$EDIV_IMAGES`` or ``--store``)::

    blobs/sha256/<hex>     the image file itself (0600); its name is its digest
    manifests/<name>.json  name, digest, format, size, suite, packages, created, origin (0600)
    tmp/                   files being written (same filesystem, so a rename publishes them)
    .lock                  flock taken while manifests and blobs are changed

Every file is written under ``tmp/`` and renamed into place, so a reader (or a concurrent
``ediv image`` run) sees either the old file or the complete new one, never half of it.
Directories are 0700 and files 0600: images may hold a lab's configuration and keys.
Several names may point at one digest; a blob goes when the last name using it goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ediv.errors import EdivError
from ediv.images.digest import CHUNK, PREFIX, hex_of, normalize

DEFAULT_STORE = "/var/lib/ediv/images"
ENV_VAR = "EDIV_IMAGES"
FORMATS = ("raw", "qcow2")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_DIGEST_PREFIX = 6
QCOW2_MAGIC = b"QFI\xfb"


class ImageNotFound(EdivError):
    pass


@dataclass
class Manifest:
    name: str
    digest: str
    format: str
    size: int  # bytes of the image file (its apparent size; raw images are stored sparse)
    suite: str | None = None
    packages: list[str] = field(default_factory=list)
    created: str = ""
    origin: str = "import"  # build | import | upload
    extra: dict = field(default_factory=dict)  # build parameters: fs_size, variant, sources

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    @property
    def short(self) -> str:
        return self.digest[len(PREFIX):len(PREFIX) + 12]


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise EdivError(f"bad image name {name!r}: 1-64 of letters, digits, '.', '_', '-', "
                        "starting with a letter or digit")
    return name


def default_root() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_STORE)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def detect_format(path: str | Path) -> str:
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_private(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``path`` (0600) via a temporary file in ``tmp_dir`` and a rename."""
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".w-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def copy_hashing(src: str | Path, dst, progress: Callable[[int], None] | None = None) -> str:
    """Copy ``src`` into the open binary file ``dst``, keeping holes (all-zero chunks become
    holes), and return its digest: one read of the source for both jobs."""
    h = hashlib.sha256()
    done = 0
    zero = bytes(CHUNK)
    with open(src, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if chunk == zero[:len(chunk)]:
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    dst.truncate(done)  # a trailing hole still counts in the size
    return PREFIX + h.hexdigest()


class ImageStore:
    """One image store directory; safe to use from several processes at once."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()

    # -- paths ---------------------------------------------------------------------------
    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def path(self, ref: str) -> Path:
        """The image file of a name or digest (what a ``<filesystem>`` element points at)."""
        return self.blob_path(self.resolve(ref).digest)

    def init(self) -> ImageStore:
        for d in (self.root, self.root / "blobs", self.blobs, self.manifests, self.tmp):
            _private_dir(d)
        return self

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.init()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def staging_dir(self, prefix: str = "build-") -> Path:
        """A fresh private directory under ``tmp/`` (same filesystem as the blobs)."""
        self.init()
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[Manifest]:
        if not self.manifests.is_dir():
            return []
        out = []
        for p in sorted(self.manifests.glob("*.json")):
            try:
                out.append(Manifest.from_json(json.loads(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue  # a foreign or damaged file is not an image
        return out

    def digests(self) -> set[str]:
        """Digests of the blobs present (what a host reports it has)."""
        if not self.blobs.is_dir():
            return set()
        return {PREFIX + p.name for p in self.blobs.iterdir()
                if re.fullmatch(r"[0-9a-f]{64}", p.name)}

    def get(self, name: str) -> Manifest | None:
        p = self.manifests / f"{check_name(name)}.json"
        try:
            return Manifest.from_json(json.loads(p.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def matching(self, ref: str) -> list[Manifest]:
        """Manifests a reference names: an image name, else a digest (``sha256:`` optional,
        at least 6 hex digits of its start)."""
        if NAME_RE.fullmatch(ref):
            m = self.get(ref)
            if m is not None:
                return [m]
        text = ref.lower().removeprefix(PREFIX)
        if len(text) < MIN_DIGEST_PREFIX or not re.fullmatch(r"[0-9a-f]+", text):
            return []
        found = [m for m in self.list() if m.digest[len(PREFIX):].startswith(text)]
        if len({m.digest for m in found}) > 1:
            raise EdivError(f"{ref!r} matches more than one image digest; give more digits")
        return found

    def resolve(self, ref: str) -> Manifest:
        found = self.matching(ref)
        if not found:
            raise ImageNotFound(f"no image {ref!r} in {self.root}")
        return found[0]

    def verify(self, ref: str) -> bool:
        """True when the image file still has the digest its manifest records."""
        from ediv.images.digest import file_digest

        m = self.resolve(ref)
        try:
            return file_digest(self.blob_path(m.digest)) == m.digest
        except FileNotFoundError:
            return False

    # -- writing -------------------------------------------------------------------------
    def add(self, src: str | Path, manifest: Manifest, *, move: bool = False,
            progress: Callable[[int], None] | None = None) -> Manifest:
        """Store the file ``src`` under ``manifest.name``; digest, size and created are filled
        in here. ``move=True`` renames ``src`` (it must be in this store's ``tmp/``) instead of
        copying it; either way the blob appears under its digest only when complete."""
        check_name(manifest.name)
        if manifest.format not in FORMATS:
            raise EdivError(f"unknown image format {manifest.format!r} (raw or qcow2)")
        self.init()
        src = Path(src)
        if move:
            from ediv.images.digest import file_digest

            if self.tmp.resolve() not in src.resolve().parents:
                raise EdivError(f"{src} is not inside {self.tmp}")
            digest = file_digest(src, progress)
            os.chmod(src, 0o600)
            staged = src
        else:
            fd, tmpname = tempfile.mkstemp(dir=self.tmp, prefix=".import-")
            staged = Path(tmpname)
            try:
                with os.fdopen(fd, "wb") as f:
                    os.fchmod(f.fileno(), 0o600)
                    digest = copy_hashing(src, f, progress)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
        manifest.digest = digest
        manifest.size = staged.stat().st_size
        manifest.created = manifest.created or now_utc()
        return self._publish(staged, manifest)

    def adopt(self, staged: str | Path, manifest: Manifest) -> Manifest:
        """Publish ``staged`` (a file in this store's ``tmp/`` whose digest the caller has
        already computed while writing it, in ``manifest.digest``) without reading it again:
        an upload is hashed as it arrives, and a multi-GB image is not read twice."""
        check_name(manifest.name)
        if manifest.format not in FORMATS:
            raise EdivError(f"unknown image format {manifest.format!r} (raw or qcow2)")
        staged = Path(staged)
        if self.tmp.resolve() not in staged.resolve().parents:
            raise EdivError(f"{staged} is not inside {self.tmp}")
        manifest.digest = normalize(manifest.digest)
        os.chmod(staged, 0o600)
        manifest.size = staged.stat().st_size
        manifest.created = manifest.created or now_utc()
        return self._publish(staged, manifest)

    def name_digest(self, name: str, digest: str, *, origin: str = "upload") -> Manifest:
        """Give the stored blob ``digest`` (one more) name; ImageNotFound when absent."""
        digest = normalize(digest)
        with self.locked():
            blob = self.blob_path(digest)
            if not blob.is_file():
                raise ImageNotFound(f"no image {digest} in {self.root}")
            m = Manifest(name=check_name(name), digest=digest, format=detect_format(blob),
                         size=blob.stat().st_size, created=now_utc(), origin=origin)
            old = self.get(name)
            data = (json.dumps(m.to_json(), indent=2, sort_keys=True) + "\n").encode()
            write_private(self.manifests / f"{name}.json", data, self.tmp)
            if old is not None and old.digest != digest:
                self._collect(old.digest)
        return m

    def _publish(self, staged: Path, manifest: Manifest) -> Manifest:
        data = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
        with self.locked():
            blob = self.blob_path(manifest.digest)
            if blob.exists():
                staged.unlink(missing_ok=True)  # the same content is already stored
            else:
                os.replace(staged, blob)
            old = self.get(manifest.name)
            write_private(self.manifests / f"{manifest.name}.json", data, self.tmp)
            if old is not None and old.digest != manifest.digest:
                self._collect(old.digest)
        return manifest

    def remove(self, ref: str) -> list[Manifest]:
        """Remove the named image, or every name of a digest; the blob goes when unused."""
        with self.locked():
            found = self.matching(ref)
            if not found:
                raise ImageNotFound(f"no image {ref!r} in {self.root}")
            for m in found:
                (self.manifests / f"{m.name}.json").unlink(missing_ok=True)
            for digest in {m.digest for m in found}:
                self._collect(digest)
        return found

    def _collect(self, digest: str) -> None:
        """Delete the blob of ``digest`` when no manifest uses it (lock held)."""
        if not any(m.digest == digest for m in self.list()):
            self.blob_path(digest).unlink(missing_ok=True)

    def import_file(self, path: str | Path, name: str, *, fmt: str | None = None,
                    suite: str | None = None, packages: list[str] | None = None,
                    progress: Callable[[int], None] | None = None) -> Manifest:
        """Copy an existing image file into the store (the file itself is only read)."""
        path = Path(path)
        if not path.is_file():
            raise EdivError(f"{path}: not a file")
        detected = detect_format(path)
        if fmt and fmt != detected:
            raise EdivError(f"{path} is a {detected} image, not {fmt}")
        m = Manifest(name=check_name(name), digest="", format=detected, size=0, suite=suite,
                     packages=list(packages or []), origin="import")
        return self.add(path, m, progress=progress)
