"""Users file, config defaults and the `ediv server` commands."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ediv.errors import EdivError
from ediv.provider import cli as server_cli
from ediv.provider.auth import Role, UserStore, add_user, hash_password, verify_password
from ediv.provider.config import load_config, parse_listen


def test_password_hashes_are_salted_and_checked():
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("pw", a) and not verify_password("pW", a)
    assert not verify_password("pw", "scrypt$1$2$3$garbage")
    assert not verify_password("pw", "md5$x")


def test_user_store_follows_file_changes(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "ann", Role.READER, "one")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "one" not in path.read_text()
    store = UserStore(path)
    assert store.authenticate("ann", "one").role is Role.READER
    assert store.authenticate("ann", "two") is None
    assert store.authenticate("bob", "one") is None
    time.sleep(0.01)
    add_user(path, "ann", Role.ADMIN, "two")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert store.authenticate("ann", "one") is None  # cached success is dropped
    assert store.authenticate("ann", "two").role is Role.ADMIN
    with pytest.raises(EdivError):
        add_user(path, "bad:name", Role.READER, "x")


def test_missing_config_means_defaults_beside_it(tmp_path):
    cfg = load_config(tmp_path / "conf" / "server.toml")
    assert cfg.tls and cfg.listen_port == 5989 and cfg.listen_host == "0.0.0.0"
    assert cfg.cert_file == tmp_path / "conf" / "server.pem"
    assert cfg.users_file == tmp_path / "conf" / "users.json"
    (tmp_path / "c.toml").write_text('[server]\ntls = false\nlisten = "127.0.0.1"\n'
                                     'users = "/etc/x/u.json"\nmax_body_bytes = 1000\n')
    cfg = load_config(tmp_path / "c.toml", listen=None, state=tmp_path / "s.db")
    assert not cfg.tls and cfg.listen_port == 5988 and cfg.users_file == Path("/etc/x/u.json")
    assert cfg.state_path == tmp_path / "s.db" and cfg.max_body_bytes == 1000
    assert parse_listen("[::1]:7000", 1) == ("::1", 7000)
    with pytest.raises(ValueError):
        parse_listen("host:notaport", 1)
    (tmp_path / "bad.toml").write_text("[server\n")
    with pytest.raises(EdivError):
        load_config(tmp_path / "bad.toml")


def _group() -> click.Group:
    @click.group()
    def cli() -> None:
        pass
    server_cli.register(cli)
    return cli


def test_adduser_reads_password_from_stdin(tmp_path):
    config = tmp_path / "etc" / "server.toml"
    result = CliRunner().invoke(
        _group(), ["server", "adduser", "carl", "--role", "operator", "--config", str(config)],
        input="s3cret\n")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "etc" / "users.json").read_text())
    assert data["users"]["carl"]["role"] == "operator"
    assert UserStore(tmp_path / "etc" / "users.json").authenticate("carl", "s3cret")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_command_starts_https_and_stops_on_sigterm(tmp_path):
    """`ediv server` as a process: creates the certificate beside the config, serves, stops."""
    import pywbem

    config = tmp_path / "server.toml"
    add_user(tmp_path / "users.json", "ops", Role.READER, "pw")
    port = _free_port()
    code = ("import click, sys\nfrom ediv.provider import cli\n"
            "@click.group()\ndef g(): pass\ncli.register(g)\ng(sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", code, "server", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120  # a bound for a hung start, not a timing check
        while not (tmp_path / "server.pem").exists() or not _listening(port):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        old = {k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
               if k in os.environ}
        try:
            conn = pywbem.WBEMConnection(f"https://127.0.0.1:{port}", ("ops", "pw"),
                                         ca_certs=str(tmp_path / "server.pem"), timeout=10)
            assert pywbem.WBEMServer(conn).brand == "ediv"
        finally:
            os.environ.update(old)
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _client_cert(tmp_path: Path, cn: str) -> tuple[Path, Path, Path]:
    """A CA and a client certificate with common name ``cn`` signed by it."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject_cn, issuer, issuer_key, key, ca):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
             .issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, False,
                                              False, False), critical=True)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test client CA")])
    ca = build("test client CA", ca_name, ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(cn, ca_name, ca_key, key, False)
    paths = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_client_certificate_authenticates_known_user(tmp_path, monkeypatch):
    import pywbem

    from ediv.provider.server import serve

    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(key, raising=False)
    ca, cert, key = _client_cert(tmp_path, "carol")
    (tmp_path / "other").mkdir()
    _other_ca, stranger_cert, stranger_key = _client_cert(tmp_path / "other", "carol")
    cfg = load_config(tmp_path / "server.toml", listen="127.0.0.1:0")
    cfg.client_ca = ca
    cfg.schema_cache_dir = tmp_path / "cache"
    add_user(cfg.users_file, "carol", Role.READER, "unused-password")
    with serve(cfg) as handle:
        def brand(**kw):
            conn = pywbem.WBEMConnection(handle.url, ca_certs=str(cfg.cert_file), timeout=10,
                                         **kw)
            return pywbem.WBEMServer(conn).brand

        assert brand(x509={"cert_file": str(cert), "key_file": str(key)}) == "ediv"
        with pytest.raises(pywbem.AuthError):
            brand()  # neither certificate nor password
        # a certificate from another CA is not accepted by the TLS layer
        with pytest.raises((pywbem.ConnectionError, pywbem.AuthError)):
            brand(x509={"cert_file": str(stranger_cert), "key_file": str(stranger_key)})
