"""What ediv sets up inside VMs from <user>, <ssh_key> and <host_mapping/>, without root:
the key files' checks, the bundle's handling of key references, the host mapping."""

from __future__ import annotations

import io
import tarfile

import pytest

from ediv.agent.users import key_lines, setup_script
from ediv.bundle import build_bundle
from ediv.errors import InputError
from ediv.scenario import parse_string
from ediv.split import host_mapping

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkaXZ0ZXN0a2V5 me@lab"


def test_key_files_hold_public_key_lines_only():
    assert key_lines(f"# comment\n\n{KEY}\n", "k") == [KEY]
    limited = f'from="198.18.0.0/15",no-pty {KEY}'
    assert key_lines(limited, "k") == [limited]
    with pytest.raises(InputError, match="not an SSH public key line"):
        key_lines("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n", "k")


def test_script_quotes_every_value():
    sc = parse_string(
        '<vnuml><global><version>1.8</version><simulation_name>s</simulation_name>'
        '<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>'
        '<vm name="v"><if id="1" net="N"/><user username="lab"><group>a b</group>'
        '<ssh_key>k.pub</ssh_key></user></vm></vnuml>', "s.xml")
    script = setup_script(sc.vms[0].users, keys=lambda ref: [f"{KEY} '$(touch /x)'"],
                          hosts={"v": "198.18.1.1"})
    assert "add_group 'a b'; add_member 'a b' lab" in script
    assert "'\"'\"'$(touch /x)'\"'\"'" in script  # shlex-quoted: no command substitution
    assert setup_script([], keys=lambda ref: []) == ""


SCENARIO = """<vnuml><global><version>1.8</version><simulation_name>s</simulation_name>
<ssh_key>{key}</ssh_key><vm_mgmt type="private" network="198.18.128.0" mask="24">
<host_mapping/></vm_mgmt></global><net name="N" mode="virtual_bridge"/>
<vm name="a"><if id="1" net="N"><ipv4>198.18.1.1/24</ipv4><ipv6>2001:2::1/64</ipv6></if></vm>
<vm name="b"><if id="1" net="N"><ipv4>198.18.1.2/24</ipv4></if></vm>
<host><hostif net="N"><ipv4>198.18.1.254/24</ipv4></hostif></host>
</vnuml>"""


def test_key_files_are_bundled_from_the_scenario_files_only(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "root.pub").write_text(KEY + "\n")
    sc = parse_string(SCENARIO.format(key="keys/root.pub"), "s.xml", str(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(build_bundle(sc, {}, tmp_path))) as tar:
        assert "files/keys/root.pub" in tar.getnames()
    home = parse_string(SCENARIO.format(key="~/.ssh/id_ed25519.pub"), "s.xml", str(tmp_path))
    with pytest.raises(InputError, match=r"<ssh_key>.*outside the scenario's files"):
        build_bundle(home, {}, tmp_path)


def test_host_mapping_names_every_vm_and_the_host():
    sc = parse_string(SCENARIO.format(key="k"), "s.xml")
    assert host_mapping(sc) == {"a": "198.18.1.1", "b": "198.18.1.2", "host": "198.18.1.254"}
