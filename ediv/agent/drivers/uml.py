"""User-Mode Linux VMs, as VNUML ran them, with nothing pre-installed in the image.

Boot (documented in docs/agent-protocol.md):
- ``ubd0`` is the VM's root: a per-VM copy-on-write file over the backing image
  (``<filesystem type="cow">``, the default), the image itself (``direct``), or a host
  directory mounted with hostfs (``hostfs``); the backing image is never written.
- ``ubd1r`` is the *ediv boot disk*, a small read-only ext2 image built per scenario with
  ``mkfs.ext2 -d``: the host's static busybox and ``/init``. The kernel boots it
  (``root=/dev/ubdb init=/init``); ``/init`` mounts the VM's hostfs share (a directory in the
  VM's state dir), runs the generated ``config.sh`` found there (hostname, addresses, routes,
  forwarding), mounts the real root on ``/newroot`` (plus proc, sys, dev), writes ``ready``
  and becomes the exec runner.
- Exec channel: file drop over the hostfs share. The agent writes ``jobs/N.job`` (a script run
  with ``chroot /newroot /bin/sh``) or ``jobs/N.sys`` (run by the boot disk's busybox, used for
  file copies); the runner renames it ``N.run``, writes ``N.out`` and finally ``N.rc``.
- Interfaces: one persistent tap per interface on the net's bridge, ``eth<id>=tuntap,TAP[,MAC]``.
- Consoles: con0 goes to ``console.log`` in the VM's state dir; con1 is a pty (its path is in
  ``status``: ``screen /dev/pts/N``) with a shell in the VM's root.
- Processes: UML runs as PID 1 of its own PID namespace (``unshare --pid --fork
  --kill-child``), so killing it removes every helper process at once.

Confinement (docs/threat-model.md): UML runs as the scenario's host uid/gid
(``confine.id_base``), without capabilities, umask 077, chrooted into a *jail*: a tmpfs
root built in its own mount namespace holding only what it opens — the kernel binary and
its two libraries, /dev/null|zero|random|urandom|ptmx|pts, a private ``/dev/net/tun`` node
it owns, its disks (``/img/root`` the backing or direct image, read-only for cow;
``/img/boot`` the boot disk; ``/disk`` its COW directory), its ``uml_dir`` and ``/h`` with
the share (``/h/share``) and a hostfs root (``/h/root``). The kernel gets ``hostfs=/h``:
``mount -t hostfs none /mnt -o /anything`` inside the guest resolves under ``/h``, and
neither ``..`` nor a symlink the guest plants in its share can leave the jail (no host path
exists there). Taps are created ``user UID group GID``. Images and hostfs roots come only
from ``vm_image_paths`` or the scenario's own files; a ``direct`` image must be writable by
the scenario's uid, a ``cow`` backing image readable by it, a hostfs root is used with its
permissions.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ediv.agent import commands as C
from ediv.agent import interrupts, naming
from ediv.agent.drivers import confine
from ediv.agent.drivers.base import AgentContext, ExecResult, ProcessOwner, vm_running
from ediv.agent.layout import VmLayout
from ediv.agent.proc import MARKER_VAR, VM_VAR, base_env, register_child, run, start_time
from ediv.agent.rootfs import find_busybox
from ediv.errors import EdivError

BOOT_INIT = r"""#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
share=/share
if ! $B mount -t hostfs none /ediv -o "$share"; then
  echo "ediv: cannot mount hostfs $share"; exec $B sleep 100000
fi
$B sh /ediv/config.sh > /ediv/config.log 2>&1
echo $? > /ediv/config.rc
if [ "$($B cat /ediv/config.rc)" != 0 ]; then $B sync; exec $B sleep 100000; fi
for d in proc sys dev tmp; do $B mkdir -p /newroot/$d; done
$B mount -t proc proc /newroot/proc
$B mount -t sysfs sysfs /newroot/sys
$B mount -o bind /dev /newroot/dev
# the console shell on con1, started again when it ends; a console that cannot open backs off
# (up to a minute) instead of forking every second
( d=1
  while :; do
    if $B setsid $B sh -c 'exec $B chroot /newroot /bin/sh -i' </dev/tty1 >/dev/tty1 2>&1
    then d=1; elif [ $d -lt 64 ]; then d=$((d * 2)); fi
    $B sleep $d
  done ) &
# the runner's naps: read -t on a FIFO is a shell builtin (a fork per poll is costly in UML)
$B mount -t tmpfs -o size=64k ediv-tmp /tmp 2>/dev/null && $B mkfifo /tmp/nap 2>/dev/null
nap() { if [ -p /tmp/nap ]; then read -t "$1" _nap <> /tmp/nap; else $B usleep "$2"; fi; }
echo ready > /ediv/ready
$B sync
cd /ediv/jobs
idle=50
while :; do
  idle=$((idle + 1))
  for j in *.job *.sys; do
    [ -e "$j" ] || continue
    idle=0
    n=${j%.*}
    $B mv "$j" "$n.run"
    if [ "${j##*.}" = job ]; then
      $B chroot /newroot /bin/sh < "$n.run" > "$n.out" 2>&1
    else
      $B sh "$n.run" > "$n.out" 2>&1
    fi
    echo $? > "$n.rc.tmp"
    $B sync
    $B mv "$n.rc.tmp" "$n.rc"
    $B sync
  done
  # poll fast for a second after a job, then every 0.2 s for 5 s (also after the boot), then
  # every second: an idle UML costs about 0.01 core plus 0.0035 per wake-up per second, which
  # 50 VMs booting on two cores feel
  if [ $idle -lt 50 ]; then nap 0.02 20000
  elif [ $idle -lt 75 ]; then nap 0.2 200000
  else nap 1 1000000; fi
done
"""

HALT_SCRIPT = """B=/bin/busybox
$B sync
$B umount /newroot/proc /newroot/sys /newroot/dev 2>/dev/null
$B mount -o remount,ro /newroot 2>/dev/null
$B sync
$B poweroff -f
"""

# run by host root in UML's own mount namespace: build the jail, then chroot + drop to the
# scenario's ids and exec the kernel (see the module docstring). Binds: "SRC DST MODE" lines
# on stdin-less argv: $1 jail, $2 uid, $3 tmpfs size, $4 binds file, then the kernel argv.
JAIL_SCRIPT = r"""set -e
jail=$1 id=$2 size=$3 binds=$4
shift 4
mount -t tmpfs -o mode=755,size=4m,nr_inodes=256 ediv-jail "$jail"
# every directory in one mkdir, file mount points made by the shell, a read-only bind in one
# mount call: one exec per bind instead of up to four (most of a boot's host-side CPU)
set -f  # the list below is split at newlines only, never globbed
IFS='
'
mkdir -p "$jail/dev/net" "$jail/tmp" $(unset IFS; while read -r kind src dst; do
  case $kind in d|R) echo "$jail$dst" ;; *) echo "$jail${dst%/*}" ;; esac
done < "$binds")
unset IFS
while read -r kind src dst; do
  case $kind in
    d) mount --bind "$src" "$jail$dst" ;;
    f) : > "$jail$dst"; mount --bind "$src" "$jail$dst" ;;
    r) : > "$jail$dst"; mount --bind -o ro "$src" "$jail$dst" ;;
    R) mount --rbind "$src" "$jail$dst" ;;
  esac
done < "$binds"
mknod -m 600 "$jail/dev/net/tun" c 10 200
mknod -m 666 "$jail/dev/ptmx" c 5 2
chown "$id:$id" "$jail/dev/net/tun"
mount -t tmpfs -o "mode=700,uid=$id,gid=$id,size=$size" ediv-mem "$jail/tmp"
mount -o remount,bind,ro "$jail"
umask 077
exec unshare --root="$jail" --wd=/ --setgid="$id" --setuid="$id" -- "$@"
"""

# what a boot spends on nothing a lab uses (measured, one VM alone: 1.7 s of CPU to ready
# without these, 0.65 s with them; README): the delay-loop calibration and the RAID-6
# algorithm benchmark are busy loops of a fixed wall time (0.15 s and 0.85 s, burning a
# core each while 51 VMs boot), 256 legacy BSD ptys are 512 devices to register. lpj only
# scales the guest's busy-wait delays (the calibrated value on the development machine).
# Without raid6_select_algo the guest has no RAID-6 code: md RAID-6 and btrfs RAID5/6 inside
# a UML VM do not work (documented in docs/agent-protocol.md).
BOOT_SPEED_ARGS = ("lpj=3293184", "initcall_blacklist=raid6_select_algo", "pty.legacy_count=0")

_PANIC_RE = re.compile(r"Kernel panic - not syncing:.*$", re.M)
_PTS_RE = re.compile(r"Virtual console 1 assigned device '(/dev/pts/\d+)'")


def _panic(log: Path) -> str | None:
    """The panic message of a UML console log, if any."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return None
    m = _PANIC_RE.search(text)
    if not m:
        return None
    # what the kernel said about its disks before panicking (a lock or open failure...)
    hints = [line.strip() for line in text[:m.start()].splitlines()
             if "ubd" in line.lower() or "failed" in line.lower()][-3:]
    return m.group(0).strip() + (f" (before it: {' | '.join(hints)})" if hints else "")


def _mem(value: str | None, default: str) -> str:
    text = (value or default).strip().upper().replace("B", "")
    if not re.fullmatch(r"\d+[KMG]?", text):
        raise EdivError(f"bad <mem> {value!r}")
    return text


def _mem_bytes(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text)


@functools.cache
def _libraries(binary: str) -> tuple[str, ...]:
    """Absolute paths of the shared libraries (and interpreter) ``binary`` loads (ldd, once
    per kernel and agent run: not a subprocess per VM)."""
    out = run(["ldd", binary], check=False).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for token in parts:
            if token.startswith("/"):
                libs.append(token)
                break
    return tuple(libs)


def _owner_can_read(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IRUSR)


def _can(st: os.stat_result, uid: int, bits: int) -> bool:
    """Whether host uid ``uid`` (gid the same, no other groups) has ``bits`` (4 read, 2
    write) on a file with stat ``st``."""
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == uid else 0
    return (st.st_mode >> shift) & bits == bits


def kernel_allowed(path: str, config) -> bool:
    """``path`` (symlinks resolved) is one of, or inside one of, ``config.uml_kernel_paths``."""
    real = os.path.realpath(path)
    for allowed in [config.uml_kernel, *config.uml_kernel_paths]:
        if allowed.endswith("/"):
            if real.startswith(os.path.realpath(allowed) + "/"):
                return True
        elif real == os.path.realpath(allowed):
            return True
    return False


UML_MODULES_DIR = Path("/usr/lib/uml/modules")
# IPv6 and what it needs, in load order (modules.dep of Debian's user-mode-linux 6.1)
UML_IPV6_MODULES = ("kernel/lib/crc-ccitt.ko", "kernel/net/ipv6/ipv6.ko")


def guest_modules(names: tuple[str, ...]) -> list[Path]:
    """The host's copies of the UML kernel modules ``names`` (relative to the modules dir of
    the installed UML kernel); none when user-mode-linux ships no modules."""
    versions = sorted(UML_MODULES_DIR.iterdir()) if UML_MODULES_DIR.is_dir() else []
    if not versions:
        return []
    found = [versions[-1] / n for n in names]
    return found if all(f.is_file() for f in found) else []


def vm_uses_ipv6(vm: VmLayout) -> bool:
    return vm.forward6 or any(":" in a for i in vm.all_interfaces for a in i.addresses) or \
        any(r.family == 6 for r in vm.routes)


def boot_slots(config, count: int) -> int:
    """How many of ``count`` UML VMs boot at once: ``uml_boot_slots``, else (0) all of them.
    Measured with 51 VMs on this 2-core machine under other load (README): 4 at once took
    121 s, 16 took 85 s, all 65 s; a boot waits on more than the CPU, so a bound of a few
    per core leaves the cores idle. A host that must keep CPU for other work sets a bound."""
    if config.uml_boot_slots > 0:
        return config.uml_boot_slots
    return max(1, count)


class _Console:
    """One VM's console log, read from where the previous read stopped (whole lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None
        self._partial = b""

    def read_new(self, flush: bool = False) -> str:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 (kept open between polls)
            except FileNotFoundError:
                return ""
        data = self._partial + self._file.read()
        cut = len(data) if flush else data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut].decode(errors="replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class UmlDriver(ProcessOwner):
    """User-Mode Linux VMs: one unprivileged ``linux`` process per VM in a read-only jail,
    a copy-on-write layer over its image (or the image itself, type direct), ediv's boot disk
    running the in-VM runner (exec, files, halt), taps owned by the scenario's uid."""

    name = "uml"

    def __init__(self) -> None:
        super().__init__()
        self._job_lock = threading.Lock()
        self._job_seq = 0
        self._queue: list[VmLayout] = []  # started by start(), not yet booting

    # -- paths --------------------------------------------------------------------------
    def _kernel(self, ctx: AgentContext, vm: VmLayout) -> str:
        return vm.vm.kernel.path if vm.vm.kernel else ctx.config.uml_kernel

    @staticmethod
    def _fs(ctx: AgentContext, vm: VmLayout) -> str:
        fs = vm.vm.filesystem
        return os.path.realpath(confine.fs_path(ctx.files_dir, fs.path)) if fs else ""

    @staticmethod
    def _own(ctx: AgentContext, path: str) -> bool:
        """``path`` is one of the scenario's own bundle files."""
        return confine.path_allowed(path, [ctx.files_dir])

    @staticmethod
    def _uid(ctx: AgentContext) -> int:
        return confine.id_base(ctx.sdir.key, ctx.config.vm_id_first, ctx.config.vm_id_slots)

    @staticmethod
    def _share(ctx: AgentContext, vm: VmLayout) -> Path:
        return ctx.sdir.vm_dir(vm.name) / "share"

    @staticmethod
    def _bootdisk(ctx: AgentContext) -> Path:
        return ctx.sdir.root / "uml-boot.img"

    # -- Driver -------------------------------------------------------------------------
    def check(self, ctx: AgentContext, vms: list[VmLayout]) -> list[str]:
        problems = []
        if vms and not os.path.exists("/dev/net/tun"):
            problems.append("UML interfaces need /dev/net/tun")
        for vm in vms:
            kernel = self._kernel(ctx, vm)
            if not os.access(kernel, os.X_OK):
                problems.append(f"vm {vm.name}: UML kernel {kernel} not found or not executable")
            elif not kernel_allowed(kernel, ctx.config):
                problems.append(f"vm {vm.name}: UML kernel {kernel} is not in the agent's "
                                "uml_kernel_paths")
            fs = vm.vm.filesystem
            allowed = [*ctx.config.vm_image_paths, str(ctx.files_dir)]
            uid = self._uid(ctx)
            if fs is None:
                problems.append(f"vm {vm.name}: UML VMs need a <filesystem>")
            elif not confine.path_allowed(path := self._fs(ctx, vm), allowed):
                problems.append(f"vm {vm.name}: filesystem {fs.path} is outside the allowed "
                                f"image roots ({', '.join(ctx.config.vm_image_paths)} or "
                                "the scenario's own files; agent setting vm_image_paths)")
            elif fs.type == "hostfs":
                if not Path(path).is_dir():
                    problems.append(f"vm {vm.name}: hostfs root {fs.path} is not a directory")
            elif not Path(path).is_file():
                problems.append(f"vm {vm.name}: filesystem image {fs.path} not found")
            elif self._own(ctx, path):
                pass  # the scenario's own file: given to its uid at prepare
            elif fs.type != "direct" and _owner_can_read(os.stat(path)):
                pass  # a read-only backing image: shown to the uid through an id-mapped view
            elif not _can(os.stat(path), uid, 6 if fs.type == "direct" else 4):
                need = "writable" if fs.type == "direct" else "readable"
                problems.append(f"vm {vm.name}: filesystem image {fs.path} is not {need} by "
                                f"the scenario's uid {uid} (UML runs unprivileged)")
            try:
                _mem(vm.vm.mem, ctx.config.uml_mem)
            except EdivError as e:
                problems.append(f"vm {vm.name}: {e}")
        try:
            find_busybox()
        except EdivError as e:
            if vms:
                problems.append(str(e))
        return problems

    def prepare(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        if not vms:
            return
        self._build_bootdisk(self._bootdisk(ctx))
        os.chmod(self._bootdisk(ctx), 0o644)
        uid = self._uid(ctx)
        for vm in vms:
            d = ctx.sdir.vm_dir(vm.name)
            share = self._share(ctx, vm)
            for sub in (share / "jobs", share / "xfer", d / "disk", d / "uml", d / "jail"):
                sub.mkdir(parents=True, exist_ok=True)
            (share / "config.sh").write_text(self.config_script(vm))
            os.chmod(share / "config.sh", 0o644)
            for sub in (d, share, share / "jobs", share / "xfer", d / "disk", d / "uml"):
                os.chown(sub, uid, uid)
                os.chmod(sub, 0o700)
            fs = vm.vm.filesystem
            if fs is not None and self._own(ctx, self._fs(ctx, vm)):
                confine.give(Path(self._fs(ctx, vm)), uid)

    @staticmethod
    def _build_bootdisk(path: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="ediv-boot-", dir=path.parent) as tmp:
            root = Path(tmp) / "root"
            for d in ("bin", "proc", "sys", "dev", "newroot", "ediv", "tmp"):
                (root / d).mkdir(parents=True)
            shutil.copy2(find_busybox(), root / "bin" / "busybox")
            (root / "bin" / "sh").symlink_to("busybox")
            (root / "modules").mkdir()
            for mod in guest_modules(UML_IPV6_MODULES):
                shutil.copy2(mod, root / "modules" / mod.name)
            (root / "init").write_text(BOOT_INIT)
            os.chmod(root / "init", 0o755)
            run(["mkfs.ext2", "-q", "-F", "-d", str(root), "-L", "ediv-boot", str(path), "16M"])

    @staticmethod
    def config_script(vm: VmLayout) -> str:
        """Commands the boot disk's busybox runs before mounting the VM's root."""
        q = shlex.quote
        # -x: the log names the command that failed (the agent shows its tail)
        lines = ["B=/bin/busybox", "set -ex", f"$B hostname {q(vm.hostname)}",
                 "$B ip link set lo up"]
        if vm_uses_ipv6(vm):
            # Debian's UML kernel has IPv6 as a module (CONFIG_IPV6=m): load it from the boot
            # disk before any address is set, unless the kernel has it built in
            lines.append("[ -e /proc/net/if_inet6 ] || for m in "
                         + " ".join(f"/modules/{Path(m).name}" for m in UML_IPV6_MODULES)
                         + "; do $B insmod $m; done")
        for i in vm.all_interfaces:
            if i.mtu:
                lines.append(f"$B ip link set {i.inside} mtu {i.mtu}")
            lines += [f"$B ip addr add {a} dev {i.inside}" for a in i.addresses]
            lines.append(f"$B ip link set {i.inside} up")
        for r in vm.routes:
            lines.append("$B ip " + " ".join(C.route_add(r.dest, r.gw, r.family)))
        lines.append(f"echo {int(vm.forward4)} > /proc/sys/net/ipv4/ip_forward")
        if vm.forward6:  # the UML kernel may be built without IPv6
            lines.append("f=/proc/sys/net/ipv6/conf/all/forwarding; [ ! -e $f ] || echo 1 > $f")
        fs = vm.vm.filesystem
        if fs is not None and fs.type == "hostfs":
            lines.append("$B mount -t hostfs none /newroot -o /root")
        else:
            lines.append("$B mount -o rw /dev/ubda /newroot")
        return "\n".join(lines) + "\n"

    def binds(self, ctx: AgentContext, vm: VmLayout) -> list[tuple[str, str, str]]:
        """(kind, host path, jail path) of everything the jail holds: ``f`` a file, ``r`` a
        read-only file, ``d`` a directory, ``R`` a directory with its submounts."""
        d = ctx.sdir.vm_dir(vm.name)
        fs = vm.vm.filesystem
        kernel = os.path.realpath(self._kernel(ctx, vm))
        out = [("r", kernel, "/linux")]
        out += [("r", os.path.realpath(lib), lib) for lib in _libraries(kernel)]
        # /dev/ptmx is a node of the jail's own (JAIL_SCRIPT): the kernel finds the devpts
        # instance beside the node, which for a bind of the host's node is not the jail's pts
        out += [("f", f"/dev/{n}", f"/dev/{n}") for n in ("null", "zero", "random", "urandom")]
        out += [("R", "/dev/pts", "/dev/pts"), ("r", str(self._bootdisk(ctx)), "/img/boot"),
                ("d", str(d / "disk"), "/disk"), ("d", str(d / "uml"), "/uml"),
                ("d", str(self._share(ctx, vm)), "/h/share")]
        if fs is not None and fs.type == "hostfs":
            out.append(("d", self._fs(ctx, vm), "/h/root"))
        elif fs is not None:
            out.append(("f" if fs.type == "direct" else "r", self._fs(ctx, vm), "/img/root"))
        return out

    def argv(self, ctx: AgentContext, vm: VmLayout) -> list[str]:
        """The kernel's command line, in the jail's paths."""
        fs = vm.vm.filesystem
        args = ["/linux"]
        if fs is not None and fs.type == "direct":
            args.append("ubd0=/img/root")
        elif fs is not None and fs.type != "hostfs":
            args.append("ubd0=/disk/root.cow,/img/root")
        args += ["ubd1r=/img/boot", "root=/dev/ubdb", "ro", "init=/init",
                 f"mem={_mem(vm.vm.mem, ctx.config.uml_mem)}", "uml_dir=/uml",
                 f"umid={vm.name}", "hostfs=/h",
                 "con=null", "con0=null,fd:1", "con1=pts", "ssl=null", *BOOT_SPEED_ARGS]
        for i in vm.all_interfaces:
            args.append(f"{i.inside}=tuntap,{i.host},{i.mac or naming.stable_mac(i.host)}")
        return args

    def start(self, ctx: AgentContext, vms: list[VmLayout]) -> None:
        if not vms:
            return
        ctx.sdir.record(*({"op": "link", "name": i.host} for v in vms for i in v.all_interfaces))
        uid = self._uid(ctx)
        lines: list[C.Tokens] = []
        for v in vms:
            for i in v.all_interfaces:
                lines.append([*C.tap_add(i.host), "user", str(uid), "group", str(uid)])
                if i.bridge:
                    lines.append(C.link_set(i.host, master=i.bridge, mtu=i.mtu, quiet6=True,
                                            up=True))
                else:
                    lines.append(C.link_set(i.host, quiet6=True))
                    lines += [C.addr_add(i.host, a) for a in i.host_addresses]
                    lines.append(C.link_set(i.host, up=True))
        run(C.ip_batch_argv(), input=C.batch_text(lines), timeout=600)
        # at most uml_boot_slots boots at once (default: all), the rest as those become
        # ready (wait_ready)
        self._queue = list(vms)
        self._launch(ctx, boot_slots(ctx.config, len(vms)))

    def _launch(self, ctx: AgentContext, count: int) -> None:
        """Start the next ``count`` queued VMs (journalled in one write)."""
        todo, self._queue = self._queue[:max(0, count)], self._queue[max(0, count):]
        if todo:  # from the thread pool: each Popen waits for its exec
            ctx.sdir.record(*ctx.map(lambda v: self._spawn(ctx, v), todo))

    def _spawn(self, ctx: AgentContext, v: VmLayout) -> dict[str, Any]:
        d = ctx.sdir.vm_dir(v.name)
        uid = self._uid(ctx)
        (d / "uml").mkdir(parents=True, exist_ok=True)
        os.chown(d / "uml", uid, uid)
        binds = d / "jail.binds"
        lines = []
        for k, src, dst in self.binds(ctx, v):
            if dst == "/img/root" and k == "r" and not _can(os.stat(src), uid, 4):
                src = self._owner_view(ctx, d, src, uid)
            lines.append(f"{k} {src} {dst}\n")
        binds.write_text("".join(lines))
        size = _mem_bytes(_mem(v.vm.mem, ctx.config.uml_mem)) + (64 << 20)
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation",
                "private", "--", "/bin/sh", "-c", JAIL_SCRIPT, "ediv-jail", str(d / "jail"),
                str(uid), str(size), str(binds), *self.argv(ctx, v)]
        with open(d / "console.log", "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True, cwd=str(d),
                                 env=base_env(**{MARKER_VAR: naming.marker(ctx.sdir.key),
                                                 VM_VAR: v.name, "HOME": "/",
                                                 "TMPDIR": "/tmp"}))
        self._procs[v.name] = p
        register_child(p)
        ctx.runtime[v.name] = {"pid": p.pid, "start": start_time(p.pid)}
        ctx.emitter.vm(v.name, "booting", driver=self.name)
        return {"op": "proc", "vm": v.name, **ctx.runtime[v.name]}

    @staticmethod
    def _owner_view(ctx: AgentContext, d: Path, src: str, uid: int) -> str:
        """A backing image the scenario's uid may not read (owner-only, e.g. a 0600 image
        of ``ediv ovf convert``): bound once on ``img-root`` with its owner shown as the uid
        (read-only in the jail; unmounted at release like every journalled mount)."""
        view = d / "img-root"
        if not confine.is_mountpoint(view):
            view.touch(mode=0o600)
            ctx.sdir.record({"op": "mount", "path": str(view)})
            confine.owner_view(src, str(view), uid)
        return str(view)

    def boot(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Boot the VM again over its existing taps and copy-on-write file. What the last
        boot left in the share (ready flag, config result, jobs) and its UML dir (whose pid
        file would make UML think the umid is in use) are cleared; the console log of the
        previous run is kept as ``console.log.1``."""
        d = ctx.sdir.vm_dir(vm.name)
        share = self._share(ctx, vm)
        for name in ("ready", "config.rc", "config.log"):
            (share / name).unlink(missing_ok=True)
        for job in (share / "jobs").iterdir():
            job.unlink()
        shutil.rmtree(d / "uml", ignore_errors=True)
        (d / "uml").mkdir()
        os.chown(d / "uml", self._uid(ctx), self._uid(ctx))
        if (d / "console.log").exists():
            os.replace(d / "console.log", d / "console.log.1")
        ctx.sdir.record(self._spawn(ctx, vm))

    def request_halt(self, ctx: AgentContext, vm: VmLayout) -> None:
        """Ask the boot disk's runner to sync, remount the root read-only and power off
        (UML exits); no reply is awaited: the caller waits for the process to end."""
        self._submit(ctx, vm, HALT_SCRIPT, "sys")

    def wait_ready(self, ctx: AgentContext, vms: list[VmLayout], timeout: float) -> None:
        """Until every VM of ``vms`` wrote ``ready``, starting queued VMs as slots free up;
        each VM has ``timeout`` seconds from its own start. Console logs are read from where
        the last poll stopped (a panic or the console's pty shows up there)."""
        slots = boot_slots(ctx.config, len(vms) + len(self._queue))
        pending = {v.name: v for v in vms}
        queued = {v.name for v in self._queue}
        started: dict[str, float] = {}
        consoles: dict[str, _Console] = {}
        try:
            while pending:
                booting = [n for n in pending if n not in queued]
                if len(booting) < slots and self._queue:
                    self._launch(ctx, slots - len(booting))
                    queued = {v.name for v in self._queue}
                    booting = [n for n in pending if n not in queued]
                now = time.monotonic()
                for name in booting:
                    v = pending[name]
                    started.setdefault(name, now)
                    con = consoles.get(name)
                    if con is None:
                        con = consoles[name] = _Console(ctx.sdir.vm_dir(name) / "console.log")
                    if self._boot_done(ctx, v, con):
                        ctx.emitter.vm(name, "running", driver=self.name,
                                       pid=ctx.runtime[name]["pid"])
                        del pending[name]
                    elif now - started[name] > timeout:
                        late = sorted(n for n in pending if n not in queued
                                      and now - started.get(n, now) > timeout)
                        raise EdivError(f"UML VMs not ready after {timeout:.0f}s: "
                                        f"{', '.join(late)} (see console.log in the state dir)")
                if pending:
                    time.sleep(0.02)
        finally:
            for con in consoles.values():
                con.close()

    def _boot_done(self, ctx: AgentContext, v: VmLayout, con: _Console) -> bool:
        """True once ``v`` is ready; raises when its boot failed (config, exit, panic)."""
        name = v.name
        share = self._share(ctx, v)
        log = con.path
        text = con.read_new()
        m = _PTS_RE.search(text)
        if m:
            ctx.runtime[name]["console"] = m.group(1)
        rc_file = share / "config.rc"
        if rc_file.exists() and rc_file.read_text().strip() not in ("", "0"):
            cfg = (share / "config.log").read_text(errors="replace")
            raise EdivError(f"vm {name}: boot configuration failed: {cfg.strip()[-400:]}")
        p = self._procs.get(name)
        if p is not None and p.poll() is not None:
            raise EdivError(f"vm {name}: UML exited with {p.returncode}: "
                            f"{log.read_text(errors='replace').strip()[-600:]}")
        if _PANIC_RE.search(text):  # a panicking UML hangs instead of exiting: fail now
            raise EdivError(f"vm {name}: kernel panic during boot: {_panic(log)}")
        if not (share / "ready").exists():
            return False
        text = con.read_new(flush=True)  # the pty line may just precede ready
        m = _PTS_RE.search(text)
        if m:
            ctx.runtime[name]["console"] = m.group(1)
        return True

    # -- exec channel -------------------------------------------------------------------
    def _alive(self, ctx: AgentContext, vm: VmLayout) -> None:
        if not vm_running(ctx, vm):
            raise EdivError(f"vm {vm.name}: UML is not running")

    def _submit(self, ctx: AgentContext, vm: VmLayout, script: str, kind: str) -> Path:
        """Drop a job for the VM's runner; returns the job's path without suffix."""
        jobs = self._share(ctx, vm) / "jobs"
        with self._job_lock:
            self._job_seq += 1
            n = f"{os.getpid()}-{self._job_seq}"
        tmp = jobs / f"{n}.tmp"
        tmp.write_text(script)
        os.replace(tmp, jobs / f"{n}.{kind}")
        return jobs / n

    def _job(self, ctx: AgentContext, vm: VmLayout, script: str, kind: str) -> tuple[int, str]:
        self._alive(ctx, vm)
        job = self._submit(ctx, vm, script, kind)
        jobs, n = job.parent, job.name
        rc_path = jobs / f"{n}.rc"
        deadline = time.monotonic() + ctx.config.exec_timeout
        delay = 0.01
        while not rc_path.exists():
            interrupts.check()  # a worker thread stops waiting once the verb is stopped
            if time.monotonic() > deadline:
                return 124, "[ediv: timed out waiting for the VM]"
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
            if delay >= 0.2:
                self._alive(ctx, vm)
        rc = int(rc_path.read_text().strip() or 1)
        out = (jobs / f"{n}.out").read_text(errors="replace")
        for suffix in ("rc", "out", "run"):
            (jobs / f"{n}.{suffix}").unlink(missing_ok=True)
        return rc, out

    def exec(self, ctx: AgentContext, vm: VmLayout, commands: list[str]) -> list[ExecResult]:
        return [ExecResult(c, *self._job(ctx, vm, c + "\n", "job")) for c in commands]

    def put_files(self, ctx: AgentContext, vm: VmLayout, src_dir: Path, dst: str) -> None:
        xfer = Path(tempfile.mkdtemp(dir=self._share(ctx, vm) / "xfer"))
        try:
            shutil.copytree(src_dir, xfer / "t", symlinks=True)
            uid = self._uid(ctx)
            for path in [xfer, *xfer.rglob("*")]:
                os.lchown(path, uid, uid)
            inner = f"/ediv/xfer/{xfer.name}/t"
            target = "/newroot/" + dst.lstrip("/")
            rc, out = self._job(ctx, vm, f"B=/bin/busybox\n$B mkdir -p {shlex.quote(target)} && "
                                         f"$B cp -a {inner}/. {shlex.quote(target)}/\n", "sys")
            if rc != 0:
                raise EdivError(f"vm {vm.name}: copying {src_dir} to {dst} failed: {out.strip()}")
        finally:
            shutil.rmtree(xfer, ignore_errors=True)

    def runtime_info(self, ctx: AgentContext, vm: VmLayout) -> dict[str, Any]:
        rt = ctx.runtime.get(vm.name, {})
        return {"pid": rt.get("pid"), "start": rt.get("start"),
                "console": rt.get("console"),
                "log": str(ctx.sdir.vm_dir(vm.name) / "console.log")}
