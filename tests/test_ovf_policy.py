"""One trust policy (ovf.policy) for inspect, convert/import, scenarios and the server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ediv.errors import InputError
from ediv.ovf import policy
from ediv.ovf.appliance import CACHE_VAR
from ediv.ovf.inspect import inspect_package
from ediv.provider.config import load_config
from ediv.scenario import load_scenario
from tests import ovf_factory as f

LAB = """<vnuml>
  <global><version>1.8</version><simulation_name>plab</simulation_name></global>
  <net name="mgmt" mode="virtual_bridge"/>
  <vm name="fw" appliance="router.ova"/>
</vnuml>
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in (policy.REQUIRE_VAR, policy.TRUST_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(CACHE_VAR, str(tmp_path / "cache"))
    yield
    policy.use(None)


@pytest.mark.parametrize("manifest, signature, require, decision", [
    ("ok", "ok", True, "accepted"),
    ("ok", "untrusted", False, "accepted"),
    ("ok", "untrusted", True, "refused"),
    ("absent", "absent", False, "accepted"),
    ("absent", "absent", True, "refused"),
    ("ok", "invalid", False, "refused"),
    ("ok", "expired", False, "refused"),
    ("ok", "not-yet-valid", False, "refused"),
    ("mismatch", "ok", False, "refused"),
])
def test_decision_table(manifest, signature, require, decision):
    got = policy.TrustPolicy(require_signature=require).decide(manifest, "m", signature, "s")
    assert got.decision == decision
    assert got.to_json()["require_signature"] is require
    assert (got.to_json()["reason"] is None) == (decision == "accepted")
    if signature in ("untrusted", "absent") and decision == "accepted":
        assert got.warnings  # accepted, but never silently


def test_server_config_sets_the_policy(tmp_path):
    built = f.build_package(tmp_path)  # unsigned
    conf = tmp_path / "server.toml"
    conf.write_text('[server]\novf_require_signature = true\novf_trust = "cas"\n')
    cfg = load_config(conf)
    assert cfg.trust_policy() == policy.TrustPolicy(True, str(tmp_path / "cas"))
    assert not inspect_package(built.path).failed
    policy.use(cfg.trust_policy())
    result = inspect_package(built.path)
    assert result.failed and result.to_json()["policy"]["decision"] == "refused"
    conf.write_text("[server]\novf_require_signature = 1\n")
    with pytest.raises(InputError, match="expected true or false"):
        load_config(conf)


@pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None,
                    reason="needs qemu-img and mkfs.ext2")
def test_scenario_appliance_follows_the_same_policy(tmp_path, monkeypatch):
    ext2 = f.ext2_image(tmp_path / "root.img")
    signer = f.self_signed()  # verifies, but is in no trust store: untrusted
    f.build_appliance(tmp_path, ext2, sign_with=signer, networks=("mgmt",))
    (tmp_path / "trust.pem").write_bytes(f.self_signed("Someone Else").cert_pem)
    monkeypatch.setenv(policy.TRUST_VAR, str(tmp_path / "trust.pem"))
    lab = tmp_path / "lab.xml"
    lab.write_text(LAB)
    scenario, diagnostics = load_scenario(lab)
    fw = scenario.vm("fw")
    assert fw.filesystem is not None
    assert Path(fw.filesystem.path).stat().st_mode & 0o777 == 0o600
    assert any("signature untrusted" in d.message and d.severity == "warning"
               for d in diagnostics)
    monkeypatch.setenv(policy.REQUIRE_VAR, "1")
    with pytest.raises(InputError, match="a trusted signature is required"):
        load_scenario(lab)
