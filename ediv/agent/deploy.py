"""``deploy``: bundle in, scenario running out; on any failure everything is rolled back."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

from ediv.agent import network
from ediv.agent.bundle import stage_bundle
from ediv.agent.config import AgentConfig
from ediv.agent.context import by_driver, drivers_for, layout_from_bundle
from ediv.agent.drivers.base import AgentContext
from ediv.agent.events import Emitter
from ediv.agent.execute import inside_files, run_sequence
from ediv.agent.interrupts import held
from ediv.agent.journal import ScenarioDir
from ediv.agent.layout import VmLayout
from ediv.agent.release import release
from ediv.agent.users import MAX_KEY_FILE, key_lines, setup_script
from ediv.errors import Diagnostic, EdivError, InputError

ON_BOOT = "on_boot"
UPLOAD_LIMIT = 8 << 30  # bytes a received bundle may have


@contextlib.contextmanager
def _no_empty_dir(sdir: ScenarioDir):
    """A verb stopped early (a signal, e.g. the heartbeat's SIGTERM when the controller is
    gone, may come while the lock is being taken) leaves no scenario dir holding only its
    lock; one another agent holds is left to it. The clean-up runs inside ``held``: a
    signal arriving during it (the heartbeat's SIGTERM often comes just as a late deploy
    is refused) is raised once the dir is gone, not half way."""
    try:
        yield
    except BaseException:
        with held():
            _remove_if_only_lock(sdir)
        raise


def _remove_if_only_lock(sdir: ScenarioDir) -> None:
    """Remove the scenario dir if it holds no more than a lock file no one holds. Never
    creates it (taking ``sdir.lock()`` here did, for a dir already removed)."""
    try:
        fd = os.open(sdir.lock_path, os.O_RDWR)
    except FileNotFoundError:  # no lock file (stopped before it was made): an empty dir?
        with contextlib.suppress(OSError):
            sdir.root.rmdir()
        return
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if sdir.only_lock_left():
            shutil.rmtree(sdir.root, ignore_errors=True)
    except OSError:  # another agent holds it: the dir is its own
        return
    finally:
        os.close(fd)


def receive(state_root: Path, key: str, stream: IO[bytes]) -> dict[str, Any]:
    """Store the bundle on ``stream`` as ``<key>/upload.tar.gz`` (0600 in the 0700 state
    dir), under the scenario's lock, for a following ``deploy --key``."""
    sdir = ScenarioDir(state_root, key)
    with _no_empty_dir(sdir), sdir.lock():
        if sdir.entries() or sdir.state_path.exists():
            raise EdivError(f"scenario key {key} is already deployed on this host; "
                            "release it first")
        part = sdir.root / (sdir.upload_path.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > UPLOAD_LIMIT:
                        raise InputError(f"bundle larger than {UPLOAD_LIMIT} bytes", "bundle")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, sdir.upload_path)
        except BaseException:
            part.unlink(missing_ok=True)
            if sdir.only_lock_left():
                shutil.rmtree(sdir.root, ignore_errors=True)
            raise
    return {"key": key, "bytes": size}


def deploy_received(state_root: Path, key: str, config: AgentConfig, emitter: Emitter, *,
                    keep_on_error: bool = False) -> dict[str, Any]:
    """The controller's deploy: take the scenario's lock first, then deploy the bundle that
    ``receive`` stored. No bundle means a release came first (it removes the upload): the
    deploy is refused and leaves nothing, so a late agent cannot build an orphan."""
    sdir = ScenarioDir(state_root, key)
    with _no_empty_dir(sdir), sdir.lock():
        if not sdir.upload_path.is_file():
            if sdir.only_lock_left():
                shutil.rmtree(sdir.root, ignore_errors=True)
            raise EdivError(f"no bundle received for scenario key {key} (released meanwhile, "
                            "or never sent): nothing deployed")
        result = deploy(state_root, sdir.upload_path, config, emitter,
                        keep_on_error=keep_on_error, expect_key=key)
        sdir.upload_path.unlink(missing_ok=True)  # extracted in bundle/: the tar goes
        return result


def deploy(state_root: Path, source: IO[bytes] | str | Path, config: AgentConfig,
           emitter: Emitter, *, keep_on_error: bool = False,
           expect_key: str | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    # under deploy --key the lock is held: extract inside the scenario dir, so that a release
    # after a crash removes a half-extracted bundle with everything else
    staging = stage_bundle(source, ScenarioDir(state_root, expect_key).root if expect_key
                           else state_root)
    try:
        layout = layout_from_bundle(staging)
        if expect_key is not None and layout.key != expect_key:
            raise InputError(f"bundle is for key {layout.key}, not {expect_key}", "bundle")
        sdir = ScenarioDir(state_root, layout.key)
        if sdir.exists() and (sdir.entries() or sdir.state_path.exists()):
            raise EdivError(f"scenario {layout.scenario} (key {layout.key}) is already deployed "
                            "on this host; release it first")
        drivers = drivers_for(layout)
        groups = by_driver(layout)
        ctx = AgentContext(sdir, config, emitter, layout, staging / "files")
        problems = network.preflight(layout, state_root, allow_external=config.allow_external,
                                     allow_host_exec=config.allow_host_exec,
                                     allow_hostif=config.allow_hostif)
        for name, drv in drivers.items():
            problems += drv.check(ctx, groups[name])
        if problems:
            raise InputError([Diagnostic("deploy", 0, p) for p in problems])
        lock = contextlib.ExitStack()
        lock.enter_context(sdir.lock(blocking=False))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        with lock:
            os.replace(staging, sdir.bundle_dir)
            ctx.files_dir = sdir.bundle_dir / "files"
            sdir.write_json(sdir.meta_path, _meta(layout))
            network.build_networks(ctx)
            network.configure_host(ctx)
            for name, drv in drivers.items():
                drv.prepare(ctx, groups[name])
            for name, drv in drivers.items():
                drv.start(ctx, groups[name])
            for name, drv in drivers.items():
                drv.wait_ready(ctx, groups[name], config.boot_timeout)
            network.shape_and_capture(ctx)
            set_up_users(ctx, drivers)
            state = _state(ctx, drivers)
            sdir.write_json(sdir.state_path, state)
        boot = run_sequence(ctx, drivers, ON_BOOT, quiet_if_empty=True)
    except BaseException as e:
        if keep_on_error:
            raise
        emitter.emit("rollback", message=str(e).splitlines()[0] if str(e) else type(e).__name__)
        try:
            # release kills every VM first: cleanup only reaps (it waits up to 5 s for each
            # process still running, minutes for a rollback of 50 booted UML VMs)
            release(state_root, layout.key, emitter)
            for drv in drivers.values():
                drv.cleanup(ctx)
        except Exception as e2:  # report both: the cause and the failed rollback
            raise EdivError(f"{e}\nrollback failed too: {e2}") from e
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"key": layout.key, "scenario": layout.scenario,
            "seconds": round(time.monotonic() - t0, 3),
            "vms": [{"name": n, **v} for n, v in state["vms"].items()],
            "nets": [{"name": n.name, "bridge": n.bridge,
                      **({"segment": n.segment.kind, "id": n.segment.id} if n.segment else {})}
                     for n in layout.nets.values()],
            **({"on_boot": boot["results"]} if boot["results"] else {})}


def set_up_users(ctx: AgentContext, drivers: dict[str, Any]) -> None:
    """Every VM's <user> accounts, SSH keys and host mapping (ediv.agent.users), in
    parallel, before on_boot runs."""
    def keys(ref: str) -> list[str]:
        path = inside_files(ctx.files_dir, ref, "ssh_key")
        if not path.is_file() or path.stat().st_size > MAX_KEY_FILE:
            raise InputError(f"ssh_key {ref}: not a file of at most {MAX_KEY_FILE} bytes "
                             "in the bundle", "ssh_key")
        return key_lines(path.read_text(errors="replace"), f"ssh_key {ref}")

    layout = ctx.layout
    scripts = [(v, setup_script(v.vm.users, keys=keys, root_keys=layout.root_keys,
                                hosts=layout.host_map)) for v in layout.vms]
    todo = [(v, script) for v, script in scripts if script]

    def one(item: tuple[VmLayout, str]) -> None:
        v, script = item
        res = drivers[v.driver].exec(ctx, v, [script])[0]
        if res.exit_code != 0:
            raise EdivError(f"vm {v.name}: setting up users failed ({res.exit_code}): "
                            f"{res.output.strip()[-300:]}")
        ctx.emitter.emit("users", vm=v.name, users=[u.username for u in v.vm.users])

    list(ctx.map(one, todo))


def _meta(layout) -> dict[str, Any]:
    return {"scenario": layout.scenario, "key": layout.key, "started": time.time(),
            "segments": [{"net": n.name, "kind": n.segment.kind, "id": n.segment.id}
                         for n in layout.nets.values() if n.segment]}


def vm_state_record(ctx: AgentContext, drivers: dict[str, Any], v: VmLayout, state: str
                    ) -> dict[str, Any]:
    """One VM's entry of state.json."""
    info = drivers[v.driver].runtime_info(ctx, v)
    return {"type": v.driver, "state": state, "runtime": ctx.runtime.get(v.name, {}),
            **{k: val for k, val in info.items() if k not in ("pid", "start")},
            "pid": info.get("pid")}


def _state(ctx: AgentContext, drivers: dict[str, Any]) -> dict[str, Any]:
    vms = {v.name: vm_state_record(ctx, drivers, v, "running") for v in ctx.layout.vms}
    return {"scenario": ctx.layout.scenario, "key": ctx.layout.key, "deployed": time.time(),
            "vms": vms}
