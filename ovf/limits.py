"""Sanity caps on what a package may ask for: disk and decompressed sizes, memory, CPUs, counts.

A hostile or corrupt package can claim a 1 TiB sparse disk, a gzip bomb, ``byte * 2^80`` of
memory or 200 000 NICs; each of these is refused with one line naming the cap and how to
raise it. The caps are one ``Limits`` value: the defaults below, changed with
``$EDIV_OVF_LIMITS`` (``disk_bytes=128G,memory_mb=65536``) or the CLI's ``--limit KEY=VALUE``
(docs/ovf.md lists the keys).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from ediv.errors import InputError

LIMITS_VAR = "EDIV_OVF_LIMITS"
GIB = 2**30
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.I)
_FACTORS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Limits:
    """Caps; keys (CLI and environment) are the field names without the ``max_`` prefix."""

    max_disk_bytes: int = 256 * GIB  # virtual size of one disk image
    max_expanded_bytes: int = 256 * GIB  # one decompressed (gzip) file
    max_ratio: int = 200  # decompressed / compressed, beyond ``ratio_floor``
    ratio_floor: int = 64 * 2**20  # output below this is never refused for its ratio
    max_memory_mb: int = 1024 * 1024  # 1 TiB
    max_cpus: int = 1024
    max_nics: int = 256  # per system
    max_items: int = 4096  # hardware items per system
    max_systems: int = 1024
    max_files: int = 4096  # References/File entries
    max_disks: int = 1024  # DiskSection/Disk entries
    max_members: int = 10_000  # files of an OVA or a package folder
    max_descriptor_bytes: int = 16 * 2**20  # the .ovf (real ones are under 1 MiB)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name.removeprefix("max_") for f in dataclasses.fields(cls)]

    def with_settings(self, text: str, where: str = "--limit") -> Limits:
        """These limits with ``KEY=VALUE[,KEY=VALUE...]`` applied (sizes take K/M/G/T)."""
        changes: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().lower().replace("-", "_")
            name = key if key == "ratio_floor" else f"max_{key}"
            if not sep or name not in {f.name for f in dataclasses.fields(self)}:
                raise InputError(f"{part!r}: expected KEY=VALUE with KEY one of "
                                 f"{', '.join(self.keys())}", where)
            m = _SIZE.match(value)
            if m is None or int(m.group(1)) <= 0:
                raise InputError(f"{part!r}: the value must be a positive number (sizes may "
                                 "end in K, M, G or T)", where)
            changes[name] = int(m.group(1)) * _FACTORS[m.group(2).upper()]
        return dataclasses.replace(self, **changes)


_active: Limits | None = None


def active() -> Limits:
    """The limits in force: set by ``use`` (the CLI), else the defaults with
    ``$EDIV_OVF_LIMITS`` applied."""
    if _active is not None:
        return _active
    return Limits().with_settings(os.environ.get(LIMITS_VAR, ""), LIMITS_VAR)


def use(limits: Limits | None) -> None:
    """Make ``limits`` the process's limits (None: back to the environment's)."""
    global _active
    _active = limits


def refuse(what: str, value: int | str, cap: int, key: str, source: str) -> InputError:
    return InputError(f"{what} {value} exceeds the limit of {cap} (raise it with "
                      f"--limit {key}=N or {LIMITS_VAR}={key}=N)", source)


def check_count(what: str, count: int, cap: int, key: str, source: str) -> None:
    if count > cap:
        raise refuse(f"{what}:", count, cap, key, source)


def check_envelope(env, source: str, limits: Limits | None = None) -> None:
    """Counts of the descriptor (systems, files, disks, items and NICs per system) and the
    memory and CPUs every item asks for, whatever its deployment option."""
    from . import envelope as m
    from .units import byte_multiplier

    lim = limits or active()
    check_count("File entries", len(env.files), lim.max_files, "files", source)
    check_count("Disk entries", len(env.disks), lim.max_disks, "disks", source)
    systems = env.systems()
    check_count("virtual systems", len(systems), lim.max_systems, "systems", source)
    for vs in systems:
        items = [i for hw in vs.hardware for i in hw.items]
        check_count(f"system {vs.id!r}: hardware items", len(items), lim.max_items, "items",
                    source)
        nics = sum(1 for i in items if i.resource_type == m.RT_ETHERNET)
        check_count(f"system {vs.id!r}: NICs", nics, lim.max_nics, "nics", source)
        for item in items:
            if item.virtual_quantity is None:
                continue
            if item.resource_type == m.RT_MEMORY:
                factor = byte_multiplier(item.allocation_units or "byte * 2^20")
                if factor is not None:
                    check_memory(vs.id, item.virtual_quantity * factor // 2**20, source, lim)
            elif item.resource_type == m.RT_PROCESSOR:
                check_cpus(vs.id, item.virtual_quantity, source, lim)


def check_memory(system: str, mem_mb: int | None, source: str,
                 limits: Limits | None = None) -> None:
    lim = limits or active()
    if mem_mb is not None and mem_mb > lim.max_memory_mb:
        raise refuse(f"system {system!r}: memory of", f"{mem_mb} MB", lim.max_memory_mb,
                     "memory_mb", source)


def check_cpus(system: str, cpus: int | None, source: str, limits: Limits | None = None) -> None:
    lim = limits or active()
    if cpus is not None and cpus > lim.max_cpus:
        raise refuse(f"system {system!r}: CPU count", cpus, lim.max_cpus, "cpus", source)
