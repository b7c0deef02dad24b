"""Deploy-time choices and refusals: deployment options (InstanceID override,
``--deployment-option``), sections ediv cannot honour, StartupSection order, EULAs
(``--accept-eula``) and user property values (``--prop``/``--props``, types, qualifiers,
password masking). Packages are built here: a descriptor and a real ext2 disk (raw) in a
folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.cim import to_cim
from ediv.ovf.environment import read_environment
from ediv.ovf.importer import open_appliance
from ediv.ovf.inspect import inspect_package
from ediv.ovf.properties import MASK
from tests import ovf_factory as f

needs_disk_tools = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
    reason="needs qemu-img (qemu-utils) and mkfs.ext2 (e2fsprogs)")

OPTIONS = """
  <DeploymentOptionSection>
    <Info>Sizes</Info>
    <Configuration ovf:id="small"><Label>Small</Label><Description>1 CPU</Description>
    </Configuration>
    <Configuration ovf:id="large" ovf:default="true"><Label>Large</Label>
      <Description>4 CPUs</Description></Configuration>
  </DeploymentOptionSection>"""
# configuration Items for CPU (InstanceID 1) and memory (2); the generic ones say 2 / 256
PROFILE_ITEMS = """
      <Item ovf:configuration="small">
        <rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item ovf:configuration="large">
        <rasd:ElementName>4 CPUs</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity>
      </Item>
      <Item ovf:configuration="large">
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>1024</rasd:VirtualQuantity>
      </Item>"""
TYPED_PROPS = """
      <Property ovf:key="hostname" ovf:type="string" ovf:value="r1"
                ovf:userConfigurable="true" ovf:qualifiers="MinLen(1),MaxLen(8)"/>
      <Property ovf:key="mtu" ovf:type="uint16" ovf:value="1500" ovf:userConfigurable="true"
                ovf:qualifiers="MinValue(576) MaxValue(9000)"/>
      <Property ovf:key="ports" ovf:type="uint8" ovf:value="4" ovf:userConfigurable="true"/>
      <Property ovf:key="offset" ovf:type="sint8" ovf:value="0" ovf:userConfigurable="true"/>
      <Property ovf:key="ratio" ovf:type="real32" ovf:value="0.5" ovf:userConfigurable="true"/>
      <Property ovf:key="ssh" ovf:type="boolean" ovf:value="false"
                ovf:userConfigurable="true"/>
      <Property ovf:key="role" ovf:type="string" ovf:value="edge" ovf:userConfigurable="true"
                ovf:qualifiers='ValueMap{"edge","core"}'/>
      <Property ovf:key="serial" ovf:type="string" ovf:value="SN1"/>
      <Property ovf:key="secret" ovf:type="string" ovf:value="factory-pw" ovf:password="true"
                ovf:userConfigurable="true" ovf:qualifiers="MinLen(8)"/>"""


@pytest.fixture(scope="module")
def cli():
    cli_mod._register()
    return cli_mod.cli


@pytest.fixture(scope="module")
def ext2(tmp_path_factory) -> Path:
    return f.ext2_image(tmp_path_factory.mktemp("img") / "orig.img")


def run(cli, *args) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, ["ovf", *map(str, args)])


def package(tmp: Path, ext2: Path | None = None, *, before_system: str = "",
            items: str = "", props: str | None = None, in_system: str = "",
            edit=None) -> Path:
    """A package folder: router.ovf (``f.appliance_descriptor``, raw disk) and, when
    ``ext2`` is given, its disk. ``before_system``: sections put before the VirtualSystem;
    ``items``: appended to its hardware; ``props``: replaces its ProductSection properties;
    ``in_system``: sections put in the VirtualSystem; ``edit``: text -> text at the end."""
    folder = tmp / "pkg"
    folder.mkdir()
    size = ext2.stat().st_size if ext2 else 4096
    text = f.appliance_descriptor(disk_href="router-disk1.img", disk_size=size, fmt="raw",
                                  capacity_bytes=size)
    text = text.replace("<VirtualSystem ", before_system + "\n  <VirtualSystem ", 1)
    text = text.replace("</VirtualHardwareSection>", items + "\n    </VirtualHardwareSection>")
    text = text.replace("<OperatingSystemSection", in_system + "<OperatingSystemSection")
    if props is not None:
        start = text.index("<Product>Test Router</Product>") + len("<Product>Test Router</Product>")
        text = text[:start] + props + text[text.index("</ProductSection>"):]
    if edit is not None:
        text = edit(text)
    (folder / "router.ovf").write_text(text)
    if ext2 is not None:
        shutil.copyfile(ext2, folder / "router-disk1.img")
    return folder / "router.ovf"


def system(result: Result) -> dict:
    assert result.exit_code == 0, result.output + result.stderr
    (s,) = json.loads(result.stdout)["systems"]
    return s


# ---------------------------------------------------------------- deployment options

def test_default_option_overrides_generic_items_by_instance_id(cli, tmp_path):
    ovf = package(tmp_path, before_system=OPTIONS, items=PROFILE_ITEMS)
    r = run(cli, "inspect", ovf, "--json")
    s = system(r)
    assert (s["cpus"], s["memory_mb"]) == (4, 1024)  # large is the default
    data = json.loads(r.stdout)
    assert data["configuration"] == "large"
    assert data["options"] == [
        {"id": "small", "label": "Small", "description": "1 CPU", "default": False,
         "selected": False},
        {"id": "large", "label": "Large", "description": "4 CPUs", "default": True,
         "selected": True}]
    # the other option: its CPU item replaces the generic one, memory stays generic
    s = system(run(cli, "inspect", ovf, "--json", "--deployment-option", "small"))
    assert (s["cpus"], s["memory_mb"]) == (1, 256)
    assert "  large (default): Large" in run(cli, "inspect", ovf).stdout


def test_unknown_option_is_refused_naming_the_options(cli, tmp_path):
    ovf = package(tmp_path, before_system=OPTIONS, items=PROFILE_ITEMS)
    r = run(cli, "inspect", ovf, "--deployment-option", "huge")
    assert r.exit_code == 1
    assert "no deployment option 'huge' (options: small, large)" in r.stderr


def test_corpus_cot_input_default_profile(corpus):
    path = corpus / "ovf" / "cot" / "input.ovf"
    if not path.is_file():
        pytest.skip(f"{path} not in the corpus")
    (s,) = inspect_package(path).systems()
    assert (s["cpus"], s["memory_mb"], len(s["nics"])) == (4, 4096, 3)
    (s,) = inspect_package(path, configuration="1CPU-1GB-1NIC").systems()
    assert (s["cpus"], s["memory_mb"], len(s["nics"])) == (1, 1024, 1)


@needs_disk_tools
def test_convert_and_import_use_the_chosen_option(cli, tmp_path, ext2):
    ovf = package(tmp_path, ext2, before_system=OPTIONS, items=PROFILE_ITEMS)
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 0, r.stderr
    assert "<mem>1024M</mem>" in (tmp_path / "lab.xml").read_text()
    (tmp_path / "sub").mkdir()
    lab = tmp_path / "sub" / "lab.xml"
    lab.write_text((tmp_path / "lab.xml").read_text().replace("router1", "other"))
    r = run(cli, "import", ovf, "--scenario", lab, "--deployment-option", "small")
    assert r.exit_code == 0, r.stderr
    text = lab.read_text()
    assert '<vm name="router1"' in text and "<mem>256M</mem>" in text
    # and the CIM settings the server path sends name the option
    appliance = open_appliance(ovf, configuration="small")
    vssd, rasds = to_cim(appliance.envelope, "router1")
    assert vssd["OvfDeploymentOption"] == "small"
    (cpu,) = [x for x in rasds if x.classname == "EDIV_ProcessorRASD"]
    assert cpu["VirtualQuantity"] == 1


# ---------------------------------------------------------------- refusals

ENCRYPTION = """
  <EncryptionSection xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
    <xenc:EncryptedData><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue>
    </xenc:CipherData></xenc:EncryptedData>
  </EncryptionSection>"""
ENV_FILES = """
    <EnvironmentFilesSection{req}><Info>files</Info>
      <File ovf:fileRef="file1" ovf:path="extra.bin"/></EnvironmentFilesSection>"""
ODD_ITEM = """
      <Item{req}><rasd:ElementName>quantum link</rasd:ElementName>
        <rasd:InstanceID>30</rasd:InstanceID><rasd:ResourceType>40000</rasd:ResourceType>
      </Item>"""


@needs_disk_tools
@pytest.mark.parametrize(("case", "kwargs", "message"), [
    ("encryption", {"before_system": ENCRYPTION},
     "ovf:EncryptionSection (line 20): the package has encrypted files"),
    ("environment files", {"in_system": ENV_FILES.format(req="")},
     "ovf:EnvironmentFilesSection (line 29) is required"),
    ("unknown item", {"items": ODD_ITEM.format(req="")},
     "required Item quantum link has ResourceType 40000, unknown to ediv"),
    ("duplicate file ids", {"edit": lambda t: t.replace(
        "</References>", '<File ovf:href="other.img" ovf:id="file1"/></References>')},
     "duplicate File id(s) 'file1'"),
    ("URL boot disk", {"edit": lambda t: t.replace(
        'ovf:href="router-disk1.img"', 'ovf:href="http://198.18.0.1/router-disk1.img"')},
     "boot disk 'vmdisk1' is 'http://198.18.0.1/router-disk1.img', outside the package"),
])
def test_what_ediv_cannot_honour_refuses_in_one_line(cli, tmp_path, ext2, case, kwargs,
                                                      message):
    ovf = package(tmp_path, ext2, **kwargs)
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 1, r.output + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "package refused, nothing imported" in line and message in line, line
    assert not (tmp_path / "lab.xml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    # inspect still summarises it and says why it cannot be deployed (exit 0)
    r = run(cli, "inspect", ovf, "--json")
    assert r.exit_code == 0
    if case != "URL boot disk":
        assert any(message.split(" (line")[0] in x for x in json.loads(r.stdout)["refusals"])


@needs_disk_tools
def test_optional_sections_and_items_are_skipped(cli, tmp_path, ext2):
    ovf = package(tmp_path, ext2, in_system=ENV_FILES.format(req=' ovf:required="false"'),
                  items=ODD_ITEM.format(req=' ovf:required="false"'))
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 0, r.stderr


def test_missing_boot_disk_refuses_unless_container(cli, tmp_path):
    ovf = package(tmp_path)  # descriptor only: the disk file is not there
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 1
    assert "router1: boot disk 'vmdisk1' file 'router-disk1.img' is not in the package" \
        in r.stderr
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml", "--type", "container")
    assert r.exit_code == 0, r.stderr


@needs_disk_tools
def test_second_data_disk_is_named_in_a_warning(cli, tmp_path, ext2):
    def second_disk(text: str) -> str:
        return text.replace("</DiskSection>", '<Disk ovf:capacity="1" ovf:capacityAllocationUnits'
                            '="byte * 2^30" ovf:diskId="data1"/></DiskSection>')

    ovf = package(tmp_path, ext2, edit=second_disk, items="""
      <Item><rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/data1</rasd:HostResource>
        <rasd:InstanceID>31</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType>
      </Item>""")
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 0, r.stderr
    assert ("warning: router1: data disk 'data1' (blank) is not attached: a VNUML VM has a "
            "single filesystem") in r.stderr


def test_startup_section_becomes_vm_order(tmp_path):
    text = f.collection_descriptor(("a", "b", "c"))
    text = text.replace("<Info>A collection</Info>", """<Info>A collection</Info>
      <StartupSection><Info>order</Info>
        <Item ovf:id="c" ovf:order="1"/><Item ovf:id="a" ovf:order="5"/>
      </StartupSection>""")
    (tmp_path / "lab.ovf").write_text(text)
    appliance = open_appliance(tmp_path / "lab.ovf", vm_type="container")
    assert {vm.name: vm.order for vm in appliance.vms} == {"a": 2, "b": None, "c": 1}


EULA = """<EulaSection><Info>License</Info>
      <License>You may route packets.
Second line of the license.</License></EulaSection>"""


@needs_disk_tools
def test_eula_is_printed_and_needs_accept(cli, tmp_path, ext2):
    ovf = package(tmp_path, ext2, in_system=EULA)
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml")
    assert r.exit_code == 1
    assert "You may route packets.\nSecond line of the license." in r.stderr
    assert "accept them with --accept-eula" in r.stderr
    assert not (tmp_path / "lab.xml").exists()
    assert "license agreement 1 (accept with --accept-eula):" in run(cli, "inspect", ovf).stdout
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml", "--accept-eula")
    assert r.exit_code == 0, r.stderr
    appliance = open_appliance(ovf, accept_eula=True)
    vssd, _ = to_cim(appliance.envelope, "router1", eula_accepted=appliance.eula_accepted)
    assert vssd["OvfEulaAccepted"] is True


# ---------------------------------------------------------------- property values

@needs_disk_tools
def test_props_reach_the_environment(cli, tmp_path, ext2):
    ovf = package(tmp_path, ext2, props=TYPED_PROPS)
    props_file = tmp_path / "values.txt"
    props_file.write_text("# site values\nmtu=9000\nrole=core\nhostname=fromfile\n")
    r = run(cli, "convert", ovf, "-o", tmp_path / "lab.xml", "--props", props_file,
            "--prop", "hostname=edge7", "--prop", "ssh=TRUE", "--prop", "secret=s3cr3t!!")
    assert r.exit_code == 0, r.stderr
    env_file = tmp_path / "router1.ovfenv" / "ovf-env.xml"
    _id, values = read_environment(env_file.read_bytes())
    assert values == {"hostname": "edge7", "mtu": "9000", "ports": "4", "offset": "0",
                      "ratio": "0.5", "ssh": "true", "role": "core", "serial": "SN1",
                      "secret": "s3cr3t!!"}
    assert os.stat(env_file).st_mode & 0o777 == 0o600  # it holds a password
    assert "s3cr3t!!" not in r.stdout + r.stderr


@pytest.mark.parametrize(("assignment", "message"), [
    ("mtu=100", "mtu: '100' is below 576 (MinValue)"),
    ("mtu=1e3", "mtu: '1e3' is not an integer (uint16)"),
    ("ports=256", "ports: '256' is out of the uint8 range 0..255"),
    ("offset=-129", "offset: '-129' is out of the sint8 range -128..127"),
    ("ratio=fast", "ratio: 'fast' is not a number (real32)"),
    ("ssh=maybe", "ssh: 'maybe' is not a boolean"),
    ("role=leaf", "role: 'leaf' is not one of edge, core (ValueMap)"),
    ("hostname=", "hostname: '' is shorter than 1 characters (MinLen)"),
    ("hostname=waytoolongname", "longer than 8 characters (MaxLen)"),
    ("serial=SN2", "serial: not user-configurable"),
    ("nope=1", "nope: no such property (user-configurable ones: hostname, mtu, offset, "
               "ports, ratio, role, secret, ssh)"),
])
def test_bad_property_values_are_refused(cli, tmp_path, assignment, message):
    ovf = package(tmp_path, props=TYPED_PROPS)
    r = run(cli, "inspect", ovf, "--prop", assignment)
    assert r.exit_code == 1
    assert "property values refused" in r.stderr and message in r.stderr, r.stderr


def test_password_is_masked_everywhere(cli, tmp_path):
    ovf = package(tmp_path, props=TYPED_PROPS)
    for args in (["--json"], [], ["--json", "--prop", "secret=hunter22"]):
        r = run(cli, "inspect", ovf, *args)
        assert r.exit_code == 0, r.stderr
        out = r.stdout + r.stderr
        assert "factory-pw" not in out and "hunter22" not in out
        assert MASK in out
    data = json.loads(run(cli, "inspect", ovf, "--json").stdout)
    (secret,) = [p for p in data["property_details"] if p["key"] == "secret"]
    assert secret["password"] is True
    with pytest.raises(InputError) as info:  # a refused password value is not echoed
        inspect_package(ovf, properties={"secret": "x" * 3, "mtu": "1"})
    assert "xxx" not in str(info.value)
    assert "secret: the value is shorter than 8 characters (MinLen)" in str(info.value)
    assert "mtu: '1' is below 576" in str(info.value)
