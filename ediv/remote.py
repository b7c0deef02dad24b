"""SSH to the hosts (paramiko): key authentication, verified host keys, one connection per host.

Host keys are checked against a known_hosts file; an unknown host is refused with a clear
error unless the caller opts in to trust on first use (``trust_new=True``), in which case the
new key is saved to the known_hosts file, exactly once, and verified ever after.

Time is bounded everywhere: connect, banner and authentication take at most
``connect_timeout``; once connected, a host that sends nothing for ``host_timeout`` seconds
(link down, sshd or agent stopped) is declared lost: the agent sends a heartbeat line well
within that bound (``--heartbeat``), the SSH transport sends keepalives and the socket has a
TCP user timeout, so neither a silent peer nor unacknowledged data blocks the controller.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ediv.agent_session import AgentSession, NoSession
from ediv.cluster import Cluster, Host
from ediv.errors import EdivError
from ediv.protocol import SESSION_VERBS

CONNECT_TIMEOUT = 10.0
HOST_TIMEOUT = 60.0  # the longest the controller waits on a silent host

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
    host_timeout: float = HOST_TIMEOUT  # silence that means the host is lost

    @classmethod
    def from_cluster(cls, cluster: Cluster, trust_new: bool = False) -> SshOptions:
        bound = float(getattr(cluster, "host_timeout", HOST_TIMEOUT))
        return cls(key_file=cluster.ssh_key, known_hosts=cluster.known_hosts, trust_new=trust_new,
                   connect_timeout=min(CONNECT_TIMEOUT, bound), host_timeout=bound)

    @property
    def heartbeat(self) -> float:
        """How often agents say they are alive: several times within the bound."""
        return max(0.5, self.host_timeout / 4)


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
    """One SSH connection per host, reused for every command and transfer; thread-safe.

    ``sessions``: agent verbs run in one ``ediv-host session`` per host (started by the first
    verb, reused by the next ones, ended by ``close``), not one agent process per verb."""

    def __init__(self, options: SshOptions, *, sessions: bool = False):
        self.options = options
        self.sessions = sessions
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._sessions: dict[str, AgentSession] = {}
        self._no_session: set[str] = set()  # hosts whose agent has no session mode
        self._lock = threading.Lock()
        self._known_lock = threading.Lock()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End every agent session, then close the connections: an idle agent reads the end
        of its input and exits; a verb still running loses its reader and stops (a deploy
        rolls back). Nothing waits for the agents: a command's end (and a job's claim given
        back after it) is not held up by the hosts' exits."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close()
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    def drop(self, host: Host) -> None:
        """Forget (and close) the connection to ``host`` and its agent session: the next use
        reconnects (and starts a new session)."""
        with self._lock:
            c = self._clients.pop(host.name, None)
            s = self._sessions.pop(host.name, None)
        if s is not None:
            s.close()
        if c is not None:
            c.close()

    def session(self, host: Host) -> AgentSession | None:
        """The host's agent session, started if need be; None when sessions are off or the
        host's agent has none."""
        if not self.sessions or host.name in self._no_session:
            return None
        with self._lock:
            s = self._sessions.get(host.name)
        if s is not None and s.alive:
            return s
        if s is not None:  # it ended (agent killed between verbs): start another
            self.drop(host)
        opts = self.options
        with self._dropped_when_lost(host):
            s = AgentSession.open(host, self.client(host).get_transport(),
                                  agent_command(host, "session", heartbeat=opts.heartbeat),
                                  connect_timeout=opts.connect_timeout, bound=opts.host_timeout)
        with self._lock:
            self._sessions[host.name] = s
        return s

    def run_in_session(self, host: Host, verb: str, args: tuple[str, ...], *,
                       stdin: bytes | None, on_line: Callable[[str], None],
                       deadline: float | None, timeout: float | None) -> tuple[int, str] | None:
        """Run ``verb`` in the host's agent session: (exit status, stderr); None when there is
        no session to use (off, the host's agent has none, or it is busy with another verb
        of this command): the caller runs the one-shot verb."""
        s = self.session(host)
        if s is None or not s.lock.acquire(blocking=False):
            return None
        try:
            with self._dropped_when_lost(host):
                return s.request(verb, args, stdin=stdin, deadline=deadline, timeout=timeout,
                                 on_line=on_line,
                                 unreachable=lambda why: HostUnreachable(host.name, why))
        except NoSession:
            self._no_session.add(host.name)
            with self._lock:
                if self._sessions.get(host.name) is s:
                    del self._sessions[host.name]
            s.close()
            return None
        finally:
            s.lock.release()

    @contextlib.contextmanager
    def _dropped_when_lost(self, host: Host) -> Iterator[None]:
        """A host that stops answering, or whose connection breaks, is dropped (the next call
        reconnects) and reported as HostUnreachable."""
        try:
            yield
        except HostUnreachable:
            self.drop(host)
            raise
        except (TimeoutError, paramiko.SSHException, EOFError, OSError) as exc:
            self.drop(host)
            raise HostUnreachable(host.name, f"connection lost: {exc or type(exc).__name__}"
                                  ) from None

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
        except (OSError, EOFError) as exc:
            client.close()
            raise HostUnreachable(
                host.name, f"cannot connect to {address}:{host.ssh_port}: "
                f"{getattr(exc, 'strerror', None) or exc or 'connection closed'}"
            ) from None
        _bound_transport(client.get_transport(), opts)
        return client

    def put_bytes(self, host: Host, data: bytes, remote: str) -> None:
        """Upload ``data`` as the file ``remote`` (SFTP, straight from memory)."""
        try:
            sftp = self.client(host).open_sftp()
            sftp.get_channel().settimeout(self.options.host_timeout)
            try:
                sftp.putfo(io.BytesIO(data), remote)
            finally:
                sftp.close()
        except (TimeoutError, paramiko.SSHException, EOFError, OSError) as exc:
            self.drop(host)
            raise HostUnreachable(host.name, f"upload to {remote}: {exc or 'timed out'}") from None

    def run(
        self,
        host: Host,
        command: str,
        *,
        stdin: bytes | None = None,
        on_line: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, str]:
        """Run ``command``; stream stdout lines to ``on_line``; (exit status, stdout, stderr).

        HostUnreachable when the host stays silent for ``host_timeout`` seconds or the whole
        command takes longer than ``timeout``; the connection is then dropped."""
        bound = self.options.host_timeout
        with self._dropped_when_lost(host):
            return self._run(host, command, stdin, on_line, timeout, bound)

    def _run(self, host: Host, command: str, stdin: bytes | None,
             on_line: Callable[[str], None] | None, timeout: float | None, bound: float
             ) -> tuple[int, str, str]:
        deadline = time.monotonic() + timeout if timeout else None
        transport = self.client(host).get_transport()
        chan = transport.open_session(timeout=min(self.options.connect_timeout, bound))
        try:
            chan.settimeout(bound)  # every recv/send: at most ``bound`` seconds of silence
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out_lines: list[str] = []
            err = bytearray()
            pending = b""
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    raise HostUnreachable(host.name, f"no answer within {timeout:g} s")
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    raise HostUnreachable(
                        host.name, f"silent for {bound:g} s (host, link, sshd or agent lost)"
                    ) from None
                while chan.recv_stderr_ready():
                    err.extend(chan.recv_stderr(65536))
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    out_lines.append(line)
                    if on_line:
                        on_line(line)
            if pending:
                out_lines.append(pending.decode("utf-8", "replace"))
                if on_line:
                    on_line(out_lines[-1])
            if not chan.status_event.wait(bound):
                raise HostUnreachable(host.name, f"no exit status within {bound:g} s")
            status = chan.recv_exit_status()
            if status == -1:
                raise HostUnreachable(host.name, "the session ended without an exit status "
                                      "(sshd, the agent or the connection was killed)")
            with_stderr_deadline = time.monotonic() + min(5.0, bound)
            while not chan.eof_received and time.monotonic() < with_stderr_deadline:
                if not chan.recv_stderr_ready():
                    time.sleep(0.01)
                    continue
                err.extend(chan.recv_stderr(65536))
            while chan.recv_stderr_ready():
                err.extend(chan.recv_stderr(65536))
            return status, "\n".join(out_lines), err.decode("utf-8", "replace")
        finally:
            chan.close()


def _bound_transport(transport: paramiko.Transport | None, opts: SshOptions) -> None:
    """Keepalives and TCP timeouts on a fresh connection: a peer that stops acknowledging
    (link down) errors out within ``host_timeout`` instead of TCP's ~15 minutes."""
    if transport is None:
        return
    transport.set_keepalive(max(1, int(opts.heartbeat)))
    sock = transport.sock
    if not isinstance(sock, socket.socket):
        return
    bound = max(2, int(opts.host_timeout))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_USER_TIMEOUT", bound * 1000), ("TCP_KEEPIDLE", max(1, bound // 3)),
                        ("TCP_KEEPINTVL", max(1, bound // 6)), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, opt, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, opt, value)


HEARTBEAT = "alive"  # the agent's keep-alive event (not passed on to on_event)


def agent_command(host: Host, verb: str, *args: str, deadline: float | None = None,
                  heartbeat: float | None = None) -> str:
    """The agent's command line: its own options (deadline of the verb, heartbeat), the verb,
    the verb's arguments."""
    opts = []
    if heartbeat:
        opts += ["--heartbeat", f"{heartbeat:g}"]
    if deadline:
        opts += ["--deadline", f"{deadline:g}"]
    return " ".join([host.agent, *opts, shlex.quote(verb), *(shlex.quote(a) for a in args)])


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
    """Run the host agent's ``verb`` (in the host's agent session when ``conns`` has them,
    else as its own agent process); JSON lines are events, the last ``result`` is returned;
    an ``error`` event or an exit status outside ``ok_status`` raises AgentFailed.

    ``timeout`` is the verb's deadline: the agent stops its own work when it is over (and
    rolls a deploy back); the controller gives up a little later, and on a silent host after
    ``host_timeout`` seconds (HostUnreachable)."""
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
        if event.get("event") == HEARTBEAT:
            return
        if event.get("event") == "result":
            result = event
        elif event.get("event") == "error":
            errors.append(str(event.get("message", "agent error")))
        if on_event:
            on_event(event)

    margin = conns.options.host_timeout if timeout else None
    total = timeout + margin if timeout else None
    answer = None
    if verb in SESSION_VERBS:
        answer = conns.run_in_session(host, verb, tuple(args), stdin=stdin, on_line=on_line,
                                      deadline=timeout, timeout=total)
    if answer is None:  # one agent process for this verb
        command = agent_command(host, verb, *args, deadline=timeout,
                                heartbeat=conns.options.heartbeat)
        status, _out, err = conns.run(host, command, stdin=stdin, on_line=on_line,
                                      timeout=total)
    else:
        status, err = answer
    if status not in ok_status or errors:
        message = "; ".join(errors) or (err.strip().splitlines() or [f"agent exited {status}"])[-1]
        raise AgentFailed(host.name, message, result, status)
    return result
