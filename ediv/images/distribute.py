"""The deploy's image stage: every host gets the images its VMs use, by digest, before it builds.

A scenario names a store image with ``<filesystem type="cow">image:NAME</filesystem>``
(``image:sha256:<hex>``, or at least 6 hex digits of one, names it by digest). Such a
reference is resolved in the *controller's* image store (``$EDIV_IMAGES``, default
``/var/lib/ediv/images``: the images ``ediv image build|import`` made) - never a path the
scenario picks - and pinned: each host's sub-scenario gets the path of that digest's blob in
the host's own image store (cluster.conf ``image_store``, default ``/var/lib/ediv/images``),
so every host runs the same bytes even if the name moves meanwhile. The host's agent then
checks that path like any other ``<filesystem>`` (it must be inside ``vm_image_paths``,
whose default includes ``/var/lib/ediv/images/``).

Per host, in parallel, over the controller's existing SSH connection (``ediv.images.ship``):
what the host's store holds is listed; a digest it lacks is streamed over SFTP (resuming a
partial file an interrupted deploy left), the host computes the sha256 and only a matching
file is installed; a mismatch is refused (``ImageCorrupt``: the deploy fails before any
host builds). A digest the host has is not sent again. Progress goes out as ``host`` events
(``state`` is a readable line; ``image``, ``digest``, ``step``, ``sent``, ``total`` carry the
figures): ``step`` is ``present`` (nothing sent), ``uploading`` (throttled: every 10% or 2 s)
or ``uploaded``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ediv.cluster import Host
from ediv.errors import EdivError
from ediv.images import ship
from ediv.images.digest import hex_of
from ediv.images.store import ImageStore, Manifest

PREFIX = "image:"
Progress = Callable[[dict], None]


@dataclass
class HostImages:
    """What one host needs: digest -> manifest, and the VMs using each."""

    host: Host
    images: dict[str, Manifest] = field(default_factory=dict)
    vms: dict[str, list[str]] = field(default_factory=dict)
    results: list[ship.UploadResult] = field(default_factory=list)


def is_image_ref(path: str | None) -> bool:
    return bool(path) and path.startswith(PREFIX)


def host_blob_path(host: Host, digest: str) -> str:
    return f"{host.image_store.rstrip('/')}/blobs/sha256/{hex_of(digest)}"


def pin(hosts_parts: Iterable[tuple[Host, object]], store: ImageStore) -> list[HostImages]:
    """Resolve every ``image:REF`` of the parts' VMs in ``store`` and rewrite it (in the
    part's sub-scenario) to the path of its blob in the host's store. Returns what each host
    needs; EdivError naming the VMs when a reference is unknown."""
    out: list[HostImages] = []
    missing: list[str] = []
    for host, part in hosts_parts:
        need = HostImages(host)
        for vm in part.scenario.vms:
            fs = vm.filesystem
            if fs is None or not is_image_ref(fs.path):
                continue
            ref = fs.path[len(PREFIX):]
            try:
                m = store.resolve(ref)
            except EdivError as exc:
                missing.append(f"vm {vm.name}: {exc}")
                continue
            if m.format != "raw":
                missing.append(f"vm {vm.name}: image {m.name} is {m.format}; VMs boot raw "
                               "images (ediv image build --format raw)")
                continue
            need.images[m.digest] = m
            need.vms.setdefault(m.digest, []).append(vm.name)
            # a new object: the VMs of all parts may share one (from <vm_defaults>)
            vm.filesystem = dataclasses.replace(fs, path=host_blob_path(host, m.digest))
        out.append(need)
    if missing:
        raise EdivError("images not found in the controller's image store "
                        f"{store.root}:\n  " + "\n  ".join(missing))
    return out


class _Throttle:
    """Upload progress as events: at most every 10% or 2 seconds."""

    def __init__(self, emit: Callable[..., None], m: Manifest):
        self.emit, self.m = emit, m
        self.last_t, self.last_pct = 0.0, -10

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(1, total)
        now = time.monotonic()
        if pct - self.last_pct >= 10 or now - self.last_t >= 2 or done == total:
            self.last_t, self.last_pct = now, pct
            self.emit(self.m, "uploading", f"{pct}% ({done >> 20}/{total >> 20} MiB)",
                      sent=done, total=total)


def _ship_to(conns, need: HostImages, store: ImageStore, emit_for) -> HostImages:
    emit = emit_for(need.host)
    sftp = ship.open_sftp(conns.client(need.host))
    try:
        have = ship.remote_digests(sftp, need.host.image_store)
        for digest, m in need.images.items():
            if digest in have:
                # the host installed it only after checking its digest; a blob is never
                # written in place, so its name still tells its content
                need.results.append(ship.UploadResult(digest, m.size, already_there=True))
                emit(m, "present", "on the host, nothing sent", sent=0, total=m.size)
                continue
            started = time.monotonic()
            r = ship.upload(sftp, store.blob_path(digest), need.host.image_store, digest,
                            manifest=m, progress=_Throttle(emit, m), verify_existing=True)
            need.results.append(r)
            took = max(1e-6, time.monotonic() - started)
            emit(m, "present" if r.already_there else "uploaded",
                 f"{r.sent >> 20} MiB sent"
                 + (f" (resumed at {r.resumed_from >> 20} MiB)" if r.resumed_from else "")
                 + f" in {took:.1f}s, digest verified on the host", sent=r.sent, total=r.size)
    finally:
        sftp.close()
    return need


def ensure_images(conns, hosts_parts: Iterable[tuple[Host, object]], progress: Progress,
                  store: ImageStore | None = None, workers: int = 16) -> list[HostImages]:
    """Pin the parts' ``image:`` references and make every host hold its images (see the
    module docstring). ``hosts_parts``: (Host, Part) pairs, Part as ``ediv.split`` makes
    them. EdivError (``ship.ImageCorrupt`` for a digest mismatch) when a host cannot get
    one; then nothing of the scenario has been built anywhere."""
    store = store or ImageStore()
    needs = pin(hosts_parts, store)
    needs = [n for n in needs if n.images]
    for n in needs:
        for digest in n.images:
            if not store.blob_path(digest).is_file():
                raise EdivError(f"image {n.images[digest].name}: its file "
                                f"{store.blob_path(digest)} is missing from {store.root}")

    def emit_for(host: Host):
        def emit(m: Manifest, step: str, line: str, **figures) -> None:
            progress({"event": "host", "host": host.name,
                      "state": f"image {m.name} {m.short}: {step} {line}",
                      "image": m.name, "digest": m.digest, "step": step, **figures})
        return emit

    if not needs:
        return []
    errors: list[str] = []
    corrupt = False
    done: list[HostImages] = []
    with ThreadPoolExecutor(max_workers=min(workers, len(needs))) as pool:
        futures = [(n, pool.submit(_ship_to, conns, n, store, emit_for)) for n in needs]
        for n, f in futures:
            try:
                done.append(f.result())
            except (EdivError, OSError) as exc:
                corrupt |= isinstance(exc, ship.ImageCorrupt)
                errors.append(f"{n.host.name}: {exc}")
            except Exception as exc:  # paramiko's SSHException and the like
                errors.append(f"{n.host.name}: {type(exc).__name__}: {exc}")
    if errors:
        kind = ship.ImageCorrupt if corrupt else EdivError
        raise kind("image distribution failed, nothing was built:\n  " + "\n  ".join(errors))
    return done
