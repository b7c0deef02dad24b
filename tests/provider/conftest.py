"""A real ediv WBEM server over HTTPS on 127.0.0.1 (ephemeral port) for the provider tests."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from wbem_support import HOSTS, USERS, connect

from ediv.provider.auth import Role, add_user
from ediv.provider.config import load_config
from ediv.provider.hosts import HostSystemProvider
from ediv.provider.schema import EDIV_NAMESPACE, load_schema
from ediv.provider.server import serve

# requests lets these variables override an explicit CA bundle; the tests pin the server's cert
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="session")
def wbem_server(tmp_path_factory):
    base: Path = tmp_path_factory.mktemp("wbem")
    cfg = load_config(base / "server.toml", listen="127.0.0.1:0")
    cfg.schema_cache_dir = base / "cache"
    cfg.max_body_bytes = 1024 * 1024
    for role, (name, password) in USERS.items():
        add_user(cfg.users_file, name, Role.parse(role), password)

    def hosts_plugin(registry, _dispatcher, _config):
        registry.register(EDIV_NAMESPACE, HostSystemProvider(HOSTS))

    saved = {k: os.environ.pop(k) for k in _CA_ENV if k in os.environ}
    handle = serve(cfg, schema=load_schema(cfg.schema_cache_dir), plugins=[hosts_plugin])
    try:
        yield handle
    finally:
        handle.stop()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def ca_file(wbem_server) -> str:
    return str(wbem_server.config.cert_file)


@pytest.fixture(scope="session")
def ssl_context(ca_file) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@pytest.fixture
def conn(wbem_server, ca_file):
    return connect(wbem_server, "reader", ca_file)

