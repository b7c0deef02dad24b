"""SSH to the hosts (paramiko): key authentication, verified host keys, one connection per host.

Host keys are checked against a known_hosts file; an unknown host is refused with a clear
error unless the caller opts in to trust on first use (``trust_new=True``), in which case the
new key is saved to the known_hosts file, exactly once, and verified ever after.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ediv.cluster import Cluster, Host
from ediv.errors import EdivError

CONNECT_TIMEOUT = 10.0

# paramiko logs transport failures with tracebacks; ediv reports them as one clear line
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


class HostUnreachable(EdivError):
    """The host cannot be reached or refuses us (network, sshd down, auth, host key)."""

    def __init__(self, host: str, reason: str):
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class AgentFailed(EdivError):
    def __init__(self, host: str, message: str, result: dict | None = None,
                 status: int | None = None):
        self.host = host
        self.result = result or {}
        self.status = status  # the agent's exit status
        super().__init__(f"{host}: {message}")


@dataclass
class SshOptions:
    key_file: str | None = None
    known_hosts: str | None = None
    trust_new: bool = False  # trust on first use: save unknown host keys (opt-in)
    connect_timeout: float = CONNECT_TIMEOUT

    @classmethod
    def from_cluster(cls, cluster: Cluster, trust_new: bool = False) -> SshOptions:
        return cls(key_file=cluster.ssh_key, known_hosts=cluster.known_hosts, trust_new=trust_new)


class _SaveNewKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, path: str | None, lock: threading.Lock):
        self.path, self.lock = path, lock

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.path:
            with self.lock:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class Connections:
    """One SSH connection per host, reused for every command and transfer; thread-safe."""

    def __init__(self, options: SshOptions):
        self.options = options
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._lock = threading.Lock()
        self._known_lock = threading.Lock()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    def client(self, host: Host) -> paramiko.SSHClient:
        with self._lock:
            c = self._clients.get(host.name)
            if c is not None and c.get_transport() and c.get_transport().is_active():
                return c
        c = self._connect(host)
        with self._lock:
            self._clients[host.name] = c
        return c

    def _connect(self, host: Host) -> paramiko.SSHClient:
        opts = self.options
        known = opts.known_hosts or str(Path.home() / ".ssh" / "known_hosts")
        client = paramiko.SSHClient()
        try:
            if Path(known).exists():
                client.load_host_keys(known)
        except OSError as exc:
            raise HostUnreachable(host.name, f"cannot read known_hosts {known}: {exc}") from None
        client.set_missing_host_key_policy(
            _SaveNewKey(known, self._known_lock) if opts.trust_new else paramiko.RejectPolicy()
        )
        address = host.address or host.name
        try:
            client.connect(
                address,
                port=host.ssh_port,
                username=host.ssh_user,
                key_filename=opts.key_file,
                look_for_keys=opts.key_file is None,
                allow_agent=opts.key_file is None,
                timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout,
                auth_timeout=opts.connect_timeout,
            )
        except paramiko.BadHostKeyException:
            raise HostUnreachable(
                host.name,
                f"host key of {address} does NOT match {known}: refusing "
                "(if the host was reinstalled, remove its old line from known_hosts)",
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostUnreachable(
                    host.name,
                    f"host key of {address} is unknown (not in {known}); add it, or "
                    "pass --trust-new-hosts to trust it on first use",
                ) from None
            raise HostUnreachable(host.name, f"ssh to {address}: {exc}") from None
        except OSError as exc:
            raise HostUnreachable(
                host.name, f"cannot connect to {address}:{host.ssh_port}: {exc.strerror or exc}"
            ) from None
        return client

    def put_bytes(self, host: Host, data: bytes, remote: str) -> None:
        """Upload ``data`` as the file ``remote`` (SFTP, straight from memory)."""
        sftp = self.client(host).open_sftp()
        try:
            sftp.putfo(io.BytesIO(data), remote)
        finally:
            sftp.close()

    def run(
        self,
        host: Host,
        command: str,
        *,
        stdin: bytes | None = None,
        on_line: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, str]:
        """Run ``command``; stream stdout lines to ``on_line``; (exit status, stdout, stderr)."""
        transport = self.client(host).get_transport()
        chan = transport.open_session(timeout=self.options.connect_timeout)
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin is not None:
            chan.sendall(stdin)
        chan.shutdown_write()
        out_lines: list[str] = []
        err = bytearray()
        stdout = chan.makefile("rb")
        stderr = chan.makefile_stderr("rb")
        reader = threading.Thread(target=lambda: err.extend(stderr.read()), daemon=True)
        reader.start()
        for raw in stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            out_lines.append(line)
            if on_line:
                on_line(line)
        status = chan.recv_exit_status()
        reader.join(timeout=5)
        chan.close()
        return status, "\n".join(out_lines), err.decode("utf-8", "replace")


def agent_command(host: Host, verb: str, *args: str) -> str:
    return " ".join([host.agent, shlex.quote(verb), *(shlex.quote(a) for a in args)])


def run_agent(
    conns: Connections,
    host: Host,
    verb: str,
    *args: str,
    stdin: bytes | None = None,
    on_event: Callable[[dict], None] | None = None,
    timeout: float | None = None,
    ok_status: tuple[int, ...] = (0,),
) -> dict:
    """Run the host agent; JSON lines are events, the last ``result`` is returned; an
    ``error`` event or an exit status outside ``ok_status`` raises AgentFailed."""
    result: dict = {}
    errors: list[str] = []

    def on_line(line: str) -> None:
        nonlocal result
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        if event.get("event") == "result":
            result = event
        elif event.get("event") == "error":
            errors.append(str(event.get("message", "agent error")))
        if on_event:
            on_event(event)

    status, _out, err = conns.run(
        host, agent_command(host, verb, *args), stdin=stdin, on_line=on_line, timeout=timeout
    )
    if status not in ok_status or errors:
        message = "; ".join(errors) or (err.strip().splitlines() or [f"agent exited {status}"])[-1]
        raise AgentFailed(host.name, message, result, status)
    return result
