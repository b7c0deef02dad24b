"""Safe extraction of the Archive of an EDIV_ScenarioSettingData (base64 of a tar.gz).

Only regular files and directories are taken; a member is refused (and nothing is kept) when
its name is absolute, has a ``..`` component, is a link or a device, or when the archive
exceeds the size or member limits (also when decompressed: a gzip bomb stops at the limit).
"""

from __future__ import annotations

import base64
import binascii
import io
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pywbem import CIM_ERR_INVALID_PARAMETER, CIMError

RESERVED_PREFIX = ".ediv-"


@dataclass(frozen=True)
class Limits:
    encoded_bytes: int = 64 * 2**20  # base64 text
    total_bytes: int = 256 * 2**20  # all members, uncompressed
    members: int = 10000


def _bad(message: str) -> CIMError:
    return CIMError(CIM_ERR_INVALID_PARAMETER, f"Archive: {message}")


def safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")):
        raise _bad(f"member {name!r} has an absolute name")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise _bad(f"member {name!r} has an empty name")
    if any(p == ".." for p in parts) or any("\\" in p or "\0" in p for p in parts):
        raise _bad(f"member {name!r} leaves the archive's directory")
    if parts[0].startswith(RESERVED_PREFIX):
        raise _bad(f"member {name!r}: names starting with {RESERVED_PREFIX} are reserved")
    return PurePosixPath(*parts)


def extract(encoded: str, dest: Path, limits: Limits = Limits()) -> list[str]:
    """Decode and extract into ``dest`` (created; removed again on any error).
    Returns the member names extracted."""
    if len(encoded) > limits.encoded_bytes:
        raise _bad(f"larger than {limits.encoded_bytes} bytes of base64")
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _bad("is not valid base64") from None
    dest.mkdir(parents=True, exist_ok=False)
    try:
        return _extract(data, dest, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(data: bytes, dest: Path, limits: Limits) -> list[str]:
    names: list[str] = []
    total = 0
    root = dest.resolve()
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad(f"is not a tar.gz archive ({exc})") from None
    with tar:
        try:
            for count, member in enumerate(tar, start=1):
                if count > limits.members:
                    raise _bad(f"has more than {limits.members} members")
                rel = safe_name(member.name)
                target = (root / rel).resolve()
                if root not in target.parents:
                    raise _bad(f"member {member.name!r} leaves the archive's directory")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True, mode=0o700)
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    raise _bad(f"member {member.name!r} is {kind}")
                total += member.size
                if total > limits.total_bytes:
                    raise _bad(f"unpacks to more than {limits.total_bytes} bytes")
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    raise _bad(f"member {member.name!r} appears twice")
                src = tar.extractfile(member)
                with src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                target.chmod(0o700 if member.mode & 0o111 else 0o600)  # private, as specs
                names.append(str(rel))
        except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
            raise _bad(f"is damaged or cannot be extracted ({exc})") from None
    return names
