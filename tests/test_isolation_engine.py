"""Isolation in the engine, whatever the front end: which controller files a scenario may name,
what it may change on a host, and what validate refuses (docs/threat-model.md)."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ediv import host_access, state
from ediv.agent.layout import build_layout
from ediv.agent.network import host_access_problems, preflight
from ediv.bundle import FileScope, build_bundle
from ediv.cluster import Cluster, Host
from ediv.errors import InputError
from ediv.protocol import DeployInfo
from ediv.scenario import load_scenario, load_string
from ediv.service import Service

HEAD = ('<vnuml><global><version>1.8</version><simulation_name>iso</simulation_name>'
        '<vm_mgmt type="none"/></global>\n')


def ediv_cli():
    from ediv.client import cli

    cli._register()
    return cli.cli


def scenario_dir(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "scen"
    d.mkdir()
    (d / "s.xml").write_text(HEAD + body + "</vnuml>\n")
    return d / "s.xml"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A controller file outside the scenario (a stand-in for server.key), made by the test."""
    d = tmp_path / "server"
    d.mkdir()
    (d / "server.key").write_text("PRIVATE KEY\n")
    return d / "server.key"


def vm(extra: str) -> str:
    return f'<net name="n" mode="virtual_bridge"/>\n<vm name="a" type="container">' \
           f'<if id="1" net="n"/>\n{extra}</vm>\n'


def members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_absolute_reference_outside_the_scenario_is_refused_with_its_line(tmp_path, secret):
    path = scenario_dir(tmp_path, vm(f'<filetree seq="s" root="/x">{secret.parent}</filetree>\n'
                                     f'<exec seq="s" type="file">{secret}</exec>\n'))
    sc, _ = load_scenario(path, deployable=True)
    with pytest.raises(InputError) as err:
        build_bundle(sc, {}, sc.basedir)
    text = str(err.value)
    assert f"s.xml:4: <filetree> '{secret.parent}': is outside the scenario's files" in text
    assert f"s.xml:5: <exec type=\"file\"> '{secret}': is outside" in text
    assert "PRIVATE KEY" not in text


def test_symlink_out_of_the_scenario_dir_does_not_escape(tmp_path, secret):
    path = scenario_dir(tmp_path, vm('<filetree seq="s" root="/x">tree</filetree>\n'
                                     '<exec seq="s" type="file">key</exec>\n'))
    (path.parent / "key").symlink_to(secret)
    (path.parent / "tree").mkdir()
    (path.parent / "tree" / "ok.txt").write_text("mine\n")
    sc, _ = load_scenario(path, deployable=True)
    with pytest.raises(InputError) as err:
        build_bundle(sc, {}, sc.basedir)
    assert f"s.xml:5: <exec type=\"file\"> 'key': leads to {secret}" in str(err.value)
    # a link inside a filetree directory that leads out is refused too
    (path.parent / "key").unlink()
    (path.parent / "key").write_text("echo mine\n")
    (path.parent / "tree" / "stolen").symlink_to(secret)
    with pytest.raises(InputError, match=r"stolen is a symlink to .*outside the scenario"):
        build_bundle(sc, {}, sc.basedir)
    (path.parent / "tree" / "stolen").unlink()
    got = members(build_bundle(sc, {}, sc.basedir))
    assert got["files/tree/ok.txt"] == b"mine\n" and got["files/key"] == b"echo mine\n"


def test_dotdot_is_refused_and_validate_says_so(tmp_path):
    path = scenario_dir(tmp_path, vm('<filetree seq="s" root="/x">../server</filetree>\n'))
    with pytest.raises(InputError, match=r"s.xml:4: .* leaves the scenario directory"):
        load_scenario(path, deployable=True)


def test_admin_listed_dir_may_be_named(tmp_path, secret):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "conf.sh").write_text("echo shared\n")
    path = scenario_dir(tmp_path, vm(f'<exec seq="s" type="file">{shared}/conf.sh</exec>\n'))
    sc, _ = load_scenario(path, deployable=True)
    with pytest.raises(InputError, match="file_dirs: none listed"):
        build_bundle(sc, {}, sc.basedir)
    got = members(build_bundle(sc, {}, sc.basedir, [str(shared)]))
    assert got[f"files/_abs{shared}/conf.sh"] == b"echo shared\n"
    # listing one dir does not open its neighbours
    scope = FileScope.of(sc.basedir, [shared])
    with pytest.raises(ValueError, match="outside"):
        scope.resolve(str(secret))


def test_service_refuses_before_anything_is_recorded_or_contacted(tmp_path, secret):
    """The CLI and the server deploy through Service.deploy: the check comes first (the
    cluster's one host is an address nobody listens on: it is never contacted), for a spec
    to deploy and for one to define alike."""
    path = scenario_dir(tmp_path, vm(f'<exec seq="s" type="file">{secret}</exec>\n'))
    store = state.StateStore(tmp_path / "state.db")
    cluster = Cluster(hosts=[Host("h1", address="198.18.255.254")], source="test")
    text = path.read_text()
    with Service(store, cluster) as svc:
        with pytest.raises(InputError, match="outside"):
            svc.deploy(text, basedir=str(path.parent), source_name=str(path))
        with pytest.raises(InputError, match="outside"):
            svc.define(text, basedir=str(path.parent), source_name=str(path))
    assert store.scenarios() == []


def test_cli_deploy_takes_allow_files(tmp_path, secret):
    path = scenario_dir(tmp_path, vm(f'<exec seq="s" type="file">{secret}</exec>\n'))
    conf = tmp_path / "cluster.conf"
    conf.write_text("[cluster]\nhost = h1\n[h1]\naddress = 198.18.255.254\n")
    res = CliRunner().invoke(ediv_cli(), ["deploy", str(path), "-c", str(conf),
                                    "--state", str(tmp_path / "st.db")])
    assert res.exit_code != 0 and "is outside the scenario's files" in res.output
    assert "--allow-files" in CliRunner().invoke(ediv_cli(), ["deploy", "--help"]).output


# ---------------------------------------------------------------- host changes

def layout_of(body: str, **info):
    sc = load_string(HEAD + body + "</vnuml>", "h.xml")[0]
    return sc, build_layout(sc, DeployInfo.from_json({"key": "iso1", **info}, "iso"))


def test_external_on_a_single_host_net_needs_allow_external(tmp_path):
    sc, layout = layout_of('<net name="n" mode="virtual_bridge" external="eth0"/>'
                           '<vm name="a" type="container"><if id="1" net="n"/></vm>')
    assert layout.nets["n"].segment is None  # the case preflight used to skip
    problems = preflight(layout, tmp_path, allow_external=False, allow_host_exec=False)
    assert any("external=eth0" in p and "allow_external" in p for p in problems)
    assert not host_access_problems(layout, allow_external=True, allow_host_exec=False)
    refused = host_access.refusals(sc, {"external": False, "hostif": False, "host_exec": False})
    assert refused and "h.xml:2: net n: external=eth0" in refused[0]
    assert host_access.refusals(sc, {"external": True}) == []


def test_host_routes_hostif_forwarding_need_settings():
    sc, layout = layout_of(
        '<net name="n" mode="virtual_bridge"/><vm name="a" type="container">'
        '<if id="1" net="n"/></vm><host><hostif net="n"><ipv4>198.18.7.1/24</ipv4></hostif>'
        '<route type="ipv4" gw="198.18.7.2">198.18.8.0/24</route><forwarding type="ip"/>'
        '</host>')
    closed = host_access_problems(layout, allow_external=False, allow_host_exec=False)
    assert len(closed) == 3
    assert any("<route>" in p for p in closed) and any("<hostif>" in p for p in closed)
    assert any("<forwarding>" in p for p in closed)
    only_hostif = host_access_problems(layout, allow_external=False, allow_host_exec=False,
                                       allow_hostif=True)
    assert not any("<hostif>" in p for p in only_hostif) and any("<route>" in p
                                                                 for p in only_hostif)
    assert len(host_access.refusals(sc, {"hostif": True})) == 2  # route, forwarding


# ---------------------------------------------------------------- validate = deploy

@pytest.mark.parametrize("iface, message", [
    ('<if id="-1" net="n"><mac>02:00:00:00:00:01</mac></if>', "id must be between 0 and"),
    ('<if id="1679616" net="n"/>', "id must be between 0 and"),
])
def test_validate_refuses_interface_ids_deploy_refuses(tmp_path, iface, message):
    path = scenario_dir(tmp_path, f'<net name="n" mode="virtual_bridge"/>'
                                  f'<vm name="a" type="container">{iface}</vm>')
    res = CliRunner().invoke(ediv_cli(), ["validate", str(path)])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_validate_refuses_physicalif(tmp_path):
    path = scenario_dir(tmp_path, '<host><physicalif name="eth1" ip="198.18.1.1" '
                                  'mask="255.255.255.0"/></host>')
    res = CliRunner().invoke(ediv_cli(), ["validate", str(path)])
    assert res.exit_code == 1 and "does not reconfigure a host's physical" in res.output


# ---------------------------------------------------------------- private files

def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_store_and_its_wal_are_private(tmp_path):
    store = state.StateStore(tmp_path / "new" / "state.db")
    store.create_scenario("s", "<spec/>", basedir="/x", algorithm=None)
    assert mode(tmp_path / "new") == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert mode(tmp_path / "new" / name) == 0o600, name
    store.close()
    os.chmod(tmp_path / "new" / "state.db", 0o644)  # left readable by an older ediv
    state.StateStore(tmp_path / "new" / "state.db").close()
    assert mode(tmp_path / "new" / "state.db") == 0o600


def test_split_output_is_private(tmp_path):
    examples = Path(__file__).resolve().parents[1] / "examples"
    out = tmp_path / "out"
    res = CliRunner().invoke(ediv_cli(), ["split", str(examples / "simple6.xml"), "-c",
                                    str(examples / "cluster.conf"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert mode(out) == 0o700
    files = list(out.iterdir())
    assert files and all(mode(f) == 0o600 for f in files)
    assert json.loads((out / "plan.json").read_text())["files"]


def test_server_files_are_private(tmp_path):
    from ediv.provider.archive import extract
    from ediv.provider.auth import Role, add_user
    from ediv.provider.config import load_config
    from ediv.provider.engine import Engine
    from ediv.provider.server import ensure_files

    cfg = load_config(tmp_path / "etc" / "server.toml")
    ensure_files(cfg)
    add_user(cfg.users_file, "ada", Role.ADMIN, "pw")
    assert mode(cfg.key_file) == 0o600 and mode(cfg.users_file) == 0o600
    Engine(cfg)
    assert mode(cfg.data_dir) == 0o700
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("run.sh")
        info.size, info.mode = 3, 0o755
        tar.addfile(info, io.BytesIO(b"ls\n"))
    import base64

    extract(base64.b64encode(buf.getvalue()).decode(), cfg.data_dir / "a")
    assert mode(cfg.data_dir / "a" / "run.sh") == 0o700
