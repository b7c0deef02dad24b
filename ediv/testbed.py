"""A local testbed: N "hosts" on this machine, each a network namespace with its own sshd.

Layout (all names derive from the testbed directory, so two testbeds never collide):
- a bridge in the root namespace is the switch; the controller reaches the hosts through it
  at ``198.19.K.1/24`` (K chosen so no existing route overlaps);
- host i is the namespace ``<prefix>h<i>`` with ``eth0`` at ``198.19.K.(10+i)/24``, a veth
  whose other end is a port of the switch, and an sshd listening only there;
- keys: one ed25519 host key per host, one client key; ``known_hosts`` lists the host keys,
  so SSH host keys are verified like on a real cluster;
- ``cluster.conf`` names the hosts with their addresses, the key, the known_hosts file and
  the agent command (its state directory is per host, since the hosts share one filesystem).
Nothing is routed or bridged to the machine's uplink: the switch has no other port and IP
forwarding is left as it is. ``down`` removes every namespace, link, process and file.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ediv.errors import EdivError
from ediv.private import private_dir, write_private

DEFAULT_DIR = "/var/lib/ediv/testbed"
UNDERLAY_SUPERNET = ipaddress.IPv4Network("198.19.0.0/16")
SSHD = "/usr/sbin/sshd"


@dataclass
class TestbedHost:
    name: str
    netns: str
    veth: str
    address: str
    state_dir: str
    sshd_pid: int = 0


@dataclass
class Testbed:
    dir: str
    prefix: str
    bridge: str
    subnet: str
    gateway: str
    hosts: list[TestbedHost] = field(default_factory=list)

    @property
    def cluster_conf(self) -> Path:
        return Path(self.dir) / "cluster.conf"

    def save(self) -> None:
        path = Path(self.dir) / "testbed.json"
        write_private(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Testbed | None:
        path = Path(directory) / "testbed.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        hosts = [TestbedHost(**h) for h in data.pop("hosts")]
        return cls(**data, hosts=hosts)


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise EdivError(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _prefix_for(directory: Path) -> str:
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()
    return f"et{digest[:4]}"


def _free_subnet(prefix: str) -> ipaddress.IPv4Network:
    """A /24 of 198.19.0.0/16 that no route of the root namespace overlaps."""
    routes = _run("ip", "-j", "-4", "route", "show", "table", "all", check=False).stdout
    used = []
    for r in json.loads(routes or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
            except ValueError:
                continue
    start = int(prefix[2:], 16) % 250
    subnets = list(UNDERLAY_SUPERNET.subnets(new_prefix=24))
    for k in range(250):
        candidate = subnets[1 + (start + k) % 250]
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise EdivError("no free /24 left in 198.19.0.0/16 for the testbed underlay")


def _agent_command(state_dir: str, config: Path) -> str:
    exe = Path(sys.executable).with_name("ediv-host")
    agent = str(exe) if exe.exists() else f"{sys.executable} -m ediv.agent.main"
    return f"{agent} --state-dir {state_dir} --config {config}"


def host_image_store(tb: Testbed, host: TestbedHost) -> str:
    """Where deploys ship images for ``host``: its own store (the hosts share a filesystem,
    so one store for all would hide what each host was sent); removed with the testbed."""
    return str(Path(tb.dir) / host.name / "images")


def _write_agent_config(tb: Testbed, image_paths: tuple[str, ...]) -> Path:
    """The agents' settings: VM images may come from DIR/images/, the local image store and
    the directories the caller names (the agent refuses every other <filesystem> path)."""
    from ediv.agent.config import DEFAULT_IMAGE_PATHS

    d = Path(tb.dir)
    (d / "images").mkdir(mode=0o700, exist_ok=True)
    paths = [*DEFAULT_IMAGE_PATHS, f"{d / 'images'}/",
             *(f"{host_image_store(tb, h)}/" for h in tb.hosts),
             *(p if p.endswith("/") or Path(p).is_file() else f"{p}/" for p in image_paths)]
    path = d / "agent.json"
    path.write_text(json.dumps({"vm_image_paths": paths}, indent=2))
    path.chmod(0o600)
    return path


def up(hosts: int, directory: str | Path = DEFAULT_DIR, progress=print,
       image_paths: tuple[str, ...] | list[str] = ()) -> Testbed:
    """Build the testbed; on any failure, remove what was built and re-raise.

    ``image_paths``: directories (or files) the hosts' agents accept VM images from, besides
    DIR/images/ and the agent's defaults."""
    if os.geteuid() != 0:
        raise EdivError("the testbed needs root (network namespaces, sshd)")
    if not 1 <= hosts <= 64:
        raise EdivError("a testbed has 1 to 64 hosts")
    if not Path(SSHD).exists():
        raise EdivError(f"{SSHD} not found: apt-get install openssh-server")
    d = Path(directory).resolve()
    if Testbed.load(d) is not None:
        raise EdivError(f"a testbed already runs in {d}; 'ediv testbed down --dir {d}' first")
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    prefix = _prefix_for(d)
    subnet = _free_subnet(prefix)
    gateway = next(subnet.hosts())
    tb = Testbed(
        dir=str(d), prefix=prefix, bridge=f"{prefix}sw", subnet=str(subnet), gateway=str(gateway)
    )
    try:
        tb.save()
        _run("ip", "link", "add", tb.bridge, "type", "bridge")
        tb.save()
        _run("ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", tb.bridge)
        _run("ip", "link", "set", tb.bridge, "up")
        _keygen(d / "id_ed25519")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        for i in range(1, hosts + 1):
            host = TestbedHost(
                name=f"h{i}",
                netns=f"{prefix}h{i}",
                veth=f"{prefix}h{i}",
                address=str(subnet.network_address + 10 + i),
                state_dir=str(d / f"h{i}" / "state"),
            )
            tb.hosts.append(host)
            tb.save()
            _make_host(tb, host, subnet.prefixlen)
            tb.save()
            progress(f"host {host.name}: {host.address} (namespace {host.netns})")
        _write_known_hosts(tb)
        _write_cluster_conf(tb, _write_agent_config(tb, tuple(str(p) for p in image_paths)))
        _wait_for_sshd(tb)
        tb.save()
    except BaseException:
        down(d, progress=lambda _m: None)
        raise
    progress(f"cluster file: {tb.cluster_conf}")
    return tb


def _keygen(path: Path) -> None:
    if not path.exists():
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ediv-testbed", "-f", str(path))


def _make_host(tb: Testbed, host: TestbedHost, prefixlen: int) -> None:
    d = Path(tb.dir) / host.name
    d.mkdir(exist_ok=True)
    private_dir(host.state_dir)
    _run("ip", "netns", "add", host.netns)
    _run(
        "ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns
    )
    _run("ip", "link", "set", host.veth, "master", tb.bridge, "up")
    ns = ("ip", "-n", host.netns)
    _run(*ns, "link", "set", "lo", "up")
    _run(*ns, "addr", "add", f"{host.address}/{prefixlen}", "dev", "eth0")
    _run(*ns, "link", "set", "eth0", "up")
    _keygen(d / "ssh_host_ed25519_key")
    auth = d / "authorized_keys"
    auth.write_text((Path(tb.dir) / "id_ed25519.pub").read_text())
    auth.chmod(0o600)
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {host.address}",
                "Port 22",
                f"HostKey {d / 'ssh_host_ed25519_key'}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "PrintMotd no",
                "MaxStartups 64:30:128",
                "MaxSessions 64",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    # its own UTS namespace too, so `hostname` on the host says which host it is
    _run(
        "ip",
        "netns",
        "exec",
        host.netns,
        "unshare",
        "--uts",
        "--",
        "sh",
        "-c",
        'hostname "$1" && exec "$2" -f "$3" -E "$4"',
        "sh",
        f"{tb.prefix}-{host.name}",
        SSHD,
        str(config),
        str(d / "sshd.log"),
    )
    pidfile = d / "sshd.pid"
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            host.sshd_pid = int(pidfile.read_text().strip())
            return
        time.sleep(0.05)
    raise EdivError(f"sshd of {host.name} did not start; see {d / 'sshd.log'}")


def _write_known_hosts(tb: Testbed) -> None:
    lines = []
    for host in tb.hosts:
        pub = (Path(tb.dir) / host.name / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{host.address} {pub[0]} {pub[1]}")
    (Path(tb.dir) / "known_hosts").write_text("\n".join(lines) + "\n")


def _write_cluster_conf(tb: Testbed, agent_config: Path) -> None:
    d = Path(tb.dir)
    out = [
        "# Written by 'ediv testbed up': a local testbed of network-namespace hosts.",
        "[cluster]",
        *[f"host = {h.name}" for h in tb.hosts],
        "default_segmentation = RoundRobin",
        "mgmt_network = 198.18.128.0",
        "mgmt_network_mask = 17",
        "interconnect = vxlan",
        f"ssh_key = {d / 'id_ed25519'}",
        f"known_hosts = {d / 'known_hosts'}",
        "",
        "[vxlan]",
        "first = 1000",
        "last = 1999",
        "",
    ]
    for h in tb.hosts:
        out += [
            f"[{h.name}]",
            "mem = 2048",
            "cpu = 100",
            "max_vhost = 0",
            "ifname = eth0",
            f"address = {h.address}",
            "ssh_user = root",
            "vm_type = container",
            f"image_store = {host_image_store(tb, h)}",
            f"agent = {_agent_command(h.state_dir, agent_config)}",
            "",
        ]
    tb.cluster_conf.write_text("\n".join(out))


def _wait_for_sshd(tb: Testbed, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    pending = list(tb.hosts)
    while pending and time.monotonic() < deadline:
        host = pending[0]
        try:
            with socket.create_connection((host.address, 22), timeout=1):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)
    if pending:
        raise EdivError(f"sshd of {pending[0].name} is not reachable at {pending[0].address}:22")


def down(directory: str | Path = DEFAULT_DIR, progress=print) -> bool:
    """Remove everything ``up`` made in ``directory``; True when there was a testbed."""
    d = Path(directory).resolve()
    tb = Testbed.load(d)
    if tb is None:
        return False
    for host in tb.hosts:
        _stop_sshd(Path(tb.dir) / host.name / "sshd.pid", host.sshd_pid)
        _purge_agent(host, d / "agent.json")
        _run("ip", "netns", "del", host.netns, check=False)
        _run("ip", "link", "del", host.veth, check=False)
        progress(f"host {host.name}: removed")
    _run("ip", "link", "del", tb.bridge, check=False)
    for name in ["testbed.json", "cluster.conf", "known_hosts", "id_ed25519", "id_ed25519.pub",
                 "agent.json"]:
        (d / name).unlink(missing_ok=True)
    for host in tb.hosts:
        shutil.rmtree(d / host.name, ignore_errors=True)
    with contextlib.suppress(OSError):
        (d / "images").rmdir()  # only when empty: images the user put there stay
    with contextlib.suppress(OSError):
        d.rmdir()  # only when empty: the user's own files stay
    return True


def _stop_sshd(pidfile: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _purge_agent(host: TestbedHost, config: Path) -> None:
    """Whatever the agent of this host still runs (a scenario never released, an image
    still mounted) goes too."""
    if not any(Path(host.state_dir).glob("*")):
        return
    agent = _agent_command(host.state_dir, config).split()
    subprocess.run(
        ["ip", "netns", "exec", host.netns, *agent, "purge"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
