"""``ediv ovf inspect`` end to end on packages the tests build (exit codes, JSON contract)."""

from __future__ import annotations

import json
import tarfile

import pytest
from click.testing import CliRunner

from ediv.client import cli as cli_mod
from tests import ovf_factory as f

CONTRACT_KEYS = {"ovf_version", "systems", "networks", "properties", "manifest", "signature",
                 "warnings"}
SYSTEM_KEYS = {"id", "name", "memory_mb", "cpus", "nics", "disks"}
DISK_KEYS = {"file", "capacity_bytes", "format"}


@pytest.fixture(scope="module")
def cli():
    try:
        cli_mod._register()
    except ImportError:  # other areas' command modules may not exist yet
        from ediv.client import ovf_cmd

        ovf_cmd.register(cli_mod.cli)
    return cli_mod.cli


@pytest.fixture(scope="module")
def signer():
    return f.self_signed()


def run(cli, *args):
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, ["ovf", "inspect", *map(str, args)])


def test_good_signed_package_inspects_ok(cli, signer, tmp_path):
    built = f.build_package(tmp_path, sign_with=signer)
    result = run(cli, built.path, "--json", "--trust", built.trust)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= CONTRACT_KEYS
    assert data["ovf_version"] == "1.0"
    assert data["networks"] == ["mgmt", "lan"]
    assert data["properties"] == [{"key": "hostname", "value": "r1"},
                                  {"key": "domain", "value": "lab"}]
    assert data["manifest"]["status"] == "ok"
    assert data["signature"]["status"] == "ok"
    assert isinstance(data["warnings"], list)
    (system,) = data["systems"]
    assert set(system) == SYSTEM_KEYS
    assert system == {
        "id": "router1", "name": "Router One", "memory_mb": 256, "cpus": 2,
        "nics": [{"network": "mgmt"}, {"network": "lan"}],
        "disks": [{"file": "router-disk1.img", "capacity_bytes": 2**30,
                   "format": "http://www.vmware.com/interfaces/specifications/"
                             "vmdk.html#streamOptimized"}],
    }
    assert set(system["disks"][0]) == DISK_KEYS
    assert [f["status"] for f in data["manifest"]["files"]] == ["ok", "ok"]


def test_human_summary(cli, tmp_path):
    built = f.build_package(tmp_path)
    result = run(cli, built.path)
    assert result.exit_code == 0, result.output
    assert "system router1 (Router One): 2 CPU, 256 MB" in result.output
    assert "manifest: ok" in result.output
    assert "signature: absent" in result.output


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA512"])
def test_manifest_algorithms(cli, tmp_path, algorithm):
    built = f.build_package(tmp_path, algorithm=algorithm)
    result = run(cli, built.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["manifest"]["status"] == "ok"


def test_tampered_disk_fails(cli, signer, tmp_path):
    built = f.build_package(tmp_path, sign_with=signer, tamper_disk=True)
    result = run(cli, built.path, "--json", "--trust", built.trust)
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["manifest"]["status"] == "mismatch"
    assert data["signature"]["status"] == "ok"  # the manifest itself is intact
    assert "router-disk1.img: SHA256 digest mismatch" in result.stderr


def test_tampered_descriptor_fails(cli, tmp_path):
    built = f.build_package(tmp_path, tamper_descriptor=True)
    result = run(cli, built.path)
    assert result.exit_code == 2
    assert "router.ovf: SHA256 digest mismatch" in result.output
    assert "VERIFICATION FAILED" in result.output


def test_wrong_signature_fails(cli, signer, tmp_path):
    built = f.build_package(tmp_path, sign_with=signer, wrong_signature=True)
    result = run(cli, built.path, "--json", "--trust", built.trust)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["signature"]["status"] == "invalid"
    assert "does not verify" in result.stderr


def test_expired_certificate_fails(cli, tmp_path):
    expired = f.self_signed(expired=True)
    built = f.build_package(tmp_path, sign_with=expired)
    result = run(cli, built.path, "--json", "--trust", built.trust)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["signature"]["status"] == "expired"
    assert "signature expired" in result.stderr


def test_untrusted_signer_is_a_warning_by_default(cli, signer, tmp_path, monkeypatch):
    """A verified self-signed signer that is not in the trust store: reported, and the
    package is used (exit 0), as vSphere and ovftool do; --require-signature refuses it."""
    monkeypatch.delenv("EDIV_OVF_REQUIRE_SIGNATURE", raising=False)
    built = f.build_package(tmp_path, sign_with=signer)
    result = run(cli, built.path, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["signature"]["status"] == "untrusted"
    assert data["policy"] == {"require_signature": False, "decision": "accepted",
                              "reason": None}
    assert any("self-signed" in w and "used anyway" in w for w in data["warnings"])

    strict = run(cli, built.path, "--json", "--require-signature")
    assert strict.exit_code == 2
    policy = json.loads(strict.stdout)["policy"]
    assert policy["require_signature"] and policy["decision"] == "refused"
    assert "self-signed" in policy["reason"] and "self-signed" in strict.stderr


def test_unsigned_package_under_each_policy(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("EDIV_OVF_REQUIRE_SIGNATURE", raising=False)
    built = f.build_package(tmp_path)
    assert run(cli, built.path, "--json").exit_code == 0
    text = run(cli, built.path)
    assert text.exit_code == 0 and "not signed" in text.stdout
    assert "policy: accepted (signature not required)" in text.stdout
    refused = run(cli, built.path, "--require-signature")
    assert refused.exit_code == 2
    assert "VERIFICATION FAILED: the package is not signed" in refused.stdout
    assert "policy: refused (signature required)" in refused.stdout
    monkeypatch.setenv("EDIV_OVF_REQUIRE_SIGNATURE", "1")  # what scenarios and servers use
    assert run(cli, built.path, "--json").exit_code == 2


def test_expired_refused_whatever_the_policy(cli, tmp_path):
    expired = f.self_signed(expired=True)
    built = f.build_package(tmp_path, sign_with=expired)
    result = run(cli, built.path, "--json")  # not even in the trust store: still expired
    assert result.exit_code == 2
    assert json.loads(result.stdout)["policy"]["decision"] == "refused"


def test_path_traversal_member_rejected(cli, tmp_path):
    built = f.build_package(tmp_path)
    f.write_ova(built.path, [*built.members.items(), ("../../etc/evil", b"x")])
    result = run(cli, built.path, "--json")
    assert result.exit_code == 1
    assert "'../../etc/evil'" in result.stderr and "path traversal" in result.stderr
    assert result.stdout == ""


def test_absolute_member_rejected(cli, tmp_path):
    built = f.build_package(tmp_path)
    f.write_ova(built.path, [*built.members.items(), ("/tmp/evil", b"x")])
    result = run(cli, built.path)
    assert result.exit_code == 1
    assert "path traversal" in result.stderr


def test_symlink_member_rejected(cli, tmp_path):
    built = f.build_package(tmp_path)
    f.add_special_member(built.path, "router-disk2.img", tarfile.SYMTYPE, "/etc/shadow")
    result = run(cli, built.path)
    assert result.exit_code == 1
    assert "symbolic link" in result.stderr and "/etc/shadow" in result.stderr


def test_unreadable_input_exit_1(cli, tmp_path):
    junk = tmp_path / "junk.ova"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(600))
    result = run(cli, junk)
    assert result.exit_code == 1
    assert "neither an OVA" in result.stderr
