"""Start and stop the WBEM server in-process.

HTTP and TLS are the transport's (``ediv.provider.transport``: HTTP/1.1 parsed by httptools
on a uvloop event loop, the CIM work in worker threads), which keeps this package to the CIM
work.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pywbem import CIMInstance, Uint16

from ediv.private import private_dir, tighten
from ediv.provider.auth import LoginThrottle, UserStore
from ediv.provider.config import ServerConfig
from ediv.provider.image_upload import ImageEndpoint
from ediv.provider.interop import InteropModel
from ediv.provider.operations import Dispatcher
from ediv.provider.providers import ProviderRegistry, StaticProvider, make_instance
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE, Schema, load_schema
from ediv.provider.tls import default_names, ensure_self_signed
from ediv.provider.transport import Limits, Transport
from ediv.provider.wbem_http import WBEMApp

log = logging.getLogger("ediv.provider")

# Called with (registry, dispatcher, config) before the server starts listening: how the
# root/ediv providers (state store, controller methods) are plugged in.
Plugin = Callable[[ProviderRegistry, Dispatcher, ServerConfig], None]


@dataclass
class ServerHandle:
    """A running WBEM server (``serve``): its transport, dispatcher and providers; ``stop``
    ends it gracefully."""

    config: ServerConfig
    transport: Transport
    dispatcher: Dispatcher
    registry: ProviderRegistry
    address: tuple[str, int]
    _stopped: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting; requests in flight get a few seconds, then their connections close."""
        if self._stopped:
            return
        self._stopped = True
        self.transport.stop()

    def wait(self) -> None:
        """Block until the server stops (for the command line)."""
        while self.transport.is_alive():
            self.transport.join(timeout=0.5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def management_system(name: str) -> CIMInstance:
    """The CIM_ComputerSystem this server runs on: the system that the management service's
    and the ObjectManager's SystemCreationClassName / SystemName keys name."""
    return make_instance("CIM_ComputerSystem",
                         {"CreationClassName": "CIM_ComputerSystem", "Name": name}, {
                             "ElementName": name,
                             "Caption": "the ediv management server",
                             "NameFormat": "Other",
                             "EnabledState": Uint16(2),
                             "OperationalStatus": [Uint16(2)],
                             "HealthState": Uint16(5),
                             "Dedicated": [Uint16(0)]})


def build_dispatcher(config: ServerConfig, schema: Schema | None = None,
                     plugins: list[Plugin] = ()) -> tuple[Dispatcher, ProviderRegistry]:
    schema = schema or load_schema(config.schema_cache_dir)
    registry = ProviderRegistry()
    dispatcher = Dispatcher(schema, registry, host=socket.getfqdn())
    InteropModel(registry, [INTEROP_NAMESPACE, EDIV_NAMESPACE]).register()
    system = management_system(dispatcher.host)
    for ns in (INTEROP_NAMESPACE, EDIV_NAMESPACE):
        registry.register(ns, StaticProvider("CIM_ComputerSystem", [system]))
    for plugin in plugins:
        plugin(registry, dispatcher, config)
    return dispatcher, registry


def ssl_context(config: ServerConfig) -> ssl.SSLContext:
    """TLS 1.2+, HTTP/1.1 only; client certificates optional, checked against client_ca."""
    if ensure_self_signed(config.cert_file, config.key_file, default_names()):
        log.info("generated self-signed certificate %s", config.cert_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(config.cert_file), str(config.key_file))
    ctx.set_alpn_protocols(["http/1.1"])
    if config.client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(config.client_ca))
    return ctx


def listen_socket(config: ServerConfig) -> socket.socket:
    """Bound, not yet listening (raises OSError when the address is taken)."""
    family = socket.AF_INET6 if ":" in config.listen_host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (without it, a response written in two pieces waited 40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.listen_host, config.listen_port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def limits(config: ServerConfig) -> Limits:
    return Limits(max_connections=config.max_connections, max_requests=config.max_requests,
                  handshake_timeout=config.handshake_timeout, idle_timeout=config.idle_timeout,
                  read_timeout=config.read_timeout)


def serve(config: ServerConfig, *, schema: Schema | None = None,
          plugins: list[Plugin] = ()) -> ServerHandle:
    """Start serving in a background thread; returns once the socket listens."""
    dispatcher, registry = build_dispatcher(config, schema, plugins)
    if config.ovf_require_signature or config.ovf_trust:
        from ediv.ovf import policy

        policy.use(config.trust_policy())  # for every OVF package this process reads
    ensure_files(config)
    throttle = LoginThrottle(config.login_failures, config.login_refill_seconds)
    app = WBEMApp(dispatcher, UserStore(config.users_file, throttle), config.max_body_bytes)
    sock = listen_socket(config)
    address = sock.getsockname()[:2]
    images = ImageEndpoint(app, config.max_image_bytes)
    transport = Transport(app, sock, ssl_context(config) if config.tls else None,
                          config.threads, limits(config), images)
    transport.start()
    log.info("WBEM server listening on %s", config.listen)
    return ServerHandle(config, transport, dispatcher, registry, address)


def ensure_files(config: ServerConfig) -> None:
    """Create what a first start needs beside the config (certificate; users file dir)."""
    if config.tls:
        ensure_self_signed(config.cert_file, config.key_file, default_names())
    if not Path(config.users_file).parent.exists():
        private_dir(Path(config.users_file).parent)
    tighten(config.users_file)
    if config.tls:
        tighten(config.key_file)
