"""``ediv ovf import PKG --scenario NAME --server URL``: the real CLI against the real WBEM
server (``engine_server`` of tests/conftest.py, loopback only). The package is verified on
the client before anything is sent; each VM is added with DefineSystem to a scenario the
server holds; every refusal is one ``ediv: ...`` line, and leaves the scenario as it was."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ediv import state as st
from ediv.client import cli as cli_mod
from ediv.ovf.environment import ENV_FILE, read_environment
from tests import ovf_factory as f
from tests.provider.wbem_support import USERS, connect

pywbem = pytest.importorskip("pywbem")

NS = "root/ediv"
LAB = """<?xml version="1.0" encoding="UTF-8"?>
<vnuml>
  <global>
    <version>1.8</version>
    <simulation_name>{name}</simulation_name>
    <vm_mgmt type="none"/>
  </global>
  <net name="Net0" mode="virtual_bridge"/>
  <net name="Net1" mode="virtual_bridge"/>
  <vm name="pc1" type="container">
    <if id="1" net="Net0"><ipv4>198.18.3.2/24</ipv4></if>
  </vm>
</vnuml>
"""
NETS = ["--net", "mgmt=Net0", "--net", "lan=Net1"]
needs_disk_tools = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture(scope="module")
def handle(engine_server):
    return engine_server[0]


@pytest.fixture(scope="module")
def op(handle):
    return connect(handle, "operator", str(handle.config.cert_file))


@pytest.fixture(scope="module")
def signer():
    return f.self_signed()


def server_args(handle, tmp_path: Path, role: str = "operator") -> list[str]:
    name, password = USERS[role]
    pw = tmp_path / f"{role}.pw"
    pw.write_text(password + "\n")
    return ["--server", handle.url, "--user", name, "--password-file", str(pw),
            "--ca-cert", str(handle.config.cert_file)]


def run(cli, *args) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, ["ovf", "import", *map(str, args)])


def define(op, name: str) -> None:
    (service,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    settings = pywbem.CIMInstance("EDIV_ScenarioSettingData",
                                  properties={"ScenarioDefinition": LAB.format(name=name)})
    rv, _ = op.InvokeMethod("DefineSystem", service, [("SystemSettings", settings)])
    assert rv == 0


def scenario_path(name: str):
    return pywbem.CIMInstanceName("EDIV_Scenario", {"CreationClassName": "EDIV_Scenario",
                                                    "Name": name}, namespace=NS)


def vm_names(op, name: str) -> list[str]:
    """The scenario's VMs, as EDIV_SystemComponent associates them."""
    paths = op.AssociatorNames(scenario_path(name), AssocClass="EDIV_SystemComponent",
                               ResultClass="EDIV_VirtualSystem")
    return sorted(p.keybindings["Name"].split("/", 1)[1] for p in paths)


def definition(op, name: str) -> str:
    ssd = op.GetInstance(pywbem.CIMInstanceName(
        "EDIV_ScenarioSettingData", {"InstanceID": f"ediv:scenario:{name}"}, namespace=NS))
    return ssd["ScenarioDefinition"]


def settings_of(op, scenario: str, vm: str):
    """(VSSD, RASDs) of a VM, reached the DSP1057 way: VM -> SettingsDefineState -> VSSD ->
    VirtualSystemSettingDataComponent -> RASDs."""
    path = pywbem.CIMInstanceName("EDIV_VirtualSystem", {
        "CreationClassName": "EDIV_VirtualSystem", "Name": f"{scenario}/{vm}"}, namespace=NS)
    (vssd,) = op.Associators(path, AssocClass="EDIV_SettingsDefineState")
    rasds = op.Associators(vssd.path, AssocClass="EDIV_VirtualSystemSettingDataComponent")
    return op.GetInstance(path), vssd, rasds


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- imports that work

def test_container_vm_is_added_with_memory_and_nets(cli, handle, op, signer, tmp_path):
    define(op, "ovf1")
    built = f.build_package(tmp_path, sign_with=signer)
    r = run(cli, built.path, "--scenario", "ovf1", *NETS, "--type", "container",
            "--trust", built.trust, *server_args(handle, tmp_path))
    assert r.exit_code == 0, r.output + r.stderr
    assert r.stdout.strip() == "ovf1: added VMs router1"
    # the package's properties: stored beside the scenario, delivered as /ovf-env.xml
    env_file = Path(handle.config.data_dir, "scenarios", "ovf1", "router1.ovfenv", ENV_FILE)
    assert read_environment(env_file.read_bytes()) == (
        "router1", {"hostname": "r1", "domain": "lab"})
    assert '<filetree root="/" seq="on_boot">router1.ovfenv</filetree>' in definition(op, "ovf1")

    assert vm_names(op, "ovf1") == ["pc1", "router1"]
    vm, vssd, rasds = settings_of(op, "ovf1", "router1")
    assert vm["ScenarioName"] == "ovf1" and vm["VirtualSystemType"] == "container"
    assert vm["EnabledState"] == 3  # defined, not deployed
    assert vssd["VirtualSystemType"] == "container" and vssd.get("Filesystem") is None
    (mem,) = [r for r in rasds if r.classname == "EDIV_MemoryRASD"]
    assert (mem["VirtualQuantity"], mem["AllocationUnits"]) == (256, "byte*2^20")
    ports = sorted((int(r["InterfaceIndex"]), list(r["Connection"])) for r in rasds
                   if r.classname == "EDIV_EthernetPortAllocationSettingData")
    assert ports == [(1, ["Net0"]), (2, ["Net1"])]
    assert '<vm name="router1" type="container">' in definition(op, "ovf1")


@needs_disk_tools
def test_uml_disk_is_converted_into_the_image_dir(cli, handle, op, tmp_path):
    """--image-dir (shared storage the hosts see at the same path) still works: nothing is
    uploaded and the VM names the converted file."""
    define(op, "ovf2")
    ext2 = f.ext2_image(tmp_path / "orig.img")
    built = f.build_appliance(tmp_path, ext2, properties={})
    args = [built.path, "--scenario", "ovf2", *NETS, *server_args(handle, tmp_path)]

    images = tmp_path / "shared-images"
    r = run(cli, *args, "--image-dir", images)
    assert r.exit_code == 0, r.output + r.stderr
    assert "upload" not in r.stderr
    image = images / "ovf2-router1.img"
    assert f"wrote {image}" in r.stdout
    assert sorted(p.name for p in images.iterdir()) == ["ovf2-router1.img"]
    assert subprocess.run(["cmp", str(ext2), str(image)]).returncode == 0
    _vm, vssd, rasds = settings_of(op, "ovf2", "router1")
    assert (vssd["VirtualSystemType"], vssd["Filesystem"]) == ("uml", str(image))
    (disk,) = [r for r in rasds if r.classname == "EDIV_StorageAllocationSettingData"]
    assert list(disk["HostResource"]) == [str(image)] and disk["ResourceSubType"] == "cow"


# ---------------------------------------------------------------- disks uploaded to the server

@pytest.fixture
def server_images(tmp_path, monkeypatch):
    """The server's image store for this test: the in-process server (and its controller)
    use $EDIV_IMAGES of the process, read at each request."""
    from ediv.images.store import ImageStore

    root = tmp_path / "server-images"
    monkeypatch.setenv("EDIV_IMAGES", str(root))
    return ImageStore(root)


@needs_disk_tools
def test_uml_disk_is_uploaded_to_the_server_image_store(cli, handle, op, tmp_path,
                                                        server_images):
    from ediv.images.digest import file_digest

    define(op, "up1")
    ext2 = f.ext2_image(tmp_path / "orig.img", {"etc/hostname": "router1\n"})
    digest = file_digest(ext2)
    built = f.build_appliance(tmp_path, ext2, properties={})
    args = [built.path, "--scenario", "up1", *NETS, *server_args(handle, tmp_path)]

    r = run(cli, *args)  # no --image-dir: the disk goes to the server
    assert r.exit_code == 0, r.output + r.stderr
    no_traceback(r)
    assert "up1-router1: uploading 100%" in r.stderr and f"uploaded {digest}" in r.stderr
    (m,) = server_images.list()
    assert (m.name, m.digest, m.format, m.origin) == ("up1-router1", digest, "raw", "upload")
    blob = server_images.blob_path(digest)
    assert subprocess.run(["cmp", str(ext2), str(blob)]).returncode == 0
    assert not list(server_images.tmp.iterdir())
    ref = f"image:{digest}"
    _vm, vssd, rasds = settings_of(op, "up1", "router1")
    assert (vssd["VirtualSystemType"], vssd["Filesystem"]) == ("uml", ref)
    (disk,) = [r for r in rasds if r.classname == "EDIV_StorageAllocationSettingData"]
    assert list(disk["HostResource"]) == [ref] and disk["ResourceSubType"] == "cow"
    assert f">{ref}</filesystem>" in definition(op, "up1")
    assert not list(Path(tmp_path).glob("**/up1-router1.img"))  # nothing left on the client

    # the same disk into another scenario: nothing sent, one more name for the blob
    define(op, "up2")
    mtime = blob.stat().st_mtime_ns
    r = run(cli, built.path, "--scenario", "up2", *NETS, *server_args(handle, tmp_path))
    assert r.exit_code == 0, r.output + r.stderr
    assert f"the server has {digest} already: nothing sent" in r.stderr
    assert "uploading" not in r.stderr
    assert sorted(m.name for m in server_images.list()) == ["up1-router1", "up2-router1"]
    assert blob.stat().st_mtime_ns == mtime
    _vm, vssd, _rasds = settings_of(op, "up2", "router1")
    assert vssd["Filesystem"] == ref


@needs_disk_tools
def test_a_reader_cannot_upload_a_disk_and_nothing_is_imported(cli, handle, op, tmp_path,
                                                               server_images):
    define(op, "up3")
    built = f.build_appliance(tmp_path, f.ext2_image(tmp_path / "orig.img"), properties={})
    r = run(cli, built.path, "--scenario", "up3", *NETS,
            *server_args(handle, tmp_path, role="reader"))
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("ediv:")]
    assert errors == ["ediv: error: up3-router1: the server refused the image: 403 rita: "
                      "images need the operator role"], r.stderr
    no_traceback(r)
    assert vm_names(op, "up3") == ["pc1"]
    assert not server_images.root.exists() or server_images.list() == []


def _image_url(handle, data: bytes) -> str:
    import hashlib

    return f"{handle.url}/ediv/images/sha256/{hashlib.sha256(data).hexdigest()}"


def _put(handle, url: str, data: bytes, role: str | None = "operator", **headers):
    import requests

    s = requests.Session()
    s.trust_env = False
    auth = USERS[role] if role else None
    return s.put(url, data=data, auth=auth, verify=str(handle.config.cert_file),
                 headers=headers, timeout=30)


def test_upload_with_the_wrong_digest_is_refused_and_nothing_kept(handle, server_images):
    data = b"\x01" * 300_000
    url = _image_url(handle, data)
    r = _put(handle, url, data + b"x", **{"Ediv-Image-Name": "bad"})
    assert r.status_code == 422 and "nothing stored" in r.text
    assert server_images.list() == [] and server_images.digests() == set()
    assert not list(server_images.tmp.iterdir())
    r = _put(handle, url, data, **{"Ediv-Image-Name": "good"})  # the right bytes are taken
    assert r.status_code == 201, r.text
    assert [m.name for m in server_images.list()] == ["good"]


def test_an_image_beyond_the_cim_body_cap_streams_into_the_store(handle, server_images):
    """max_body_bytes (16 MiB, CIM-XML) does not bound images: they are not held in memory."""
    assert handle.config.max_body_bytes < 20 << 20
    data = bytes(range(256)) * (20 << 12)  # 20 MiB
    r = _put(handle, _image_url(handle, data), data, **{"Ediv-Image-Name": "big"})
    assert r.status_code == 201, r.text
    (m,) = server_images.list()
    assert m.size == len(data) and server_images.verify("big")


def test_upload_does_not_replace_an_image_the_admin_made(handle, server_images, tmp_path):
    local = tmp_path / "local.img"
    local.write_bytes(b"\x04" * 100_000)
    admin_image = server_images.import_file(local, "frr")
    data = b"\x05" * 100_000
    r = _put(handle, _image_url(handle, data), data, **{"Ediv-Image-Name": "frr"})
    assert r.status_code == 409, r.text
    assert server_images.list() == [admin_image]
    assert server_images.digests() == {admin_image.digest}


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("reader", 403)])
def test_upload_needs_an_operator_and_stores_nothing_otherwise(handle, server_images, role,
                                                               status):
    data = b"\x02" * 200_000
    r = _put(handle, _image_url(handle, data), data, role, **{"Ediv-Image-Name": "x"})
    assert r.status_code == status, r.text
    assert not server_images.root.exists() or (
        server_images.list() == [] and not list(server_images.tmp.iterdir()))


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/ediv/images/sha256/" + "A" * 64, {}, 404),        # upper case: not a digest spelling
    ("/ediv/images/sha256/../../etc/passwd", {}, 404),
    ("/ediv/images/sha256/" + "0" * 63, {}, 404),
    ("/ediv/images/sha256/" + "0" * 64, {"Ediv-Image-Name": "../x"}, 400),
])
def test_image_paths_and_names_from_the_client_are_checked(handle, server_images, path,
                                                           headers, status):
    import requests

    s = requests.Session()
    s.trust_env = False
    req = requests.Request("PUT", handle.url + path, data=b"abc", auth=USERS["operator"],
                           headers=headers).prepare()
    req.url = handle.url + path  # no normalisation of ../ by the client
    r = s.send(req, verify=str(handle.config.cert_file), timeout=30)
    assert r.status_code == status, r.text
    assert not server_images.root.exists() or server_images.list() == []


def test_upload_beyond_max_image_bytes_is_refused(handle, server_images, monkeypatch):
    handle.transport.images.max_image_bytes, old = 1000, handle.transport.images.max_image_bytes
    try:
        data = b"\x03" * 5000
        r = _put(handle, _image_url(handle, data), data)  # announced: refused at once
        assert r.status_code == 413
        # chunked, no length announced: refused while it streams, the partial file deleted
        r = _put(handle, _image_url(handle, data), iter([data[:800], data[800:]]))
        assert r.status_code == 413
        assert not server_images.tmp.exists() or not list(server_images.tmp.iterdir())
    finally:
        handle.transport.images.max_image_bytes = old
    assert not server_images.root.exists() or server_images.list() == []


# ---------------------------------------------------------------- refusals change nothing

@pytest.mark.parametrize(("case", "opts", "message"), [
    ("tampered disk", {"tamper_disk": True},
     "manifest mismatch: router-disk1.img: SHA256 digest mismatch"),
    ("tampered descriptor", {"tamper_descriptor": True},
     "manifest mismatch: router.ovf: SHA256 digest mismatch"),
    ("wrong signature", {"wrong_signature": True}, "signature invalid"),
])
def test_bad_package_is_refused_before_anything_is_sent(cli, handle, op, signer, tmp_path,
                                                         case, opts, message):
    define(op, f"bad-{len(case)}")
    name = f"bad-{len(case)}"
    before = definition(op, name)
    built = f.build_package(tmp_path, sign_with=signer, **opts)
    common = [*NETS, "--type", "container", "--trust", built.trust]

    r = run(cli, built.path, "--scenario", name, *common, *server_args(handle, tmp_path))
    assert r.exit_code == 1, r.output + r.stderr
    assert f"package refused, nothing imported: {message}" in r.stderr
    no_traceback(r)
    assert definition(op, name) == before and vm_names(op, name) == ["pc1"]

    # the same refusal, word for word and with the same status, as direct mode's
    lab = tmp_path / "lab.xml"
    lab.write_text(LAB.format(name=name))
    direct = run(cli, built.path, "--scenario", lab, *common)
    assert (direct.exit_code, direct.stderr) == (r.exit_code, r.stderr)
    # and nothing was sent: against a port nobody listens on, the answer is the same
    dead = ["--server", "https://127.0.0.1:9", "--user", "otto", "--password-file",
            str(tmp_path / "operator.pw")]
    r = run(cli, built.path, "--scenario", name, *common, *dead)
    assert (r.exit_code, r.stderr) == (direct.exit_code, direct.stderr)


def test_unknown_scenario_fails_cleanly(cli, handle, tmp_path):
    built = f.build_package(tmp_path)
    r = run(cli, built.path, "--scenario", "nosuch", *NETS, "--type", "container",
            *server_args(handle, tmp_path))
    assert r.exit_code == 1
    assert r.stderr.strip() == "ediv: error: no scenario named 'nosuch'"
    no_traceback(r)
    # a local file given as the name: say what --scenario means with --server
    lab = tmp_path / "lab.xml"
    lab.write_text(LAB.format(name="lab"))
    r = run(cli, built.path, "--scenario", lab, *NETS, "--type", "container",
            *server_args(handle, tmp_path))
    assert r.exit_code == 1 and "names a scenario defined there, not a file" in r.stderr


def test_clashes_missing_nets_and_deployed_scenarios_are_refused(cli, engine_server, handle,
                                                                 op, tmp_path):
    define(op, "ovf3")
    built = f.build_package(tmp_path)
    server = server_args(handle, tmp_path)
    before = definition(op, "ovf3")
    unmapped = run(cli, built.path, "--scenario", "ovf3", "--type", "container", *server)
    assert unmapped.exit_code == 1
    assert "scenario 'ovf3' lacks the nets mgmt, lan (it has: Net0, Net1)" in unmapped.stderr
    assert "--net OVFNET=NET" in unmapped.stderr
    assert definition(op, "ovf3") == before

    ok = run(cli, built.path, "--scenario", "ovf3", *NETS, "--type", "container", *server)
    assert ok.exit_code == 0, ok.stderr
    before = definition(op, "ovf3")
    again = run(cli, built.path, "--scenario", "ovf3", *NETS, "--type", "container", *server)
    assert again.exit_code == 1
    assert again.stderr.strip() == ("ediv: error: scenario 'ovf3' already has VMs named "
                                    "router1: nothing imported")
    assert definition(op, "ovf3") == before

    store = engine_server[1].engine.store()
    store.create_scenario("ovf4", LAB.format(name="ovf4"), basedir="/nonexistent",
                          algorithm="RoundRobin", state=st.DEPLOYED)
    store.unlock("ovf4")
    r = run(cli, built.path, "--scenario", "ovf4", *NETS, "--type", "container", *server)
    assert r.exit_code == 1
    assert r.stderr.strip() == ("ediv: error: scenario 'ovf4' is deployed: VMs can only be "
                                "added while it is defined; nothing imported")
    for res in (again, unmapped, r):
        no_traceback(res)


def test_server_refusal_is_one_line(cli, handle, op, tmp_path):
    """DefineSystem itself refused (a reader may not define): the server's message."""
    define(op, "ovf5")
    built = f.build_package(tmp_path)
    r = run(cli, built.path, "--scenario", "ovf5", *NETS, "--type", "container",
            *server_args(handle, tmp_path, role="reader"))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ediv: error: router1: ")
    assert "nothing imported" in lines[0]
    no_traceback(r)
    assert vm_names(op, "ovf5") == ["pc1"]


def test_all_or_nothing_when_the_server_refuses_a_later_vm(cli, handle, op, tmp_path):
    """Two systems; the management network of the scenario has room for one more VM, so the
    server refuses the second: the first is removed again."""
    spec = LAB.format(name="ovf6").replace(
        '<vm_mgmt type="none"/>',
        '<vm_mgmt type="private" network="198.18.100.0" mask="29" offset="0"/>')
    (service,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    op.InvokeMethod("DefineSystem", service, [("SystemSettings", pywbem.CIMInstance(
        "EDIV_ScenarioSettingData", properties={"ScenarioDefinition": spec}))])
    text = f.collection_descriptor(("r1", "r2"), networks=("lan",),
                                   disk_href="router-disk1.img")
    built = f.build_package(tmp_path, descriptor_text=text)
    r = run(cli, built.path, "--scenario", "ovf6", "--net", "lan=Net0", "--type", "container",
            *server_args(handle, tmp_path))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ediv: error: r2: "), r.stderr
    assert "has room for 2 VMs" in lines[0] and lines[0].endswith("; nothing imported")
    no_traceback(r)
    # r1 went first and was accepted (the refusal names r2); it was removed again
    assert vm_names(op, "ovf6") == ["pc1"] and '<vm name="r1"' not in definition(op, "ovf6")


def test_deployment_option_props_and_eula_through_the_server(cli, handle, op, tmp_path):
    """--deployment-option, --prop and --accept-eula apply on the client; the server gets
    the result (memory of the option, the property in OvfEnvironment) and the VSSD's
    OvfDeploymentOption / OvfEulaAccepted; a VSSD saying the EULA was refused is refused."""
    from ediv.ovf.cim import to_cim
    from ediv.ovf.reader import read_descriptor

    define(op, "ovf7")
    options = """<DeploymentOptionSection><Info>sizes</Info>
      <Configuration ovf:id="big" ovf:default="true"><Label>Big</Label></Configuration>
      <Configuration ovf:id="tiny"><Label>Tiny</Label></Configuration>
    </DeploymentOptionSection>"""
    text = f.descriptor(extra_sections=options).replace(
        "<OperatingSystemSection", "<EulaSection><Info>l</Info><License>Be nice.</License>"
        "</EulaSection><OperatingSystemSection").replace(
        "</VirtualHardwareSection>", """<Item ovf:configuration="tiny">
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>48</rasd:VirtualQuantity>
      </Item></VirtualHardwareSection>""")
    built = f.build_package(tmp_path, descriptor_text=text)
    args = [built.path, "--scenario", "ovf7", *NETS, "--type", "container",
            "--deployment-option", "tiny", "--prop", "hostname=edge9",
            *server_args(handle, tmp_path)]
    r = run(cli, *args)
    assert r.exit_code == 1 and "Be nice." in r.stderr and "--accept-eula" in r.stderr
    assert vm_names(op, "ovf7") == ["pc1"]
    r = run(cli, *args, "--accept-eula")
    assert r.exit_code == 0, r.output + r.stderr
    _vm, _vssd, rasds = settings_of(op, "ovf7", "router1")
    (mem,) = [x for x in rasds if x.classname == "EDIV_MemoryRASD"]
    assert mem["VirtualQuantity"] == 48
    env_file = Path(handle.config.data_dir, "scenarios", "ovf7", "router1.ovfenv", ENV_FILE)
    assert read_environment(env_file.read_bytes())[1]["hostname"] == "edge9"

    env = read_descriptor(text.encode())
    env.select_configuration("tiny")
    vssd, rasds = to_cim(env, "router1", {"mgmt": "Net0", "lan": "Net1"}, vm_type="container")
    assert vssd["OvfDeploymentOption"] == "tiny" and vssd["OvfEulaAccepted"] is False
    vssd["ElementName"] = vssd["VirtualSystemIdentifier"] = "router2"
    (service,) = op.EnumerateInstanceNames("EDIV_VirtualSystemManagementService")
    with pytest.raises(pywbem.CIMError, match="license agreements were not accepted"):
        op.InvokeMethod("DefineSystem", service, [
            ("SystemSettings", vssd), ("ResourceSettings", rasds),
            ("ReferenceConfiguration", scenario_path("ovf7"))])
    assert vm_names(op, "ovf7") == ["pc1", "router1"]


# ---------------------------------------------------------------- options and help

def test_direct_mode_options_still_mean_a_file(cli, tmp_path):
    built = f.build_package(tmp_path)
    r = run(cli, built.path, "--scenario", tmp_path / "missing.xml")
    assert r.exit_code == 2 and "without --server, --scenario names a file" in r.stderr
    lab = tmp_path / "lab.xml"
    lab.write_text(LAB.format(name="lab"))
    r = run(cli, built.path, "--scenario", lab, "--image-dir", tmp_path / "img")
    assert r.exit_code == 2 and "--image-dir applies with --server only" in r.stderr
    assert lab.read_text() == LAB.format(name="lab")


def test_help_says_what_scenario_means_in_each_mode(cli):
    r = run(cli, "--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "With --server URL, --scenario is the NAME of a scenario defined on the server" \
        in text
    for option in ("--server", "--user", "--password-file", "--ca-cert", "--profile",
                   "--image-dir", "--net", "--vm-type", "--trust"):
        assert option in text
