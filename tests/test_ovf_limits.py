"""Sanity caps on descriptors (memory, CPUs, counts) and the scenario's own <mem> check."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from ediv.errors import InputError
from ediv.ovf.importer import open_appliance
from ediv.ovf.inspect import inspect_package
from ediv.scenario import load_string
from tests import ovf_factory as f


@pytest.fixture(scope="module")
def cli():
    from ediv.client import ovf_cmd

    ovf_cmd.register(cli_mod.cli)
    return cli_mod.cli


def package(tmp_path, **kwargs):
    tmp_path.mkdir(exist_ok=True)
    return f.build_package(tmp_path, descriptor_text=f.descriptor(
        disk_href="router-disk1.img", **kwargs)).path


def test_absurd_memory_is_refused(tmp_path, cli):
    """``byte * 2^80`` of memory: refused with the cap named, not turned into a <mem>."""
    pkg = package(tmp_path, mem_mb=1, mem_units="byte * 2^80")
    with pytest.raises(InputError, match=r"memory of 1152921504606846976 MB exceeds the limit"):
        open_appliance(pkg)
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(pkg)])
    assert r.exit_code == 1 and "--limit memory_mb=N" in r.output
    big = package(tmp_path / "big", mem_mb=2, mem_units="byte * 2^40")  # 2 TiB: over the cap
    assert CliRunner().invoke(cli, ["ovf", "inspect", str(big)]).exit_code == 1
    raised = CliRunner().invoke(cli, ["ovf", "inspect", "--json", str(big), "--limit",
                                      "memory_mb=4M"])
    assert raised.exit_code == 0, raised.output
    assert json.loads(raised.stdout)["systems"][0]["memory_mb"] == 2 * 2**20


def test_cpu_count_cap(tmp_path):
    with pytest.raises(InputError, match="CPU count 100000 exceeds the limit of 1024"):
        inspect_package(package(tmp_path, cpus=100_000))


def test_nic_count_cap(tmp_path, cli):
    nets = tuple(f"n{i}" for i in range(300))
    pkg = package(tmp_path, networks=nets)
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(pkg)])
    assert r.exit_code == 1 and "NICs: 300 exceeds the limit of 256" in r.output
    assert CliRunner().invoke(cli, ["ovf", "inspect", str(pkg), "--limit", "nics=300"]
                              ).exit_code == 0


def test_bad_limit_option(cli, tmp_path):
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(package(tmp_path)), "--limit", "nics"])
    assert r.exit_code == 1 and "expected KEY=VALUE" in r.output


@pytest.mark.parametrize("mem, ok", [("1024G", True), ("99999999999G", False)])
def test_scenario_mem_sanity(mem, ok):
    text = (f'<vnuml><global><version>1.8</version><simulation_name>s</simulation_name>'
            f'</global><vm name="a"><mem>{mem}</mem></vm></vnuml>')
    if ok:
        load_string(text, "s.xml", ".")
    else:
        with pytest.raises(InputError, match="not a memory size a VM can have"):
            load_string(text, "s.xml", ".")


def test_huge_descriptor_refused_before_parsing(tmp_path, cli):
    """200k NICs would take hundreds of MB to parse: the descriptor's size stops it first."""
    nic = ("<Item><rasd:Connection>lan</rasd:Connection><rasd:InstanceID>{}</rasd:InstanceID>"
           "<rasd:ResourceType>10</rasd:ResourceType></Item>")
    text = f.descriptor(disk_href="router-disk1.img").replace(
        "</VirtualHardwareSection>",
        "".join(nic.format(100 + i) for i in range(200_000)) + "</VirtualHardwareSection>")
    pkg = f.build_package(tmp_path, descriptor_text=text).path
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(pkg)])
    assert r.exit_code == 1 and "descriptor_bytes" in r.output, r.output


def test_member_count_cap(tmp_path, cli):
    built = f.build_package(tmp_path)
    f.write_ova(built.path, [*built.members.items(), *((f"extra{i}", b"") for i in range(20))])
    r = CliRunner().invoke(cli, ["ovf", "inspect", str(built.path), "--limit", "members=10"])
    assert r.exit_code == 1 and "more than 10 archive members" in r.output
