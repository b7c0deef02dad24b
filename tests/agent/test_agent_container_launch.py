"""How container VMs are started: one user namespace per scenario for a deploy's VMs, and one
forker process that stays as their inits' parent (``nsholder.py``, ``forker.py``).

Root only, real VMs; addresses from 198.18.0.0/15 on bridges these tests create.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from agent_helpers import agent_exec_command, deploy_bundle, scenario_uid, unique_key
from test_agent_vm_state import vm_status

from ediv.agent import naming
from ediv.agent.drivers import confine
from ediv.agent.proc import MARKER_VAR, marked_pids
from ediv.agent.release import _netns_del
from ediv.errors import EdivError
from tests.conftest import wait_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")]

NS_GET_USERNS = 0xB701


def _scenario(key: str, n: int) -> str:
    octet = 20 + int.from_bytes(os.urandom(1), "big") % 200
    vms = "".join(f'<vm name="v{i}" type="container"><if id="1" net="Lan">'
                  f"<ipv4>198.18.{octet}.{i + 1}/24</ipv4></if></vm>" for i in range(n))
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            f'<vm_mgmt type="none"/></global><net name="Lan" mode="virtual_bridge"/>{vms}'
            "</vnuml>")


def _owner_of_netns(pid: int) -> str:
    """The user namespace owning the network namespace of process ``pid``."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        user = fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)
    try:
        return os.readlink(f"/proc/self/fd/{user}")
    finally:
        os.close(user)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def test_a_deploys_vms_share_the_scenarios_user_namespace_and_one_reaping_parent(agent, tmp_path,
                                                                                snapshot):
    key = unique_key("ln")
    before = snapshot(key)
    dep = deploy_bundle(agent, tmp_path, key, _scenario(key, 3))
    assert dep.rc == 0, dep.events
    keeper = 0
    try:
        vms = vm_status(agent, key)
        assert sorted(vms) == ["v0", "v1", "v2"]
        inits = {name: v["pid"] for name, v in vms.items()}

        # one user namespace, the scenario's range, owning every VM's netns and entered by
        # every init
        users = {_owner_of_netns(pid) for pid in inits.values()}
        assert len(users) == 1
        assert {os.readlink(f"/proc/{pid}/ns/user") for pid in inits.values()} == users
        uid = scenario_uid(key)
        assert Path(f"/proc/{inits['v0']}/uid_map").read_text().split() == ["0", str(uid),
                                                                            "65536"]

        # no holder left; one parent of all inits, holding nothing of the agent's and
        # sitting in the host's network namespace, not in a VM's
        assert not [p for p in marked_pids(naming.marker(key)) if b"nsholder.py" in _cmdline(p)]
        parents = {int(_status(pid)["PPid"]) for pid in inits.values()}
        assert len(parents) == 1
        keeper = parents.pop()
        assert b"forker.py" in _cmdline(keeper)
        fds = {fd: os.readlink(f"/proc/{keeper}/fd/{fd}")
               for fd in os.listdir(f"/proc/{keeper}/fd")}
        assert fds == {"0": "/dev/null", "1": "/dev/null", "2": "/dev/null"}, fds
        assert os.readlink(f"/proc/{keeper}/ns/net") == os.readlink("/proc/self/ns/net")

        # a stopped VM's init is reaped (no zombie), the others keep their parent
        stop = agent("vm", "--key", key, "v1", "stop")
        assert stop.rc == 0, stop.events
        wait_for(lambda: not os.path.exists(f"/proc/{inits['v1']}"), 10,
                 "the stopped VM's init reaped")
        assert int(_status(inits["v0"])["PPid"]) == keeper

        # booted again: a new init in the same netns (so the same user namespace)
        start = agent("vm", "--key", key, "v1", "start")
        assert start.rc == 0, start.events
        again = vm_status(agent, key)["v1"]["pid"]
        assert again != inits["v1"] and os.readlink(f"/proc/{again}/ns/user") in users
    finally:
        rel = agent("release", "--key", key)
    assert rel.rc == 0, rel.events
    wait_for(lambda: not marked_pids(naming.marker(key)), 10, "no process of the scenario left")
    wait_for(lambda: not os.path.exists(f"/proc/{keeper}"), 10, "the inits' parent gone")
    assert snapshot(key) == before


def test_a_netns_name_in_use_is_refused_and_its_holder_ends():
    mark = f"ln-test-{os.getpid()}-{os.urandom(4).hex()}"
    name = f"ediv-test-{mark[-8:]}"
    env = {MARKER_VAR: mark}
    # (the names a deploy makes are journalled before, so release removes those made)
    confine.create_netns([name], scenario_uid("ln-test"), env)
    try:
        with pytest.raises(EdivError, match="already exists"):
            confine.create_netns([f"{name}-b", name], scenario_uid("ln-test"), env, parallel=2)
        wait_for(lambda: not marked_pids(mark), 10, "the holders gone")
    finally:
        _netns_del(name)
        _netns_del(f"{name}-b")


def test_a_vm_finds_no_handle_on_the_other_vms_network_namespaces(agent, tmp_path, snapshot):
    """The VMs share their user namespace, so VM root's capabilities would cover a sibling's
    netns: a hostile VM looks for a way in (the bind mounts, /proc, the host's PIDs)."""
    key = unique_key("lh")
    before = snapshot(key)
    dep = deploy_bundle(agent, tmp_path, key, _scenario(key, 2))
    assert dep.rc == 0, dep.events
    try:
        names = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"ediv-{key}-"))
        assert len(names) == 2
        sibling = vm_status(agent, key)["v1"]["pid"]
        tries = " ".join(f"/run/netns/{n} /proc/1/root/run/netns/{n}" for n in names)
        out = agent_exec_command(agent, key, ["v0"], (
            "ls -A /run/netns 2>/dev/null | wc -l; "
            "for p in /proc/[0-9]*/ns/net; do readlink $p; done 2>/dev/null | sort -u | wc -l; "
            f"for f in {tries} /proc/{sibling}/ns/net; do "
            "nsenter --net=$f true 2>/dev/null && echo entered $f; done; "
            # the control: with a handle (its own netns), nsenter does get in
            "nsenter --net=/proc/self/ns/net true && echo control"))["v0"]
        assert out.split("\n")[:3] == ["0", "1", "control"], out
    finally:
        rel = agent("release", "--key", key)
    assert rel.rc == 0, rel.events
    assert snapshot(key) == before
