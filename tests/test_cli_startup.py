"""Start-up cost of ``ediv`` and ``ediv-host``: each command imports only what it needs.

Not timed (timings are in the README): the guard is which heavy libraries a fresh
interpreter has loaded after running a command, seen in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ediv.client import cli as cli_mod
from tests.conftest import EXAMPLES

# libraries that cost 0.05-0.5 s each to import on this machine
HEAVY = ("pywbem", "rich", "lxml", "paramiko", "xmlschema", "elementpath", "cryptography",
         "graphviz", "uvloop", "invoke", "ediv.controller", "ediv.remote", "ediv.provider")

PROBE = """
import json, sys
sys.argv = {argv!r}
from {module} import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
"""


def loaded_after(module: str, argv: list[str]) -> tuple[set[str], str]:
    """Top-level names (and ediv modules) imported by running ``module``'s main with argv."""
    r = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, module=module)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out, _, mods = r.stdout.rpartition("\nMODULES ")
    assert mods, r.stderr
    names = set(json.loads(mods))
    return {h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names)}, out


def test_help_imports_no_command_module():
    heavy, out = loaded_after("ediv.client.cli", ["ediv", "--help"])
    assert "validate" in out and "deploy" in out
    assert heavy == set()


def test_validate_of_a_valid_file_needs_lxml_only():
    heavy, out = loaded_after("ediv.client.cli",
                              ["ediv", "validate", str(EXAMPLES / "simple6.xml")])
    assert ": ok (" in out
    # lxml parses and validates (libxml2); xmlschema only runs to explain an invalid file
    assert heavy == {"lxml"}


def test_validate_of_an_invalid_file_still_explains(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<vnuml><global><version>1.8</version><simulation_name>x</simulation_name>"
                   "</global><vm name='a'><bogus/></vm></vnuml>")
    r = subprocess.run([sys.executable, "-m", "ediv.client.cli", "validate", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "bogus" in r.stderr and "Traceback" not in r.stderr


def test_agent_probe_and_status_skip_scenario_code(tmp_path):
    for argv in (["ediv-host", "probe"],
                 ["ediv-host", "--state-dir", str(tmp_path), "status"]):
        heavy, out = loaded_after("ediv.agent.main", argv)
        assert '"result"' in out, out
        assert heavy == set(), argv


def test_command_table_matches_the_commands():
    """``ediv --help`` from the lazy table reads exactly as with every module imported, and
    the table names every command the modules register (update COMMANDS in client/cli.py
    when a command or its first help line changes)."""
    env = {**os.environ, "COLUMNS": "100"}
    lazy, eager = (subprocess.run(
        [sys.executable, "-c", f"from ediv.client import cli\n{pre}cli.cli(['--help'], "
                               "prog_name='ediv')"],
        capture_output=True, text=True, timeout=120, env=env)
        for pre in ("", "cli._register()\n"))
    cli_mod._register()
    assert set(cli_mod.cli.commands) == set(cli_mod.COMMANDS)
    for name, cmd in cli_mod.cli.commands.items():  # the module that defines it loads it
        assert cmd.callback.__module__ == "ediv." + cli_mod.COMMANDS[name][0], name
    assert lazy.returncode == 0 and eager.returncode == 0, lazy.stderr + eager.stderr
    assert "validate" in lazy.stdout
    assert lazy.stdout == eager.stdout


def test_unknown_command_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "ediv.client.cli", "no-such-command"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "No such command" in r.stderr


AT_PROBE = """
import json, sys
from ediv.controller import Controller

def start_probe(self, hosts=None):
    print("MODULES " + json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
    raise SystemExit(0)

Controller.start_probe = start_probe
sys.argv = {argv!r}
from ediv.client.cli import main
main()
"""


def closed_port_cluster(tmp_path) -> str:
    """A one-host cluster whose sshd is a closed port on 127.0.0.1 (refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "cluster.conf"
    conf.write_text("[cluster]\nhost = h1\nmgmt_network = 198.18.128.0\nmgmt_network_mask = 17\n"
                    f"[h1]\nmem = 1024\ncpu = 100\naddress = 127.0.0.1\nssh_port = {port}\n"
                    f"ssh_key = {tmp_path / 'no-key'}\nknown_hosts = {tmp_path / 'known_hosts'}\n")
    return str(conf)


def test_deploy_reaches_its_hosts_before_loading_the_planner(tmp_path):
    """The hosts' probe starts before the scenario parser, lxml and the planner are imported
    (their import overlaps the SSH handshake and the agent's start-up)."""
    argv = ["ediv", "deploy", str(EXAMPLES / "simple6.xml"), "-c", closed_port_cluster(tmp_path),
            "--state", str(tmp_path / "state.db")]
    r = subprocess.run([sys.executable, "-c", AT_PROBE.format(argv=argv)], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    _, _, mods = r.stdout.rpartition("MODULES ")
    assert mods, r.stderr
    names = set(json.loads(mods))
    assert "ediv.remote" in names  # it is the deploy path
    early = {n for n in names if n.split(".")[0] in ("lxml", "xmlschema", "rich", "pywbem")
             or n.startswith(("ediv.scenario", "ediv.plan", "ediv.partition", "ediv.service"))}
    assert early == set()


def test_deploy_errors_are_unchanged_by_the_early_probe(tmp_path):
    """A bad scenario is reported alone (no host lines, though its probe had started); an
    unreachable host fails the probe stage with the connection error, nothing built."""
    cluster = closed_port_cluster(tmp_path)
    bad = tmp_path / "bad.xml"
    bad.write_text("<vnuml><global><version>1.8</version><simulation_name>x</simulation_name>"
                   "</global><vm name='a'><bogus/></vm></vnuml>")
    common = ["-c", cluster, "--state", str(tmp_path / "state.db")]
    r = subprocess.run([sys.executable, "-m", "ediv.client.cli", "deploy", str(bad), *common],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert "bogus" in r.stderr and "probing" not in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ediv.client.cli", "deploy",
                        str(EXAMPLES / "simple6.xml"), *common],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "hosts failed probe, nothing was built" in r.stderr, r.stderr
    assert "cannot connect to 127.0.0.1" in r.stderr and "Traceback" not in r.stderr
    status = subprocess.run([sys.executable, "-m", "ediv.client.cli", "status", "--json",
                             "--state", str(tmp_path / "state.db")],
                            capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout or "[]") == [], status.stdout
