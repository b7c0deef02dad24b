"""rtnl.py (a container VM's addresses and routes over rtnetlink) leaves a network namespace
exactly as the ``ip -batch`` lines it replaced did, and refuses what ``ip`` refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import unique_key

import ediv.agent.drivers.rtnl as rtnl

pytestmark = pytest.mark.root
if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces)", allow_module_level=True)

RTNL_DIR = str(Path(rtnl.__file__).parent)
OPS = [["up", "lo"],
       ["addr", "eth1", "198.18.41.7/24"], ["addr", "eth1", "2001:db8:41::7/64"],
       ["addr", "eth1", "127.0.0.9/8"], ["up", "eth1"],
       ["addr", "eth2", "198.19.41.7/16"], ["up", "eth2"],
       ["route", "0.0.0.0/0", "198.18.41.1"], ["route", "198.20.0.0/15", "198.19.41.1"],
       ["route", "::/0", "2001:db8:41::1"], ["route", "2001:db8:99::/48", "2001:db8:41::2"]]
AS_IP = ["link set dev lo up",
         "addr add 198.18.41.7/24 dev eth1", "addr add 2001:db8:41::7/64 dev eth1",
         "addr add 127.0.0.9/8 dev eth1", "link set dev eth1 up",
         "addr add 198.19.41.7/16 dev eth2", "link set dev eth2 up",
         "route add 0.0.0.0/0 via 198.18.41.1", "route add 198.20.0.0/15 via 198.19.41.1",
         "route add ::/0 via 2001:db8:41::1", "route add 2001:db8:99::/48 via 2001:db8:41::2"]


@pytest.fixture
def two_netns():
    """Two namespaces of this test, each with veths eth1 and eth2 (peers up inside the same
    namespace; no IPv6 link-local addresses, no DAD: nothing differs but what is set)."""
    names = [f"ediv-{unique_key('rt')}-{i}" for i in (1, 2)]
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                            "net.ipv6.conf.default.addr_gen_mode=1",
                            "net.ipv6.conf.default.accept_dad=0"], check=True)
            subprocess.run(["ip", "-n", ns, "-batch", "-"], check=True, text=True,
                           input="".join(f"link add eth{i} type veth peer name p{i}\n"
                                         f"link set p{i} up\n" for i in (1, 2)))
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _apply(ns: str, ops: list[list[str]]) -> subprocess.CompletedProcess:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import rtnl\n"
            "try:\n    rtnl.apply(json.loads(sys.argv[2]))\n"
            "except rtnl.NetlinkError as e:\n    sys.exit(str(e))\n")
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-I", "-S", "-c", code,
                           RTNL_DIR, json.dumps(ops)], capture_output=True, text=True)


def _state(ns: str) -> list:
    """Addresses and routes of ``ns`` (``ip -j``), without what differs between namespaces."""
    out = []
    for what in (["-4", "addr"], ["-6", "addr"], ["-4", "route", "show", "table", "all"],
                 ["-6", "route", "show", "table", "all"]):
        items = json.loads(subprocess.run(["ip", "-j", "-n", ns, *what], check=True,
                                          capture_output=True, text=True).stdout)
        for item in items:
            for field in ("ifindex", "address", "link_index", "txqlen", "expires"):
                item.pop(field, None)
            for a in item.get("addr_info", []):
                a.pop("valid_life_time", None)
                a.pop("preferred_life_time", None)
        out.append(sorted(items, key=json.dumps))
    return out


def test_same_namespace_state_as_ip_batch(two_netns):
    by_rtnl, by_ip = two_netns
    res = _apply(by_rtnl, OPS)
    assert res.returncode == 0, res.stderr
    subprocess.run(["ip", "-n", by_ip, "-batch", "-"], check=True, text=True,
                   input="".join(line + "\n" for line in AS_IP))
    state = _state(by_rtnl)
    assert state == _state(by_ip)
    assert any(r.get("dst") == "default" and r.get("gateway") == "198.18.41.1"
               for r in state[2])
    assert any(a["local"] == "2001:db8:41::7" for i in state[1] for a in i["addr_info"])


@pytest.mark.parametrize(("ops", "reason"), [
    ([["route", "198.18.34.0/24", "198.18.99.1"]], "route add 198.18.34.0/24 via 198.18.99.1: "),
    ([["addr", "eth1", "198.18.41.7/24"], ["addr", "eth1", "198.18.41.7/24"]],
     "addr add 198.18.41.7/24 dev eth1: "),
    ([["up", "eth9"]], 'Cannot find device "eth9"'),
    ([["route", "::/0", "198.18.41.1"]], "is not of the family"),
    ([["mtu", "eth1", "9000"]], "unknown request"),
])
def test_refusals_name_the_request_and_the_reason(two_netns, ops, reason):
    res = _apply(two_netns[0], [["up", "eth1"], *ops])
    assert res.returncode == 1
    assert reason in res.stderr
