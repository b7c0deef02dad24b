"""Start and stop the WBEM server in-process.

HTTP is served by cheroot (CherryPy's production WSGI server: thread pool, HTTP/1.1
keep-alive and chunked bodies, TLS through the standard ssl module), which keeps this package
to the CIM work.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from ediv.provider.auth import UserStore
from ediv.provider.config import ServerConfig
from ediv.provider.interop import InteropModel
from ediv.provider.operations import Dispatcher
from ediv.provider.providers import ProviderRegistry
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE, Schema, load_schema
from ediv.provider.tls import default_names, ensure_self_signed
from ediv.provider.wbem_http import WBEMApp

log = logging.getLogger("ediv.provider")

# Called with (registry, dispatcher, config) before the server starts listening: how the
# root/ediv providers (state store, controller methods) are plugged in.
Plugin = Callable[[ProviderRegistry, Dispatcher, ServerConfig], None]


@dataclass
class ServerHandle:
    config: ServerConfig
    server: wsgi.Server
    dispatcher: Dispatcher
    registry: ProviderRegistry
    thread: threading.Thread
    _stopped: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.server.bind_addr[1]

    @property
    def host(self) -> str:
        return self.server.bind_addr[0]

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
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        self.thread.join(timeout=10)

    def wait(self) -> None:
        """Block until the server stops (for the command line)."""
        while self.thread.is_alive():
            self.thread.join(timeout=0.5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_dispatcher(config: ServerConfig, schema: Schema | None = None,
                     plugins: list[Plugin] = ()) -> tuple[Dispatcher, ProviderRegistry]:
    schema = schema or load_schema(config.schema_cache_dir)
    registry = ProviderRegistry()
    dispatcher = Dispatcher(schema, registry, host=socket.getfqdn())
    InteropModel(registry, [INTEROP_NAMESPACE, EDIV_NAMESPACE]).register()
    for plugin in plugins:
        plugin(registry, dispatcher, config)
    return dispatcher, registry


def _ssl_adapter(config: ServerConfig) -> BuiltinSSLAdapter:
    if ensure_self_signed(config.cert_file, config.key_file, default_names()):
        log.info("generated self-signed certificate %s", config.cert_file)
    adapter = BuiltinSSLAdapter(str(config.cert_file), str(config.key_file))
    ctx = adapter.context
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(config.client_ca))
    return adapter


def serve(config: ServerConfig, *, schema: Schema | None = None,
          plugins: list[Plugin] = ()) -> ServerHandle:
    """Start serving in a background thread; returns once the socket listens."""
    dispatcher, registry = build_dispatcher(config, schema, plugins)
    if config.ovf_require_signature or config.ovf_trust:
        from ediv.ovf import policy

        policy.use(config.trust_policy())  # for every OVF package this process reads
    app = WBEMApp(dispatcher, UserStore(config.users_file), config.max_body_bytes)
    server = wsgi.Server((config.listen_host, config.listen_port), app,
                         numthreads=config.threads, server_name="ediv",
                         timeout=30, shutdown_timeout=5)
    if config.tls:
        server.ssl_adapter = _ssl_adapter(config)
    server.prepare()  # binds; raises OSError when the address is taken
    thread = threading.Thread(target=server.serve, name="ediv-wbem", daemon=True)
    thread.start()
    log.info("WBEM server listening on %s", config.listen)
    return ServerHandle(config, server, dispatcher, registry, thread)


def ensure_files(config: ServerConfig) -> None:
    """Create what a first start needs beside the config (certificate; users file dir)."""
    if config.tls:
        ensure_self_signed(config.cert_file, config.key_file, default_names())
    Path(config.users_file).parent.mkdir(parents=True, exist_ok=True)
