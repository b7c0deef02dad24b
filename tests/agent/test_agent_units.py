"""Host agent pieces that need no kernel: names, command lines, layout, config, bundles."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from ediv.agent import commands as C
from ediv.agent import naming
from ediv.agent.bundle import parse_deploy_info, stage_bundle
from ediv.agent.config import load_config
from ediv.agent.drivers import available, load_driver
from ediv.agent.drivers.base import Driver
from ediv.agent.drivers.uml import UmlDriver
from ediv.agent.layout import build_layout
from ediv.errors import InputError
from ediv.scenario.model import (
    VM,
    Address,
    Exec,
    Global,
    HostSection,
    Interface,
    Net,
    Route,
    Scenario,
)


# -- names ----------------------------------------------------------------------------------
def test_names_fit_ifnamsiz_at_the_documented_limits():
    key = "abcdef"
    assert len(naming.veth_name(key, 36**3 - 1, 36**2 - 1)) == 15
    assert len(naming.tap_name(key, 36**3 - 1, 36**2 - 1)) == 15
    assert len(naming.bridge_name(key, 36**6 - 1)) <= 15
    with pytest.raises(InputError, match="longer than 15"):
        naming.veth_name(key, 36**3, 36)
    with pytest.raises(InputError, match="longer than 15"):
        naming.tap_name(key, 36**2, 36**2)


def test_names_of_two_scenarios_never_collide_and_sweep_only_their_own():
    a, b = "ab", "ab1"
    names_a = {naming.bridge_name(a, 1), naming.veth_name(a, 1, 1), naming.mgmt_name(a, 1)}
    names_b = {naming.bridge_name(b, 1), naming.veth_name(b, 1, 1), naming.mgmt_name(b, 1)}
    assert not names_a & names_b
    assert all(naming.owned_link_re(a).match(n) for n in names_a)
    assert not any(naming.owned_link_re(a).match(n) for n in names_b)
    assert not naming.owned_link_re(a).match("eth0")


def test_derived_key_is_stable_and_valid():
    k = naming.derive_key("My scenario")
    assert k == naming.derive_key("My scenario") != naming.derive_key("other")
    assert naming.KEY_RE.match(k)
    with pytest.raises(InputError):
        naming.check_key("Bad-Key")


# -- command lines ----------------------------------------------------------------------------
def test_vlan_segment_command_line():
    assert C.ip_argv(C.vlan_add("eth0", "eqk1.0", 1001)) == [
        "ip", "link", "add", "link", "eth0", "name", "eqk1.0", "type", "vlan", "id", "1001"]


def test_vxlan_segment_command_lines():
    assert C.vxlan_add("exk1.0", 5000, "198.18.0.2", dev="eth1", mtu=1450) == [
        "link", "add", "name", "exk1.0", "mtu", "1450", "type", "vxlan", "id", "5000",
        "local", "198.18.0.2", "dstport", "4789", "dev", "eth1"]
    assert C.fdb_append("exk1.0", "198.18.0.3") == [
        "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "exk1.0", "dst", "198.18.0.3"]


def test_veth_peer_created_inside_namespace_with_mac():
    assert C.veth_add("evk.0.1", "eth1", "ediv-k-0", peer_mac="02:00:00:00:00:01") == [
        "link", "add", "name", "evk.0.1", "type", "veth", "peer", "name", "eth1",
        "address", "02:00:00:00:00:01", "netns", "ediv-k-0"]


def test_batch_refuses_injection():
    with pytest.raises(Exception, match="unsafe token"):
        C.batch_text([["addr", "add", "1.2.3.4/24 dev eth0\nlink del", "dev", "x"]])


def test_ipv6_default_route_is_explicit():
    assert C.route_add("default", "2001:db8::1", 6) == ["route", "add", "::/0", "via",
                                                         "2001:db8::1"]


# -- layout -----------------------------------------------------------------------------------
def _scenario(vms: list[VM], nets: list[Net], host: HostSection | None = None) -> Scenario:
    return Scenario(global_=Global(simulation_name="t"), nets=nets, vms=vms, host=host)


def _info(**extra):
    return parse_deploy_info({"scenario": "t", "key": "k1", **extra}, "t")


def test_layout_addresses_masks_routes_and_mgmt():
    vm = VM("r1", interfaces=[
        Interface(1, "Net0", mac="2:0:0:0:0:A", addresses=[
            Address(4, "198.18.1.1", "255.255.255.0"), Address(4, "198.18.9.1/30")]),
        Interface(2, "Net1", addresses=[Address(6, "2001:db8::1", "64")])],
        routes=[Route("ipv4", "198.18.1.254", "default"), Route("ipv6", "2001:db8::2",
                                                                "2001:db8:1::/48")],
        forwarding="ip")
    layout = build_layout(_scenario([vm], [Net("Net0"), Net("Net1", type="ppp")]),
                          _info(mgmt={"r1": {"host": "198.18.128.1/30",
                                             "vm": "198.18.128.2/30"}}))
    v = layout.vm("r1")
    assert [i.inside for i in v.all_interfaces] == ["eth0", "eth1", "eth2"]
    assert v.interfaces[0].addresses == ["198.18.1.1/24", "198.18.9.1/30"]
    assert v.interfaces[0].mac == "02:00:00:00:00:0a"
    assert v.interfaces[1].addresses == ["2001:db8::1/64"]
    assert v.mgmt.host_addresses == ["198.18.128.1/30"] and v.mgmt.addresses == [
        "198.18.128.2/30"]
    assert (v.forward4, v.forward6) == (True, True)
    assert v.routes[1].dest == "2001:db8:1::/48"
    assert v.interfaces[0].bridge == layout.nets["Net0"].bridge != layout.nets["Net1"].bridge


def test_layout_reports_every_problem_at_once():
    vms = [VM("a", line=3, interfaces=[Interface(1, "Net0", line=4), Interface(1, "Net0", line=5),
                                       Interface(2, "Nope", line=6),
                                       Interface(3, "Net0", addresses=[Address(4, "1.2.3")],
                                                 line=7)]),
           VM("b", type="qemu", line=9)]
    with pytest.raises(InputError) as e:
        build_layout(_scenario(vms, [Net("Net0")]), _info())
    text = str(e.value)
    assert "interface name clash: eth1" in text
    assert "unknown net 'Nope'" in text
    assert "bad address" in text
    assert "unknown type 'qemu'" in text


def test_layout_mgmt_clashes_with_if_zero():
    vm = VM("a", interfaces=[Interface(0, "Net0")])
    with pytest.raises(InputError, match="eth0 is the management interface"):
        build_layout(_scenario([vm], [Net("Net0")]),
                     _info(mgmt={"a": {"host": "198.18.128.1/30", "vm": "198.18.128.2/30"}}))


def test_layout_ppp_with_three_ends_is_refused():
    vms = [VM(n, interfaces=[Interface(1, "P")]) for n in "abc"]
    with pytest.raises(InputError, match="ppp net P has 3 ends"):
        build_layout(_scenario(vms, [Net("P", type="ppp")]), _info())


def test_layout_vxlan_segment_lowers_mtu():
    vm = VM("a", interfaces=[Interface(1, "Net0")])
    layout = build_layout(_scenario([vm], [Net("Net0")]), _info(segments=[
        {"net": "Net0", "kind": "vxlan", "id": 7, "local": "198.18.0.2",
         "peers": ["198.18.0.3"]}]), underlay_mtu=lambda dev: 1500)
    assert layout.nets["Net0"].mtu == 1450
    assert layout.vm("a").interfaces[0].mtu == 1450
    assert layout.nets["Net0"].segment_link in layout.links()


def test_layout_host_section_and_physicalif_refused():
    from ediv.scenario.model import HostIf, PhysicalIf

    host = HostSection(hostifs=[HostIf("Net0", [Address(4, "198.18.1.254", "24")])],
                       execs=[Exec("echo hi", "s")])
    layout = build_layout(_scenario([], [Net("Net0")], host), _info())
    assert layout.host_addrs == [(layout.nets["Net0"].bridge, "198.18.1.254/24")]
    host.physicalifs.append(PhysicalIf("eth9", "198.18.3.3"))
    with pytest.raises(InputError, match="physicalif"):
        build_layout(_scenario([], [Net("Net0")], host), _info())


# -- deploy.json, config, bundles -------------------------------------------------------------
@pytest.mark.parametrize("bad, msg", [
    ({"segments": [{"net": "N", "id": 1, "kind": "gre"}]}, "kind must be"),
    ({"segments": [{"net": "N", "id": 5000, "kind": "vlan", "dev": "eth0"}]}, "outside 1..4094"),
    ({"segments": [{"net": "N", "id": 5, "kind": "vxlan"}]}, "needs 'local'"),
    ({"segments": [{"net": "N", "id": 5, "kind": "vlan"}]}, "needs 'dev'"),
    ({"mgmt": {"a": {"host": "x", "vm": "198.18.0.2/30"}}}, "not an address"),
    ({"key": "TOO-LONG-KEY"}, "must match"),
])
def test_deploy_json_errors(bad, msg):
    with pytest.raises(InputError, match=msg):
        parse_deploy_info({"scenario": "s", **bad}, "s")


def test_deploy_json_defaults_derive_key():
    info = parse_deploy_info(None, "demo")
    assert info.key == naming.derive_key("demo") and info.vm_type == "container"


def test_config_ini_and_json(tmp_path):
    ini = tmp_path / "a.ini"
    ini.write_text("allow_host_exec = yes\nworkers = 4\n")
    cfg = load_config(ini)
    assert cfg.allow_host_exec is True and cfg.workers == 4 and cfg.allow_external is False
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"allow_external": True, "uml_mem": "96M"}))
    assert load_config(js).allow_external is True
    js.write_text(json.dumps({"allow_everything": True}))
    with pytest.raises(InputError, match="unknown setting"):
        load_config(js)
    ini.write_text("[agent]\nallow_host_exec = perhaps\n")
    with pytest.raises(InputError, match="true or false"):
        load_config(ini)
    assert load_config(None).allow_host_exec is False


def _tar(members: dict[str, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_bundle_tar_stream_gzip_and_top_directory(tmp_path):
    data = _tar({"b/scenario.xml": b"<vnuml/>", "b/files/x/y.txt": b"y"}, gz=True)
    staged = stage_bundle(io.BytesIO(data), tmp_path)
    assert (staged / "scenario.xml").read_bytes() == b"<vnuml/>"
    assert (staged / "files" / "x" / "y.txt").exists()


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "files/../../evil"])
def test_bundle_path_traversal_refused(tmp_path, name):
    data = _tar({"scenario.xml": b"<vnuml/>", name: b"x"})
    with pytest.raises(InputError, match=r"unsafe bundle member|cannot read"):
        stage_bundle(io.BytesIO(data), tmp_path / "st")
    assert not (tmp_path / "evil").exists() and not list((tmp_path / "st").iterdir())


def test_bundle_without_scenario_refused(tmp_path):
    with pytest.raises(InputError, match=r"no scenario\.xml"):
        stage_bundle(io.BytesIO(_tar({"deploy.json": b"{}"})), tmp_path)


# -- drivers ----------------------------------------------------------------------------------
def test_builtin_drivers_implement_the_protocol():
    for name in ("container", "uml"):
        assert name in available()
        drv = load_driver(name)
        assert isinstance(drv, Driver) and drv.name == name


def test_uml_boot_config_script():
    vm = VM("u1", interfaces=[Interface(1, "Net0", addresses=[Address(4, "198.18.1.1/24")])],
            routes=[Route("ipv4", "198.18.1.254", "default")], forwarding="ipv4")
    v = build_layout(_scenario([vm], [Net("Net0")]), _info()).vm("u1")
    script = UmlDriver.config_script(v)
    assert "$B ip addr add 198.18.1.1/24 dev eth1" in script
    assert "$B ip route add 0.0.0.0/0 via 198.18.1.254" in script
    assert "echo 1 > /proc/sys/net/ipv4/ip_forward" in script
    assert "$B mount -o rw /dev/ubda /newroot" in script


def test_uml_kernel_must_be_an_allowed_path(tmp_path):
    from ediv.agent.config import AgentConfig
    from ediv.agent.drivers.uml import kernel_allowed

    cfg = AgentConfig()
    assert kernel_allowed("/usr/bin/linux", cfg)
    assert not kernel_allowed("/bin/sh", cfg)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "linux").write_text("")
    ini = tmp_path / "a.ini"
    ini.write_text(f"uml_kernel_paths = {tmp_path}/k/, /opt/x\n")
    cfg = load_config(ini)
    assert cfg.uml_kernel_paths == [f"{tmp_path}/k/", "/opt/x"]
    assert kernel_allowed(str(tmp_path / "k" / "linux"), cfg)
    assert not kernel_allowed(str(tmp_path / "a.ini"), cfg)


def test_uml_panic_is_found_in_the_console_log(tmp_path):
    from ediv.agent.drivers.uml import _panic

    log = tmp_path / "console.log"
    log.write_text("Run /init as init process\n")
    assert _panic(log) is None
    log.write_text('VFS: Cannot open root device "ubdb"\nKernel panic - not syncing: VFS: Unable '
                   "to mount root fs on unknown-block(98,16)\n [<6069304e>] ? panic+0x0/0x376\n")
    assert _panic(log) == ("Kernel panic - not syncing: VFS: Unable to mount root fs on "
                           'unknown-block(98,16) (before it: VFS: Cannot open root device "ubdb")')
    log.write_text("Kernel panic - not syncing: Attempted to kill init!\n")
    assert _panic(log) == "Kernel panic - not syncing: Attempted to kill init!"
    assert _panic(tmp_path / "missing.log") is None


def test_static_busybox_detection():
    import os

    from ediv.agent.rootfs import is_static_elf

    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static missing (apt-get install busybox-static)")
    assert is_static_elf("/bin/busybox")
    assert not is_static_elf("/bin/ls")  # dynamically linked
    assert not is_static_elf(__file__)


def test_uml_console_is_read_from_where_the_last_read_stopped(tmp_path):
    from ediv.agent.drivers.uml import _Console

    log = tmp_path / "console.log"
    con = _Console(log)
    assert con.read_new() == ""  # not written yet
    log.write_bytes(b"Linux version 6.1\nVirtual console 1 assigned dev")
    assert con.read_new() == "Linux version 6.1\n"  # a partial line waits for its end
    with open(log, "ab") as f:
        f.write(b"ice '/dev/pts/7'\nKernel panic - not syncing: x\n")
    assert con.read_new() == ("Virtual console 1 assigned device '/dev/pts/7'\n"
                              "Kernel panic - not syncing: x\n")
    assert con.read_new() == ""
    with open(log, "ab") as f:
        f.write(b"tail \xc3")
    assert con.read_new(flush=True) == "tail \ufffd"
    con.close()


def test_uml_boot_slots_all_unless_configured():
    from ediv.agent.config import AgentConfig
    from ediv.agent.drivers.uml import boot_slots

    assert boot_slots(AgentConfig(), 51) == 51
    assert boot_slots(AgentConfig(), 0) == 1
    assert boot_slots(AgentConfig(uml_boot_slots=3), 51) == 3


def test_link_types_of_loaded_modules_are_known_without_a_scratch_namespace(monkeypatch):
    """A probe makes no scratch netns for a link type whose module is loaded (three of them
    were on the critical path of every small deploy); others are still tried for real."""
    from ediv.agent import network

    loaded = [k for k, m in network._MODULES.items() if Path("/sys/module", m).is_dir()]
    if not loaded:
        pytest.skip("no link-type module shows in /sys/module on this kernel")
    calls: list[list[str]] = []
    monkeypatch.setattr(network, "run", lambda argv, **kw: calls.append(argv))
    network.link_type_supported.cache_clear()
    try:
        assert all(network.link_type_supported(k) for k in loaded)
        assert calls == []
    finally:
        network.link_type_supported.cache_clear()
