"""An imported appliance boots: User-Mode Linux on a 1-host testbed, deployed by the controller.

The package is built here: a busybox ext2 root filesystem stored as a streamOptimized VMDK,
a SHA256 manifest and a signature by a test certificate. One VM comes from ``ediv ovf import``
into a scenario file, a second from ``<vm appliance=...>`` resolved at deploy. Each reads
``/ovf-env.xml`` in the guest and prints a property; then release must leave the machine as
it was (``ip netns list`` and ``ip -br link`` compared).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lxml import etree

from ediv import testbed, xmlsafe
from tests import ovf_factory as f
from tests.conftest import EDIV, OVF_UML_BOOT

pytestmark = OVF_UML_BOOT

READ_PROPERTY = ("sed -n 's/.*ovfenv:key=\"greeting\" ovfenv:value=\"\\([^\"]*\\)\".*/\\1/p' "
                 "/ovf-env.xml")
SCENARIO = """<vnuml>
  <global><version>1.8</version><simulation_name>ovfboot</simulation_name>
    <automac/><vm_mgmt type="none"/></global>
  <net name="lan" mode="virtual_bridge"/>
  <vm name="fw2" appliance="fw.ova">
    <if id="1" net="lan"><ipv4>198.18.9.2/24</ipv4></if>
    <exec seq="show" type="verbatim">{read}</exec>
  </vm>
</vnuml>
"""


def snapshot(marker: str) -> tuple[list[str], list[str]]:
    """Namespaces and root-namespace links whose name has ``marker`` (other people's tests
    may create and remove their own at the same time)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return ([line for line in ns.splitlines() if marker in line],
            [line.split()[0] for line in links.splitlines() if marker in line])


def host_links(netns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", netns, "-br", "link"], capture_output=True,
                         text=True).stdout
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def vm_processes(netns: str) -> list[str]:
    """Processes the agent of the host in ``netns`` started (its EDIV_HOST_KEY marker ends
    with the id of that namespace, see ediv.agent.naming)."""
    from ediv.agent.naming import b36

    suffix = f"@{b36(os.stat(f'/run/netns/{netns}').st_ino % 36**5)}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            stat = (environ.parent / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2]
        if state != "Z" and any(v.startswith(b"EDIV_HOST_KEY=") and v.endswith(suffix)
                                for v in variables):
            found.append(f"{environ.parent.name} {state} {stat[:60]}")
    return found


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([*EDIV, *args], capture_output=True, text=True, env=env, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"ediv {' '.join(args)} exited {r.returncode}:\n{r.stderr}\n"
                             f"{r.stdout}")
    return r


def add_exec(scenario: Path, vm: str, command: str, address: str) -> None:
    """Give the imported VM an address and a command (what a user would write by hand)."""
    tree = xmlsafe.parse_file(scenario)
    elem = next(e for e in tree.getroot().iter("vm") if e.get("name") == vm)
    iface = next(i for i in elem.iter("if") if i.get("net") == "lan")
    etree.SubElement(iface, "ipv4").text = address
    filetree = elem.find("filetree")
    ex = etree.Element("exec", seq="show", type="verbatim")
    ex.text = command
    filetree.addnext(ex)
    tree.write(str(scenario), xml_declaration=True, encoding="UTF-8")


def test_imported_appliance_boots_under_uml(tmp_path):
    from ediv.agent.rootfs import build_busybox_rootfs

    rootfs = build_busybox_rootfs(tmp_path / "rootfs.img")
    signer = f.self_signed("Appliance Vendor")
    built = f.build_appliance(tmp_path, rootfs, stem="fw", fmt="vmdk", sign_with=signer,
                              mem_mb=64, networks=("lan",), system_id="fw1",
                              properties={"greeting": "hello-from-ovf", "role": "firewall"})
    lab = tmp_path / "lab.xml"
    lab.write_text(SCENARIO.format(read=READ_PROPERTY))
    env = {**os.environ, "EDIV_APPLIANCE_CACHE": str(tmp_path / "cache"),
           "EDIV_OVF_TRUST": str(built.trust)}
    state = tmp_path / "state.db"

    run(env, "ovf", "import", str(built.path), "--scenario", str(lab), "--trust",
        str(built.trust))
    add_exec(lab, "fw1", READ_PROPERTY, "198.18.9.1/24")
    run(env, "validate", str(lab))

    bed_dir = tmp_path / "bed"
    bed = testbed.up(1, bed_dir, progress=lambda _m: None, image_paths=[tmp_path])
    (host,) = bed.hosts
    deployed = False
    try:
        r = run(env, "deploy", str(lab), "-c", str(bed.cluster_conf), "--state", str(state),
                "--json")
        deployed = True
        status = json.loads(r.stdout)
        assert status["state"] == "deployed"
        assert {(v["name"], v["type"]) for v in status["vms"]} == {("fw1", "uml"),
                                                                   ("fw2", "uml")}
        r = run(env, "exec", "ovfboot", "show", "--state", str(state), "--json", check=False)
        assert r.stdout.strip(), f"exec printed nothing (exit {r.returncode}): {r.stderr}"
        results = {x["vm"]: x for x in json.loads(r.stdout)}
        assert set(results) == {"fw1", "fw2"}, r.stdout
        for vm in ("fw1", "fw2"):
            assert results[vm]["exit_code"] == 0, results[vm]
            assert results[vm]["output"].strip() == "hello-from-ovf", results[vm]
        assert vm_processes(host.netns), "no VM process found"
        # export by name while UML holds the images (ubd locks them)
        ova = tmp_path / "export" / "ovfboot.ova"
        ova.parent.mkdir()
        run(env, "ovf", "export", "ovfboot", "--state", str(state), "-o", str(ova))
        exported = run(env, "ovf", "inspect", str(ova), "--json")
        data = json.loads(exported.stdout)
        assert data["manifest"]["status"] == "ok"
        assert {p["key"]: p["value"] for p in data["properties"]}["greeting"] == \
            "hello-from-ovf"
        assert sorted(s["id"] for s in data["systems"]) == ["fw1", "fw2"]
        run(env, "release", "ovfboot", "--state", str(state))
        deployed = False
        assert host_links(host.netns) == {"lo", "eth0"}, "links left on the host"
        assert os.listdir(host.state_dir) == [], "agent state left on the host"
        assert vm_processes(host.netns) == [], "VM processes left running"
    finally:
        if deployed:
            run(env, "release", "ovfboot", "--state", str(state), "--purge", check=False)
        testbed.down(bed_dir, progress=lambda _m: None)
    assert snapshot(bed.prefix) == ([], [])
