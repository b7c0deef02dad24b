"""The files of a defined scenario on the server: where a DefineSystem's Archive is
installed, and the OVF environment documents its VMs get at boot.

The front end (the WBEM provider) only hands over what the client sent: the Archive unpacked
and checked in a staging directory, the environment bytes. Placing, replacing and removing
them is here, so every file the engine keeps for a scenario is written in one place (private:
0700 dirs, 0600 files, ``ediv.private``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ediv.ovf.environment import ENV_FILE
from ediv.ovf.importer import ENV_DIR_SUFFIX
from ediv.private import private_dir, write_private


def install_tree(staging: Path, final: Path) -> str:
    """Move the checked ``staging`` tree to ``final`` (the scenario's own directory; one left
    by a scenario the store no longer has is replaced); returns ``final``."""
    if final.exists():
        shutil.rmtree(final)
    private_dir(final.parent)
    staging.rename(final)
    return str(final)


def remove_tree(scenario_dir: Path, basedir: str | None) -> None:
    """Remove a scenario's own directory (only when it is the one its files live in)."""
    if basedir and Path(basedir) == scenario_dir and scenario_dir.exists():
        shutil.rmtree(scenario_dir, ignore_errors=True)


def environment_dir(basedir: str | Path, vm: str) -> Path:
    """Where VM ``vm``'s OVF environment document lives beside the scenario."""
    return Path(basedir) / f"{vm}{ENV_DIR_SUFFIX}"


def write_environment(basedir: str | Path, vm: str, document: bytes) -> Path:
    """Keep ``document`` as ``VM.ovfenv/ovf-env.xml``; returns its directory (the filetree
    source that puts it in the guest as ``/ovf-env.xml``)."""
    where = private_dir(environment_dir(basedir, vm))
    write_private(where / ENV_FILE, document)
    return where


def remove_environment(basedir: str | Path | None, vm: str) -> None:
    if basedir:
        shutil.rmtree(environment_dir(basedir, vm), ignore_errors=True)
