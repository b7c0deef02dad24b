"""The local testbed: real namespaces and sshd, host keys verified, nothing left behind."""

from __future__ import annotations

import subprocess

import paramiko
import pytest

from ediv import testbed
from ediv.cluster import load_cluster
from tests.conftest import TESTBED

pytestmark = TESTBED


def ours(prefix: str) -> tuple[list[str], list[str]]:
    """This testbed's namespaces and root-namespace links (other testbeds may come and go)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return ([n for n in ns.split() if n.startswith(prefix)],
            [line.split()[0] for line in links.splitlines() if line.startswith(prefix)])


@pytest.fixture
def bed(tmp_path):
    d = tmp_path / "tb"
    tb = testbed.up(2, d, progress=lambda _m: None)
    try:
        assert ours(tb.prefix) != ([], [])
        yield tb
    finally:
        testbed.down(d, progress=lambda _m: None)
        assert ours(tb.prefix) == ([], [])
        assert not d.exists()


def connect(cluster, host, policy=None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(cluster.known_hosts)
    client.set_missing_host_key_policy(policy or paramiko.RejectPolicy())
    client.connect(
        host.address,
        port=host.ssh_port,
        username=host.ssh_user,
        key_filename=cluster.ssh_key,
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
    )
    return client


def test_hosts_reachable_over_ssh_with_verified_host_keys(bed):
    cluster = load_cluster(str(bed.cluster_conf))
    assert [h.name for h in cluster.hosts] == ["h1", "h2"]
    assert cluster.interconnect == "vxlan"
    names = set()
    for host in cluster.hosts:
        with connect(cluster, host) as client:
            _, out, _ = client.exec_command("hostname; ip -4 -br addr show eth0; ip route")
            text = out.read().decode()
        names.add(text.splitlines()[0])
        assert host.address in text
        assert "default" not in text  # no way out of the testbed
    assert len(names) == 2


def test_unknown_host_key_is_refused(bed, tmp_path):
    cluster = load_cluster(str(bed.cluster_conf))
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cluster.known_hosts = str(empty)
    with pytest.raises(paramiko.SSHException):
        connect(cluster, cluster.hosts[0])


def test_second_up_in_same_dir_is_refused(bed):
    with pytest.raises(Exception, match="already runs"):
        testbed.up(1, bed.dir)


def test_down_without_testbed(tmp_path):
    assert testbed.down(tmp_path / "none") is False
