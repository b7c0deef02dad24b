from __future__ import annotations

import pytest

from ediv.cluster import default_cluster, load_cluster, parse_cluster
from ediv.errors import InputError

EDIV_FILE = """
# comment
[db]
type = mysql
[vlan]
first = 100
last = 199
[cluster]
host = zermat
host = kofy   # trailing comment
host = cuco
default_segmentation = WeightedRoundRobin
mgmt_network = 10.250.0.0
mgmt_network_mask = 16
[zermat]
mem = 2048
cpu = 100
max_vhost = 0
ifname = eth1
[kofy]
mem = 1024
cpu = 85
max_vhost = 4
ifname = eth2
colour = blue
"""


def test_ediv_file_keeps_host_order_and_properties():
    c = parse_cluster(EDIV_FILE, "c.conf")
    assert [h.name for h in c.hosts] == ["zermat", "kofy", "cuco"]
    kofy = c.host("kofy")
    assert (kofy.mem, kofy.cpu, kofy.max_vhost, kofy.ifname) == (1024, 85, 4, "eth2")
    assert c.host("cuco").cpu == 100  # no section: defaults
    assert c.default_segmentation == "WeightedRoundRobin"
    assert (c.mgmt_network, c.mgmt_network_mask) == ("10.250.0.0", 16)
    assert (c.vlan.first, c.vlan.last) == (100, 199)
    assert c.interconnect == "vlan"  # an EDIV file only knows 802.1q


def test_unknown_key_is_a_warning_with_its_line():
    c = parse_cluster(EDIV_FILE, "c.conf")
    line = EDIV_FILE.splitlines().index("colour = blue") + 1
    assert any(f"c.conf:{line}:" in w and "colour" in w for w in c.warnings)


def test_extensions():
    c = parse_cluster(
        "[cluster]\nhost = a\ninterconnect = vxlan\n[vxlan]\nfirst = 5000\nlast = 5009\n"
        "[a]\naddress = 198.19.0.2\nssh_port = 2222\nssh_user = ediv\nvm_type = container\n"
    )
    a = c.host("a")
    assert (a.address, a.ssh_port, a.ssh_user, a.vm_type) == (
        "198.19.0.2",
        2222,
        "ediv",
        "container",
    )
    assert c.interconnect == "vxlan" and len(c.vxlan) == 10


def test_vnx_ediv_spelling(corpus):
    c = load_cluster(str(corpus / "vnuml/davidfdezc-vnx/vnx-ediv/etc/cluster.conf"))
    assert [h.name for h in c.hosts] == ["host1", "host2", "host3"]
    assert c.host("host1").address == "host1.domain.org"
    assert c.host("host1").cpu == 200 and c.host("host1").ifname == "eth1"


def test_ediv_094_file_from_corpus(corpus):
    c = load_cluster(str(corpus / "vnuml/davidfdezc-vnx/vnx-ediv/ediv-0.9.4/etc/cluster.conf"))
    assert [h.name for h in c.hosts] == ["zermat", "kofy"]
    assert any("[cuco]" in w for w in c.warnings)  # commented-out host keeps its section


@pytest.mark.parametrize(
    "text, message",
    [
        ("[cluster]\n", "no hosts"),
        ("[cluster]\nhost = a\nhost = a\n", "listed twice"),
        ("[cluster]\nhost = a\n[a]\ncpu = fast\n", "must be an integer"),
        ("[cluster]\nhost = a\n[vlan]\nfirst = 10\nlast = 5\n", "after last"),
        ("[cluster]\nhost = a\n[vlan]\nfirst = 1\nlast = 5000\n", "up to 4094"),
        ("[cluster]\nhost = a\ninterconnect = carrier-pigeon\n", "vlan or vxlan"),
        ("[cluster]\nhost\n", "key = value"),
    ],
)
def test_bad_files_are_clear_errors(text, message):
    with pytest.raises(InputError) as exc:
        parse_cluster(text, "bad.conf")
    assert message in str(exc.value)
    assert str(exc.value).startswith("bad.conf")


def test_all_errors_at_once():
    with pytest.raises(InputError) as exc:
        parse_cluster("[cluster]\nhost = a\n[a]\ncpu = x\nmem = y\n", "bad.conf")
    assert len(exc.value.diagnostics) == 2


def test_missing_file():
    with pytest.raises(InputError, match="cannot read"):
        load_cluster("/nonexistent/cluster.conf")


def test_embedded_default():
    c = default_cluster()
    assert len(c.hosts) == 3 and c.interconnect == "vxlan"


def test_host_timeout_extension():
    from ediv.cluster import parse_cluster

    text = "[cluster]\nhost = a\nhost_timeout = 7\n[a]\nmem = 1\ncpu = 1\n"
    assert parse_cluster(text).host_timeout == 7
    assert parse_cluster(text.replace("host_timeout = 7\n", "")).host_timeout == 60
    with pytest.raises(InputError, match="host_timeout"):
        parse_cluster(text.replace("= 7", "= 1"))
