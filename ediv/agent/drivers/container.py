"""Container VMs: a user namespace per scenario, and network, mount, PID, UTS and IPC
namespaces per VM, over an overlay root. What a VM can reach is in docs/threat-model.md.

Per VM, in order (measured: everything a network lab does works, see tests/agent):
- a named network namespace ``ediv-<key>-<n>`` created *inside the scenario's user
  namespace* (``confine.create_netns``: VM root = host uid ``id_base(key)``, 65,536 ids;
  one user namespace for every VM of a verb on the host, held by ``nsholder.py``),
  bind-mounted under ``/run/netns`` so that host root (privileged over it) creates links in
  it and configures it from the init user namespace, while VM root holds CAP_NET_ADMIN
  and CAP_NET_RAW over it and over nothing of the host's: addresses, routes, forwarding,
  ping and packet capture work in the VM; host sysctls, modules, devices, clocks do not;
- one veth pair per interface (``eth<id>`` inside, host end on the net's bridge);
- ``forker.py`` (one process for all VMs of a verb, see there, then their inits' parent)
  sets the VM's addresses and routes over rtnetlink inside the netns (``rtnl.py``), then, like
  ``nsenter --net=… unshare --fork --pid --mount --propagation private``, forks the init,
  PID 1 (host root, but in mount and PID namespaces no VM process can change), which takes
  its own mount namespace and runs ``cinit.boot``: it mounts the overlay (lower: the
  host's ``/``, a configured rootfs, the VM's own ``<filesystem>`` directory, or its
  ``<filesystem>`` image file, loop-mounted read-only once per host and shared by every VM
  using it (``imagemount``); all but the host's ``/`` id-mapped; upper and work in the
  VM's state dir) with proc, sysfs and a private minimal /dev, pivots into it (the host's
  root is detached: no chroot escape reaches it), enters the user namespace, creates its
  UTS/IPC namespaces, drops unneeded capabilities from the bounding set and becomes the
  shell loop.
- over the host's ``/`` (not id-mapped) the VM is an unprivileged user for host files:
  it reads what every host user may read (not /etc/shadow, not 0600 files, not /root);
  its own are the root directory, /etc, /opt, /srv, /mnt, /media, /usr/local and the
  /var directories below, where it adds, replaces and removes entries (not edit host files
  in place), plus the filetree destinations; /root, /home, /tmp, /var/tmp and /run are empty
  and its own; ediv's state, keys and server files and the agent's state dir are hidden;
  SSH host keys are whited out. Mounts cannot be undone from inside (the mount namespace
  belongs to the init user namespace).
Exec and file copies enter the VM with ``center.py`` (every namespace of its init, the
user namespace last, then the bounding set reduced: entering a user namespace resets it,
so ``setpriv`` before ``nsenter`` would not hold), consoles with ``nsenter -t PID -U …``:
always as VM root inside the user namespace, never as host root, never host binaries
running on VM-controlled files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ediv.agent import commands as C
from ediv.agent import interrupts, naming
from ediv.agent.config import DEFAULT_HIDDEN_PATHS
from ediv.agent.drivers import center, cinit, confine, forker, imagemount
from ediv.agent.drivers.base import AgentContext, ExecResult, ProcessOwner, vm_running
from ediv.agent.layout import VmLayout
from ediv.agent.proc import MARKER_VAR, VM_VAR, alive, base_env, run, start_time
from ediv.errors import EdivError

NSENTER_ALL = ["-U", "-m", "-u", "-n", "-p", "-i", "-r", "-w"]

# over the host's /: directories VM root owns (merged with the host's), directories it owns
# empty (opaque), files it does not see (see the module docstring)
OWNED_DIRS = ("/etc", "/opt", "/srv", "/mnt", "/media", "/usr/local", "/var/lib", "/var/log",
              "/var/cache", "/var/spool", "/var/opt", "/var/local")
PRIVATE_DIRS = ("/root", "/home", "/tmp", "/var/tmp", "/run")
WHITEOUTS = ("/etc/ssh/ssh_host_*key*", "/etc/shadow", "/etc/shadow-", "/etc/gshadow",
             "/etc/gshadow-")
COPIES = ("/etc/passwd", "/etc/group", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
          "/etc/motd")
_UNSAFE_PATH_CHARS = (",", ":", "\\", "\n")
_TMPFS_SIZE_RE = re.compile(r"[1-9][0-9]*[kKmMgG%]?")


def _answer(p: subprocess.Popen[bytes], data: bytes, timeout: float) -> bytes:
    """Send ``data`` to ``p`` and read its stdout to EOF (not to its exit) within
    ``timeout`` seconds, else ``subprocess.TimeoutExpired``."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(BrokenPipeError):
        p.stdin.write(data)
    with contextlib.suppress(BrokenPipeError):
        p.stdin.close()
    fd, chunks = p.stdout.fileno(), []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise subprocess.TimeoutExpired(p.args, timeout)
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        p.stdout.close()


class ContainerDriver(ProcessOwner):
    """Container VMs: per VM a net, mount, PID, UTS and IPC namespace in the scenario's user
    namespace, an overlay root over the host's ``/``, a directory or a shared read-only image
    mount, and ``cinit.py`` as PID 1 (docs/threat-model.md)."""

    name = "container"

    def __init__(self) -> None:
        super().__init__()
        self._masked: set[str] = set()  # scenario keys whose mask layer is in place

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _fs_path(ctx: AgentContext, vm: VmLayout) -> str:
        fs = vm.vm.filesystem
        return confine.fs_path(ctx.files_dir, fs.path) if fs is not None else ""

    def _image(self, ctx: AgentContext, vm: VmLayout) -> str | None:
        """The VM's <filesystem> image file (a lower layer through a shared loop mount)."""
        path = self._fs_path(ctx, vm)
        fs = vm.vm.filesystem
        if path and fs is not None and fs.type != "hostfs" and Path(path).is_file():
            return os.path.realpath(path)
        return None

    def _root_dir(self, ctx: AgentContext, vm: VmLayout) -> str:
        """The VM's root directory: its own <filesystem> directory, the mount of its
        <filesystem> image, else the configured one."""
        path = self._fs_path(ctx, vm)
        if path and Path(path).is_dir():
            return os.path.realpath(path)
        image = self._image(ctx, vm)
        if image:
            return str(imagemount.mount_point(ctx.sdir.state_root, image))
        return os.path.realpath(ctx.config.container_rootfs)

    def _host_root(self, ctx: AgentContext, vm: VmLayout) -> bool:
        return self._root_dir(ctx, vm) == "/"

    def _base(self, ctx: AgentContext) -> int:
        return confine.id_base(ctx.sdir.key, ctx.config.vm_id_first, ctx.config.vm_id_slots)

    def _lower(self, ctx: AgentContext, vm: VmLayout) -> str:
        """The overlay's lower directory: the host's / as it is, or an id-mapped bind of the
        VM's root directory in its state dir."""
        if self._host_root(ctx, vm):
            return f"{self._mask(ctx)}:/"
        return str(ctx.sdir.container_dir(vm.name) / "lower")

    @staticmethod
    def _mask(ctx: AgentContext) -> Path:
        """The scenario's mask layer over the host's / (shared by its VMs, see
        ``confine.host_mask``), on a tmpfs of its own: overlayfs refuses a lower layer
        inside another (the host's /), and freeing it costs nothing at release."""
        return ctx.sdir.root / "host-mask" / "layer"

    def _ensure_mask(self, ctx: AgentContext) -> None:
        over_host = [vm for vm in ctx.layout.vms
                     if vm.driver == self.name and self._host_root(ctx, vm)]
        if not over_host:
            return
        mnt = self._mask(ctx).parent
        if not confine.is_mountpoint(mnt):
            mnt.mkdir(mode=0o755, exist_ok=True)
            ctx.sdir.record({"op": "mount", "path": str(mnt)})
            run(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m,nr_inodes=4096",
                 "ediv-mask", str(mnt)])
        hidden = [*DEFAULT_HIDDEN_PATHS, *ctx.config.container_hidden_paths,
                  str(ctx.sdir.state_root.resolve()), ctx.config.capture_dir]
        owned = [*OWNED_DIRS, *(ft.root for vm in over_host for ft in vm.vm.filetrees
                                if ft.root.startswith("/"))]
        confine.host_mask(self._mask(ctx), self._base(ctx), owned=owned,
                          private=PRIVATE_DIRS, hidden=hidden, whiteouts=WHITEOUTS,
                          copies=COPIES)
        self._masked.add(ctx.sdir.key)  # checked once per agent run, not once per VM

    def _pid(self, ctx: AgentContext, vm: VmLayout) -> int:
        pid = ctx.runtime.get(vm.name, {}).get("pid")
        if not pid:
            raise EdivError(f"vm {vm.name}: not running (no init process recorded)")
        if not vm_running(ctx, vm):
            raise EdivError(f"vm {vm.name}: its init process {pid} is gone")
        return pid

    def _enter(self, pid: int) -> list[str]:
        """argv prefix running a command as VM root inside every namespace of VM ``pid``,
        with the capabilities no lab needs dropped (``center.py``)."""
        caps = ",".join(str(cinit.CAPS[c]) for c in confine.DROPPED_CAPS)
        return [sys.executable, "-I", "-S", center.__file__, str(pid), caps, "--"]

    # -- Driver -------------------------------------------------------------------------
    def check(self, ctx: AgentContext, vms: list[VmLayout]) -> list[str]:
        problems = []
        size = ctx.config.container_tmpfs_size
        if size and not _TMPFS_SIZE_RE.fullmatch(size):
            problems.append(f"agent setting container_tmpfs_size: {size!r} is not a tmpfs "
                            "size (bytes with k, m or g, or a % of RAM; empty: on disk)")
        allowed = [*ctx.config.vm_image_paths, str(ctx.files_dir)]
        for vm in vms:
            fs = vm.vm.filesystem
            path = self._fs_path(ctx, vm)
            image = self._image(ctx, vm)
            if fs is not None and (Path(path).is_dir() or image) and \
                    not confine.path_allowed(path, allowed):
                what = "image" if image else "root directory"
                problems.append(f"vm {vm.name}: {what} {fs.path} is outside the "
                                f"allowed image roots ({', '.join(ctx.config.vm_image_paths)} "
                                "or the scenario's own files; agent setting vm_image_paths)")
                continue
            if image:
                kind = imagemount.image_kind(image)
                if kind != "ext":
                    problems.append(
                        f"vm {vm.name}: filesystem {fs.path} is a {kind} image; container VMs "
                        "mount ext2/3/4 images (raw; qemu-img convert -O raw a qcow2 one)")
                d = str(ctx.sdir.container_dir(vm.name))
                point = str(imagemount.mount_point(ctx.sdir.state_root, image))
                if any(c in s for s in (d, point) for c in _UNSAFE_PATH_CHARS):
                    problems.append(f"vm {vm.name}: overlay paths may not hold ',', ':' or "
                                    "'\\'")
                continue  # its /bin/sh is checked once it is mounted (prepare)
            lower = self._root_dir(ctx, vm)
            if fs is not None and not Path(path).is_dir():
                ctx.layout.warnings.append(
                    f"vm {vm.name}: {fs.path} is not a directory or image file; "
                    f"using {lower}")
            if not Path(lower).is_dir():
                problems.append(f"vm {vm.name}: container root {lower} is not a directory")
            elif not (Path(lower) / "bin" / "sh").exists():
                problems.append(f"vm {vm.name}: container root {lower} has no /bin/sh")
            d = str(ctx.sdir.container_dir(vm.name))
            if any(c in s for s in (d, lower) for c in _UNSAFE_PATH_CHARS):
                problems.append(f"vm {vm.name}: overlay paths may not hold ',', ':' or '\\'")
        return problems

    def _mount_images(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        """Each image the VMs use, mounted once for the host, with this scenario's reference
        journalled first (a crash in between leaves a reference release drops)."""
        images = dict.fromkeys(i for i in (self._image(ctx, v) for v in vms) if i)
        for image in images:
            ctx.sdir.record({"op": "image", "id": imagemount.image_id(image), "path": image})
            point = imagemount.acquire(ctx.sdir.state_root, image, ctx.sdir.key)
            if not (point / "bin" / "sh").exists() and not (point / "bin" / "sh").is_symlink():
                users = [v.name for v in vms if self._image(ctx, v) == image]
                raise EdivError(f"vm {', '.join(users)}: image {image} has no /bin/sh")

    @staticmethod
    def _ensure_tmpfs(ctx: AgentContext) -> None:
        """The scenario's ``containers/`` dir on a tmpfs of its own (``container_tmpfs_size``,
        journalled first): a VM's writes cost memory, bounded per scenario, not the host's
        disk; its overlay dirs, log and ready file are made and freed without the state
        dir's filesystem (on a churned ext4 each new inode took 0.1-0.4 ms of inode-bitmap
        search: about a tenth of the CPU of a 1,000-VM deploy); release frees all of it
        with one unmount."""
        size = ctx.config.container_tmpfs_size
        root = ctx.sdir.containers_dir
        if not size or confine.is_mountpoint(root):
            return
        root.mkdir(mode=0o700, exist_ok=True)
        ctx.sdir.record({"op": "mount", "path": str(root)})
        run(["mount", "-t", "tmpfs", "-o", f"mode=700,size={size}", f"ediv-{ctx.sdir.key}",
             str(root)])

    def prepare(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        base = self._base(ctx)
        self._ensure_tmpfs(ctx)
        self._ensure_mask(ctx)
        self._mount_images(ctx, vms)
        for vm in vms:
            d = ctx.sdir.container_dir(vm.name)
            # each directory is an inode (on the state dir's filesystem when the tmpfs is
            # off: on a discard-mounted ext4 every freed block is a synchronous discard at
            # release): "lower" only where an id-mapped root is bound
            subs = ("upper", "work", "merged") if self._host_root(ctx, vm) else \
                ("upper", "work", "merged", "lower")
            for sub in subs:
                (d / sub).mkdir(parents=True, exist_ok=True)
            # the upper's root is the VM's / : VM root's own
            os.chown(d / "upper", base, base)
            os.chmod(d / "upper", 0o755)

    def start(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        if not vms:
            return
        sdir = ctx.sdir
        sdir.record(*({"op": "netns", "name": v.netns} for v in vms),
                    *({"op": "link", "name": i.host} for v in vms for i in v.all_interfaces))
        base = self._base(ctx)
        marker = {MARKER_VAR: naming.marker(ctx.sdir.key)}
        # one holder per core (a netns takes about 1 ms of kernel work), each filling the
        # same user namespace: the scenario's for this verb
        confine.create_netns([v.netns for v in vms], base, marker,
                             parallel=min(os.cpu_count() or 1, 1 + len(vms) // 32))
        lines: list[C.Tokens] = []
        for v in vms:
            for i in v.all_interfaces:
                lines.append(C.veth_add(i.host, i.inside, v.netns, peer_mac=i.mac, mtu=i.mtu))
                if i.bridge:
                    lines.append(C.link_set(i.host, master=i.bridge, quiet6=True, up=True))
            if v.mgmt:
                lines.append(C.link_set(v.mgmt.host, quiet6=True))
                lines += [C.addr_add(v.mgmt.host, a) for a in v.mgmt.host_addresses]
                lines.append(C.link_set(v.mgmt.host, up=True))
        if lines:
            run(C.ip_batch_argv(), input=C.batch_text(lines), timeout=600)
        # every VM's addresses and routes set, and its init forked, by one forker.py;
        # journalled in one write: a forker or init started just before a crash is still
        # found by release through its environment marker
        self._ensure_mask(ctx)
        self._launch(ctx, vms, configure=True)
        for v in vms:
            ctx.emitter.vm(v.name, "booting", driver=self.name)

    def boot(self, ctx: AgentContext, vm: VmLayout) -> None:
        """A new init in the VM's existing network namespace, over the same overlay upper
        directory: addresses, routes and files written in the VM survive a stop."""
        self._set_links(vm, up=True)
        self._launch(ctx, [vm])
        ctx.emitter.vm(vm.name, "booting", driver=self.name)

    def shutdown(self, ctx: AgentContext, vm: VmLayout, graceful: bool, timeout: float) -> None:
        """The network namespace outlives the init: its host-side links go down so that a
        stopped VM answers nothing, as a powered-off machine."""
        super().shutdown(ctx, vm, graceful, timeout)
        self._set_links(vm, up=False)

    def pause(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Frozen processes, and (the kernel of the VM's namespace would still answer ping
        and ARP) its host-side links down, as for a stopped VM."""
        super().pause(ctx, vm)
        self._set_links(vm, up=False)

    def resume(self, ctx: AgentContext, vm: VmLayout) -> None:
        self._set_links(vm, up=True)
        super().resume(ctx, vm)

    @staticmethod
    def _set_links(vm: VmLayout, up: bool) -> None:
        lines = [C.link_set(i.host, up=up, down=not up) for i in vm.all_interfaces]
        if lines:
            run(C.ip_batch_argv(), input=C.batch_text(lines))

    def request_halt(self, ctx: AgentContext, vm: VmLayout) -> None:
        """SIGTERM to the VM's init (it traps TERM and exits; its PID namespace goes with it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(ctx.runtime[vm.name]["pid"], signal.SIGTERM)

    @staticmethod
    def _netns_ops(v: VmLayout) -> list[list[str]]:
        """Requests ``rtnl.py`` sends inside the VM's netns: loopback, addresses, routes
        (what ``ip link set up`` / ``addr add`` / ``route add`` lines did)."""
        ops: list[list[str]] = [["up", "lo"]]
        for i in v.all_interfaces:
            ops += [["addr", i.inside, a] for a in i.addresses]
            ops.append(["up", i.inside])
        for r in v.routes:
            ops.append(["route", C.route_add(r.dest, r.gw, r.family)[2], r.gw])
        return ops

    def _launch_args(self, ctx: AgentContext, v: VmLayout, configure: bool) -> dict[str, Any]:
        """The VM's lower layer mounted (an id-mapped bind, journalled first) and its
        launch request for ``forker.py`` (cinit's arguments)."""
        d = ctx.sdir.container_dir(v.name)
        ready = d / "ready"
        ready.unlink(missing_ok=True)
        if self._host_root(ctx, v) and ctx.sdir.key not in self._masked:
            self._ensure_mask(ctx)
        lower = d / "lower"
        if not self._host_root(ctx, v) and not confine.is_mountpoint(lower):
            ctx.sdir.record({"op": "mount", "path": str(lower)})
            ns_fd = confine.userns_fd(v.netns)
            try:
                confine.idmapped_bind(self._root_dir(ctx, v), str(lower), ns_fd)
            finally:
                os.close(ns_fd)
        env = base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key), VM_VAR: v.name})
        return {"netns": v.netns, "log": str(d / "init.log"),
                **({"net": self._netns_ops(v)} if configure else {}),
                "args": {"lower": self._lower(ctx, v), "upper": str(d / "upper"),
                         "work": str(d / "work"), "merged": str(d / "merged"),
                         "hostname": v.hostname, "fwd4": "1" if v.forward4 else "0",
                         "fwd6": "1" if v.forward6 else "0", "ready": str(ready),
                         "owner": self._base(ctx), "drop_caps": list(confine.DROPPED_CAPS),
                         "env": env}}

    def _launch(self, ctx: AgentContext, vms: list[VmLayout], configure: bool = False
                ) -> list[dict[str, Any]]:
        """Start the inits of ``vms`` through one ``forker.py`` (one Python start for all),
        first configuring their netns (``configure``: a deploy; a boot finds it done);
        returns their journal records (the forker, recorded as each VM's "launcher", and
        the init, with start times)."""
        requests = ctx.map(lambda v: self._launch_args(ctx, v, configure), vms)
        env = base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key)})
        # it answers, then stays as the inits' parent: read to EOF, do not wait for it
        p = subprocess.Popen([sys.executable, "-I", "-S", forker.__file__],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                             start_new_session=True, env=env)
        try:
            out = _answer(p, json.dumps(requests).encode() + b"\n",
                          timeout=max(60.0, len(vms) * 0.5))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise EdivError("container launcher did not answer") from None
        replies = json.loads(out.splitlines()[0]) if out.strip() else []
        if len(replies) != len(vms):
            p.wait()
            raise EdivError(f"container launcher failed (exit {p.returncode})")
        records: list[dict[str, Any]] = []
        errors = []
        for v, r in zip(vms, replies, strict=True):
            if "error" in r:
                errors.append(f"vm {v.name}: {r['error']}")
                continue
            launcher, init = r["launcher"], r["init"]
            ctx.runtime[v.name] = {"launcher": launcher, "pid": init, "start": start_time(init)}
            records += [{"op": "proc", "vm": v.name, "pid": launcher,
                         "start": start_time(launcher)},
                        {"op": "proc", "vm": v.name, "pid": init,
                         "start": ctx.runtime[v.name]["start"]}]
        ctx.sdir.record(*records)
        if errors:
            raise EdivError("; ".join(errors))
        return records

    @staticmethod
    def _ready(path: Path) -> bool:
        try:
            return path.read_text() == "ready\n"
        except FileNotFoundError:
            return False

    def wait_ready(self, ctx: AgentContext, vms: list[VmLayout], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {v.name for v in vms}
        while pending:
            for name in sorted(pending):
                d = ctx.sdir.container_dir(name)
                if self._ready(d / "ready"):
                    ctx.emitter.vm(name, "running", driver=self.name,
                                   pid=ctx.runtime[name]["pid"])
                    pending.discard(name)
                elif not alive(ctx.runtime[name]["pid"]):
                    log = (d / "init.log").read_text(errors="replace")
                    raise EdivError(f"vm {name}: init exited: {log.strip()[-500:]}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise EdivError(f"VMs not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.01)

    def exec(self, ctx: AgentContext, vm: VmLayout, commands: list[str]) -> list[ExecResult]:
        pid = self._pid(ctx, vm)
        out = []
        for cmd in commands:
            try:
                # its own process group, which the agent's stop kills (controller gone)
                p = interrupts.run([*self._enter(pid), "/bin/sh", "-c", cmd],
                                   timeout=ctx.config.exec_timeout, env=base_env())
                out.append(ExecResult(cmd, p.returncode, p.stdout.decode(errors="replace")))
            except subprocess.TimeoutExpired as e:
                text = (e.output or b"").decode(errors="replace")
                out.append(ExecResult(cmd, 124, text + "\n[ediv: timed out]"))
        return out

    def put_files(self, ctx: AgentContext, vm: VmLayout, src_dir: Path, dst: str) -> None:
        """tar on the host (entries owned by VM root), untar inside the VM as VM root (its own
        tar, symlinks resolving in the VM's root: nothing of the host is reachable)."""
        pid = self._pid(ctx, vm)
        tar = subprocess.Popen(["tar", "-C", str(src_dir), "--owner=0", "--group=0",
                                "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
        p = subprocess.run([*self._enter(pid), "/bin/sh", "-c",
                            'mkdir -p "$1" && tar -xf - -C "$1"', "ediv-put", dst],
                           stdin=tar.stdout, capture_output=True, env=base_env(), check=False,
                           timeout=ctx.config.exec_timeout)
        tar.stdout.close()
        terr = tar.stderr.read().decode(errors="replace")
        tar.wait()
        if tar.returncode != 0 or p.returncode != 0:
            raise EdivError(f"vm {vm.name}: copying {src_dir} to {dst} failed: "
                            f"{terr.strip()} {p.stderr.decode(errors='replace').strip()}")

    def runtime_info(self, ctx: AgentContext, vm: VmLayout) -> dict[str, Any]:
        rt = ctx.runtime.get(vm.name, {})
        return {"pid": rt.get("pid"), "start": rt.get("start"), "netns": vm.netns,
                "console": f"nsenter -t {rt.get('pid')} -a -r -w /bin/sh"}
