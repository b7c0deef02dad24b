"""Server configuration: a TOML file whose relative paths are taken beside the file.

    [server]
    listen = "0.0.0.0:5989"      # HOST:PORT ([v6]:PORT for IPv6)
    tls = true                   # false: plain HTTP (port 5988 by convention)
    certificate = "server.pem"   # generated, self-signed, when missing
    key = "server.key"
    client_ca = ""               # PEM bundle: client certificates signed by it are accepted
    users = "users.json"         # see ediv.provider.auth
    state = "state.db"           # state store of the controller
    cluster = ""                 # cluster.conf; default: the testbed's, when it exists
    data_dir = "data"            # scenarios defined over WBEM (their files) are kept here
    max_body_bytes = 16777216     # a CIM-XML request
    max_image_bytes = 8589934592  # an image uploaded to PUT /ediv/images/sha256/HEX (8 GiB)
    threads = 8                  # worker threads doing the CIM work
    max_connections = 512        # open connections; beyond: 503 and closed
    max_requests = 64            # requests waiting for or in a worker; beyond: 503
    handshake_timeout = 10       # seconds for a TLS handshake
    idle_timeout = 15            # seconds a connection may sit without a request in progress
    read_timeout = 30            # seconds for one read and for a whole request body
    file_dirs = []               # dirs whose files scenarios may name by absolute path
                                 # (besides their own Archive); default none
    indication_listeners = []    # where indications may be sent: "HOST", "HOST:PORT" or
                                 # "SCHEME://HOST:PORT"; default none (docs/threat-model.md)
    login_failures = 10          # failed logins an address may make in a burst...
    login_refill_seconds = 2.0   # ...then one more per this many seconds (else HTTP 429)
    ovf_trust = ""               # CAs trusted to sign OVF packages; default the system bundle
    ovf_require_signature = false  # true: unsigned/untrusted packages are refused (ovf.policy)

A missing file means these defaults, with every file kept beside where the config would be.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ediv.errors import Diagnostic, InputError

DEFAULT_PORT_TLS = 5989
DEFAULT_PORT_PLAIN = 5988
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_MAX_IMAGE = 8 * 1024**3


@dataclass
class ServerConfig:
    config_dir: Path
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT_TLS
    tls: bool = True
    cert_file: Path = field(default=Path("server.pem"))
    key_file: Path = field(default=Path("server.key"))
    client_ca: Path | None = None
    users_file: Path = field(default=Path("users.json"))
    state_path: Path = field(default=Path("state.db"))
    cluster_file: Path | None = None
    data_dir: Path = field(default=Path("data"))
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_image_bytes: int = DEFAULT_MAX_IMAGE
    threads: int = 8
    max_connections: int = 512
    max_requests: int = 64
    handshake_timeout: float = 10.0
    idle_timeout: float = 15.0
    read_timeout: float = 30.0
    schema_cache_dir: Path | None = None
    file_dirs: list[Path] = field(default_factory=list)
    indication_listeners: list[str] = field(default_factory=list)
    login_failures: int = 10
    login_refill_seconds: float = 2.0
    ovf_trust: Path | None = None
    ovf_require_signature: bool = False

    def trust_policy(self):
        """The OVF trust policy of this server (``ediv.ovf.policy``)."""
        from ediv.ovf.policy import TrustPolicy

        return TrustPolicy(require_signature=self.ovf_require_signature,
                           trust=str(self.ovf_trust) if self.ovf_trust else None)

    @property
    def listen(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


def default_config_path() -> Path:
    env = os.environ.get("EDIV_SERVER_CONFIG")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/ediv/server.toml")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ediv" / "server.toml"


def _testbed_cluster() -> Path | None:
    from ediv import testbed

    default = Path(testbed.DEFAULT_DIR) / "cluster.conf"
    return default if default.exists() else None


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"invalid port in {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"invalid port in {text!r}")
    return host or "0.0.0.0", number


def _strings(data: dict, key: str) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return [v.strip() for v in value if v.strip()]


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


def load_config(path: Path | str | None = None, *, listen: str | None = None,
                state: Path | str | None = None) -> ServerConfig:
    path = Path(path) if path else default_config_path()
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8")).get("server", {})
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(Diagnostic(str(path), 0, f"invalid config: {exc}")) from None
    base = path.resolve().parent

    def file(key: str, default: str | None) -> Path | None:
        value = data.get(key, default)
        if not value:
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base / p

    try:
        tls = bool(data.get("tls", True))
        host, port = parse_listen(
            listen or str(data.get("listen", "")) or "0.0.0.0",
            DEFAULT_PORT_TLS if tls else DEFAULT_PORT_PLAIN)
        cfg = ServerConfig(
            config_dir=base, listen_host=host, listen_port=port, tls=tls,
            cert_file=file("certificate", "server.pem"), key_file=file("key", "server.key"),
            client_ca=file("client_ca", None), users_file=file("users", "users.json"),
            state_path=Path(state) if state else file("state", "state.db"),
            cluster_file=file("cluster", None) or _testbed_cluster(),
            data_dir=file("data_dir", "data"),
            max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY)),
            max_image_bytes=int(data.get("max_image_bytes", DEFAULT_MAX_IMAGE)),
            threads=int(data.get("threads", 8)),
            max_connections=int(data.get("max_connections", 512)),
            max_requests=int(data.get("max_requests", 64)),
            handshake_timeout=float(data.get("handshake_timeout", 10)),
            idle_timeout=float(data.get("idle_timeout", 15)),
            read_timeout=float(data.get("read_timeout", 30)),
            schema_cache_dir=file("schema_cache", None),
            file_dirs=[base / Path(str(d)).expanduser() for d in _strings(data, "file_dirs")],
            indication_listeners=_strings(data, "indication_listeners"),
            login_failures=int(data.get("login_failures", 10)),
            login_refill_seconds=float(data.get("login_refill_seconds", 2.0)),
            ovf_trust=file("ovf_trust", None),
            ovf_require_signature=_flag(data.get("ovf_require_signature", False)),
        )
    except (ValueError, TypeError) as exc:
        raise InputError(Diagnostic(str(path), 0, f"invalid config: {exc}")) from None
    try:
        from ediv.provider.indications import ListenerPolicy

        ListenerPolicy.parse(cfg.indication_listeners)
    except ValueError as exc:
        raise InputError(Diagnostic(str(path), 0, f"invalid config: {exc}")) from None
    if cfg.login_failures < 1 or cfg.login_refill_seconds <= 0:
        raise InputError(Diagnostic(str(path), 0, "login_failures must be >= 1 and "
                                    "login_refill_seconds > 0"))
    positive = ("max_body_bytes", "max_image_bytes", "threads", "max_connections", "max_requests",
                "handshake_timeout", "idle_timeout", "read_timeout")
    bad = [key for key in positive if getattr(cfg, key) <= 0]
    if bad:
        raise InputError(Diagnostic(str(path), 0, f"{', '.join(bad)} must be > 0"))
    return cfg
