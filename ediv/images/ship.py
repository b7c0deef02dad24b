"""Shipping images to hosts by digest, over the SSH connection the controller already holds.

The pieces the controller calls (before a deploy, per host, with ``open_sftp(client)`` on
the host's existing SSH connection):

1. ``remote_digests(sftp, store_dir)``: what the host's image store holds;
2. ``to_send(have, need)``: the digests to upload (never one the host has);
3. ``upload(sftp, local, store_dir, digest, ...)``: streams the file over SFTP into the
   host store's ``tmp/<hex>.partial`` (all-zero MiBs are not sent: they stay holes),
   resuming from the size a partial file already has, then has the *host* compute the
   sha256 (``sha256sum`` run over the same SSH transport) and renames the file into
   ``blobs/sha256/<hex>`` only when it matches. A partial file whose content went bad is
   thrown away and sent again once, from the start; a complete transfer that still does
   not match is refused (``ImageCorrupt``) and nothing is installed. A blob already on the
   host is checked the same way before it is trusted.

The host store has the local store's layout (see ``ediv.images.store``), so ``ediv image
list --store DIR`` on the host shows what was shipped. Directories are created 0700 and
files 0600.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ediv.errors import EdivError
from ediv.images.digest import CHUNK, PREFIX, hex_of, normalize
from ediv.images.store import Manifest, check_name

Progress = Callable[[int, int], None]  # (bytes on the host so far, total bytes)
VERIFY_TIMEOUT = 600.0
# paramiko's default 2 MiB channel window stalls a pipelined upload; 64 MiB gave about 1.5x
# the throughput on a testbed host (bench/bench_images.py)
SFTP_WINDOW = 64 << 20


class ImageCorrupt(EdivError):
    """The file on the host does not have the digest it was sent for."""


@dataclass
class UploadResult:
    digest: str
    size: int
    sent: int = 0  # bytes sent by this call (0: the host had it; holes are not sent)
    resumed_from: int = 0  # bytes of a partial file that were kept
    attempts: int = 0  # transfers made (0, 1 or 2)
    already_there: bool = False


def open_sftp(client: paramiko.SSHClient) -> paramiko.SFTPClient:
    """An SFTP session for uploads on an existing connection, with a large window."""
    return paramiko.SFTPClient.from_transport(client.get_transport(), window_size=SFTP_WINDOW)


def to_send(have: Iterable[str], need: Iterable[str]) -> list[str]:
    """The digests of ``need`` that are not in ``have``, once each, in ``need``'s order."""
    present = {normalize(d) for d in have}
    out: list[str] = []
    for d in map(normalize, need):
        if d not in present and d not in out:
            out.append(d)
    return out


def _paths(store_dir: str, digest: str) -> tuple[str, str]:
    h = hex_of(digest)
    return (posixpath.join(store_dir, "blobs", "sha256", h),
            posixpath.join(store_dir, "tmp", f"{h}.partial"))


def _stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """``mkdir -p`` with mode 0700 for what it creates."""
    missing = []
    while path not in ("", "/") and _stat(sftp, path) is None:
        missing.append(path)
        path = posixpath.dirname(path)
    for d in reversed(missing):
        try:
            sftp.mkdir(d, 0o700)
        except OSError:
            if _stat(sftp, d) is None:  # not a lost race with another uploader
                raise
        sftp.chmod(d, 0o700)


def prepare_store(sftp: paramiko.SFTPClient, store_dir: str) -> None:
    if not posixpath.isabs(store_dir):
        raise EdivError(f"host image store {store_dir!r} must be an absolute path")
    for sub in ("blobs/sha256", "manifests", "tmp"):
        _makedirs(sftp, posixpath.join(store_dir, sub))
    sftp.chmod(store_dir, 0o700)


def remote_digests(sftp: paramiko.SFTPClient, store_dir: str) -> set[str]:
    """Digests of the blobs in the host's store (an absent store holds nothing)."""
    try:
        names = sftp.listdir(posixpath.join(store_dir, "blobs", "sha256"))
    except FileNotFoundError:
        return set()
    out = set()
    for n in names:
        try:
            out.add(normalize(n))
        except EdivError:
            continue
    return out


def remote_sha256(sftp: paramiko.SFTPClient, path: str, timeout: float = VERIFY_TIMEOUT) -> str:
    """The host computes the digest of its file (``sha256sum`` over the SFTP session's own
    SSH transport): what counts is what landed on the host's disk."""
    transport = sftp.get_channel().get_transport()
    chan = transport.open_session(timeout=30)
    try:
        chan.settimeout(timeout)
        chan.exec_command(f"sha256sum -b -- {shlex.quote(path)}")
        out = chan.makefile("rb").read().decode(errors="replace")
        err = chan.makefile_stderr("rb").read().decode(errors="replace")
        status = chan.recv_exit_status()
    finally:
        chan.close()
    if status != 0 or not out.strip():
        raise EdivError(f"sha256sum {path} on the host failed ({status}): {err.strip()}")
    return normalize(out.split()[0])


def verify_remote(sftp: paramiko.SFTPClient, store_dir: str, digest: str) -> bool:
    """True when the host's blob of ``digest`` is there and has that digest."""
    final, _ = _paths(store_dir, digest)
    return _stat(sftp, final) is not None and remote_sha256(sftp, final) == normalize(digest)


def _send(sftp: paramiko.SFTPClient, local: Path, remote: str, offset: int, total: int,
          progress: Progress | None) -> int:
    """Write ``local[offset:]`` into ``remote`` from ``offset`` on; returns the bytes sent.

    All-zero MiBs are not sent: the write offset moves past them, so they stay holes on
    the host (raw images are mostly holes) and still read as zeros for the digest.
    """
    sent = 0
    zero = bytes(CHUNK)
    pos = offset
    with open(local, "rb") as src, sftp.open(remote, "r+b" if offset else "wb") as dst:
        dst.chmod(0o600)
        dst.set_pipelined(True)
        src.seek(offset)
        while chunk := src.read(CHUNK):
            if chunk != zero[:len(chunk)]:
                dst.seek(pos)
                dst.write(chunk)
                sent += len(chunk)
            pos += len(chunk)
            if progress:
                progress(pos, total)
        dst.truncate(total)  # a trailing hole still counts in the size
    return sent


def _put_manifest(sftp: paramiko.SFTPClient, store_dir: str, manifest: Manifest) -> None:
    check_name(manifest.name)  # it becomes a file name on the host
    manifest = dataclasses.replace(manifest, origin="upload")
    data = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
    tmp = posixpath.join(store_dir, "tmp", f".m-{manifest.name}-{hex_of(manifest.digest)[:12]}")
    with sftp.open(tmp, "wb") as f:
        f.chmod(0o600)
        f.write(data)
    sftp.posix_rename(tmp, posixpath.join(store_dir, "manifests", f"{manifest.name}.json"))


def upload(sftp: paramiko.SFTPClient, local: str | Path, store_dir: str, digest: str, *,
           manifest: Manifest | None = None, progress: Progress | None = None,
           verify_existing: bool = True) -> UploadResult:
    """Make the host's store hold ``local`` under ``digest`` (see the module docstring).

    ``manifest`` (its digest must be ``digest``) is written beside the blob so the host's
    store can name the image. ``verify_existing=False`` trusts a blob of the right size that
    is already there without hashing it on the host again.
    """
    digest = normalize(digest)
    local = Path(local)
    if manifest is not None and normalize(manifest.digest) != digest:
        raise EdivError(f"manifest of {manifest.name} is for {manifest.digest}, not {digest}")
    total = local.stat().st_size
    final, partial = _paths(store_dir, digest)
    prepare_store(sftp, store_dir)
    result = UploadResult(digest=digest, size=total)

    st = _stat(sftp, final)
    if st is not None:
        if stat.S_ISREG(st.st_mode or 0) and st.st_size == total and (
                not verify_existing or remote_sha256(sftp, final) == digest):
            result.already_there = True
            if manifest is not None:
                _put_manifest(sftp, store_dir, manifest)
            return result
        sftp.remove(final)  # damaged on the host: replace it

    while True:
        pst = _stat(sftp, partial)
        offset = pst.st_size if pst is not None else 0
        if offset > total:
            sftp.remove(partial)
            offset = 0
        if result.attempts == 0:
            result.resumed_from = offset
        result.attempts += 1
        result.sent += _send(sftp, local, partial, offset, total, progress)
        got = remote_sha256(sftp, partial)
        if got == digest:
            break
        sftp.remove(partial)
        if offset == 0 or result.attempts > 1:
            raise ImageCorrupt(f"upload of {local.name} refused: the host computed {got}, "
                               f"not {digest}; nothing was installed")
        # the kept partial file was bad: send the whole file once more
    sftp.posix_rename(partial, final)
    sftp.chmod(final, 0o600)
    if manifest is not None:
        _put_manifest(sftp, store_dir, manifest)
    return result


def short(digest: str) -> str:
    return normalize(digest)[len(PREFIX):len(PREFIX) + 12]
