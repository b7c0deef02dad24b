"""The cluster commands in direct mode and with ``--server`` against one real server and its
state store (no hosts: rows are written as the engine writes them): the same results, the
same refusals with the same exit status (``ediv.errors.CODES``), and the commands that are
direct-mode only saying so. Deploys and execs on real hosts, both ways, are in
tests/test_wbem_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_engine_wbem import deployed_rows, renamed
from wbem_support import USERS

from ediv import state as st

pywbem = pytest.importorskip("pywbem")

REPO = Path(__file__).resolve().parents[2]
CLUSTER = str(REPO / "examples" / "cluster.conf")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "EDIV_SERVER")


@pytest.fixture(scope="module")
def cli():
    from ediv.client.cli import _register, cli

    _register()
    return cli


@pytest.fixture
def modes(engine_server, tmp_path, monkeypatch):
    """{"direct": options, "server": options} for one state store."""
    for key in _CA_ENV:
        monkeypatch.delenv(key, raising=False)
    handle = engine_server[0]
    name, password = USERS["operator"]
    (tmp_path / "pw").write_text(password + "\n")
    return {
        "direct": ["--state", str(handle.config.state_path)],
        "server": ["--server", handle.url, "--user", name, "--password-file",
                   str(tmp_path / "pw"), "--ca-cert", str(handle.config.cert_file)],
    }


def run(cli, *args: str):
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result


def both(cli, modes, *args: str, cluster: bool = False):
    """The command in each mode (direct mode with -c when ``cluster``)."""
    out = {}
    for mode, opts in modes.items():
        extra = ["-c", CLUSTER] if cluster and mode == "direct" else []
        out[mode] = run(cli, *args, *extra, *opts)
    return out


def test_reads_are_the_same(cli, modes, store):
    deployed_rows(store, "modes1")
    deployed_rows(store, "modes1b")  # status of all: each scenario with its own VMs, segments
    for args in (["status", "modes1", "--json"], ["status", "--json"],
                 ["locate", "r1", "--json"], ["segments", "--json"]):
        got = both(cli, modes, *args)
        assert [r.exit_code for r in got.values()] == [0, 0], args
        assert json.loads(got["direct"].stdout) == json.loads(got["server"].stdout), args
    text = both(cli, modes, "status", "modes1")
    assert text["direct"].stdout == text["server"].stdout
    assert "modes1: deployed, 6 VMs on 3 hosts, 1 segments" in text["direct"].stdout


def test_refusals_have_one_exit_status(cli, modes, store, engine_server):
    deployed_rows(store, "modes2")
    store.create_scenario("modes3", renamed("modes3"), basedir="/nonexistent",
                          algorithm=None, state=st.DEFINED)
    store.unlock("modes3")
    # no such scenario, VM, sequence: 1 in both modes, saying what is missing
    for args, says, cluster in ((["status", "nope"], "no scenario named 'nope'", False),
                                (["vm", "stop", "modes2", "ghost"], "'ghost'", True),
                                (["exec", "modes2", "nosuch"], "'nosuch'", True)):
        for mode, r in both(cli, modes, *args, cluster=cluster).items():
            assert r.exit_code == 1, (mode, args, r.stderr)
            assert says in r.stderr and "Traceback" not in r.stderr, (mode, r.stderr)
    got = both(cli, modes, "exec", "modes2", "nosuch", cluster=True)
    assert all("check" in r.stderr for r in got.values())  # the sequences it has
    # a scenario that is only defined: exec does not apply (4, the wrong-state status)
    for mode, r in both(cli, modes, "exec", "modes3", "check", cluster=True).items():
        assert r.exit_code == 4, (mode, r.stderr)
        assert "modes3" in r.stderr and "not deployed" in r.stderr


def test_direct_mode_only_commands_say_so(cli, modes):
    for args in (["console", "modes1", "h1"], ["cleanup", "--yes"]):
        r = run(cli, *args, *modes["server"])
        assert r.exit_code == 1 and "not available with --server" in r.stderr, r.stderr
    assert "direct mode only" in run(cli, "console", "--help").stdout.lower()
    r = run(cli, "release", "modes1", "--purge", *modes["server"])
    assert r.exit_code == 1 and "--purge is not available with --server" in r.stderr


def test_exec_output_marks_unknown_results(capsys):
    """What `ediv exec` prints for a VM whose result is unknown, and its exit status."""
    from ediv.client.output import print_exec_results

    results = [{"vm": "a", "host": "h1", "exit_code": 0, "output": "one\n"},
               {"vm": "b", "host": "h2", "exit_code": None, "output": "",
                "error": "h2: agent exited 3"}]
    for as_json in (False, True):
        with pytest.raises(SystemExit) as info:
            print_exec_results(results, as_json)
        assert info.value.code == 1
        out = capsys.readouterr().out
        if as_json:
            assert json.loads(out) == results
        else:
            assert "--- b on h2: unknown (h2: agent exited 3)" in out
            assert "--- a on h1: ok" in out and "1/2 succeeded" in out
    print_exec_results(results[:1], False)  # all succeeded: no exit
    assert "1/1 succeeded" in capsys.readouterr().out
