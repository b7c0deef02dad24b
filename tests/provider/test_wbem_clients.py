"""Real WBEM clients against the server: pywbemcli (pywbemtools) and sblim wbemcli."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wbem_support import USERS

HOST1 = 'EDIV_HostSystem.CreationClassName="EDIV_HostSystem",Name="host1"'


def _clean_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYWBEMCLI_SERVER")}
    env["HOME"] = str(tmp_path)  # pywbemcli keeps history/connection files under HOME
    return env


@pytest.fixture
def pywbemcli(wbem_server, ca_file, tmp_path):
    exe = Path(sys.executable).with_name("pywbemcli")
    if not exe.exists():
        pytest.skip("pywbemcli (pywbemtools) is not installed in this environment")
    name, password = USERS["reader"]

    def run(*args: str, namespace: str = "root/ediv") -> str:
        cmd = [str(exe), "-s", wbem_server.url, "-u", name, "-p", password,
               "--ca-certs", ca_file, "-d", namespace, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env=_clean_env(tmp_path), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return proc.stdout
    return run


def _squeeze(table: str) -> str:
    """Table output without borders and line wrapping."""
    return re.sub(r"[\s|]+", "", table)


def test_pywbemcli_server_commands(pywbemcli):
    spaces = pywbemcli("namespace", "list")
    assert "interop" in spaces and "root/ediv" in spaces
    assert pywbemcli("server", "brand").strip() == "ediv"
    profiles = pywbemcli("profile", "list")
    for name in ("Profile Registration", "System Virtualization", "Virtual System",
                 "Resource Allocation", "EDIV Distributed Scenario"):
        assert name in profiles
    central = _squeeze(pywbemcli("profile", "centralinsts", "--profile", "System Virtualization"))
    for host in ("host1", "host2"):
        assert f'root/ediv:EDIV_HostSystem.CreationClassName="EDIV_HostSystem"Name="{host}"' \
            in central
    reg = _squeeze(pywbemcli("profile", "centralinsts", "--profile", "Profile Registration"))
    assert "interop:CIM_ObjectManager." in reg


def test_pywbemcli_class_commands(pywbemcli):
    names = pywbemcli("class", "enumerate", "--no", "--di").split()
    assert "EDIV_VirtualSystemManagementService" in names
    mof = pywbemcli("class", "get", "EDIV_VirtualSystemManagementService")
    assert "class EDIV_VirtualSystemManagementService : CIM_VirtualSystemManagementService" in mof
    assert "EDIV_Scenario REF AffectedSystem" in mof and "CIM_ConcreteJob REF Job" in mof


def test_pywbemcli_instance_commands(pywbemcli):
    listing = pywbemcli("instance", "enumerate", "EDIV_HostSystem")
    assert listing.count("instance of EDIV_HostSystem") == 2
    assert 'Address = "198.18.0.11";' in listing
    one = pywbemcli("instance", "get", HOST1)
    assert "MemoryMB = 4096;" in one and 'Name = "host1";' in one
    assoc = pywbemcli("instance", "associators", HOST1, "--no")
    assert 'EDIV_RegisteredProfile.InstanceID="ediv:DMTF+System_Virtualization+1.0.0"' in assoc
    refs = pywbemcli("instance", "references", HOST1)
    assert "instance of EDIV_ElementConformsToProfile" in refs
    counts = pywbemcli("instance", "count", "EDIV_*")
    assert "EDIV_RegisteredProfile" in counts and "EDIV_HostSystem" in counts


@pytest.fixture
def wbemcli(wbem_server, ca_file, tmp_path):
    exe = shutil.which("wbemcli")
    if exe is None:
        pytest.skip("sblim wbemcli is not installed (apt-get install sblim-wbemcli)")
    name, password = USERS["reader"]
    base = f"https://{name}:{password}@127.0.0.1:{wbem_server.port}"

    def run(op: str, path: str, *opts: str, props: str | None = None) -> str:
        """``props``: wbemcli's property list (after the object path)."""
        tail = [props] if props is not None else []
        proc = subprocess.run([exe, op, "-cacert", ca_file, *opts, f"{base}/{path}", *tail],
                              capture_output=True, text=True, timeout=60,
                              env=_clean_env(tmp_path))
        assert proc.returncode == 0 and "Exception" not in proc.stderr + proc.stdout, \
            proc.stderr + proc.stdout
        return proc.stdout
    return run


def test_wbemcli_reads(wbemcli):
    assert "root/ediv:EDIV_HostSystem" in wbemcli("ecn", "root/ediv")
    profiles = wbemcli("ei", "interop:CIM_RegisteredProfile")
    assert profiles.count("EDIV_RegisteredProfile.InstanceID=") == 6
    assert 'RegisteredName="EDIV Distributed Scenario"' in profiles
    host = wbemcli("gi", f"root/ediv:{HOST1}")
    assert 'Address="198.18.0.11"' in host and "MemoryMB=4096" in host
    names = wbemcli("ein", "root/ediv:EDIV_HostSystem")
    assert 'Name="host1"' in names and 'Name="host2"' in names
    cls = wbemcli("gc", "root/ediv:EDIV_ScenarioSettingData")
    assert "ScenarioDefinition=" in cls and "Archive=" in cls
    assoc = wbemcli("ain", f"root/ediv:{HOST1}", "-ac", "CIM_ElementConformsToProfile")
    assert "interop:EDIV_RegisteredProfile" in assoc
    refs = wbemcli("rin", f"root/ediv:{HOST1}")
    assert "EDIV_ElementConformsToProfile" in refs
    om = wbemcli("ei", "interop:CIM_ObjectManager")
    assert 'ElementName="ediv"' in om


def test_null_properties_left_out_unless_named(wbemcli, pywbemcli):
    """A NULL property (Caption of a host) is not sent without a PropertyList; named in one,
    it is sent without a value: wbemcli and pywbemcli show it then, and only then."""
    full = wbemcli("gi", f"root/ediv:{HOST1}")
    assert 'Address="198.18.0.11"' in full and "Caption" not in full
    named = wbemcli("gi", f"root/ediv:{HOST1}", props="Caption,MemoryMB")
    assert "Caption=" in named and "MemoryMB=4096" in named and "Address" not in named
    listing = pywbemcli("instance", "get", HOST1)
    assert "MemoryMB = 4096;" in listing and "Caption" not in listing
    picked = pywbemcli("instance", "get", HOST1, "--pl", "Caption,MemoryMB")
    assert "Caption = NULL;" in picked and "MemoryMB = 4096;" in picked
    assert "Address" not in picked
