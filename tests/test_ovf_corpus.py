"""Every real descriptor and OVA of ../shared/corpus/ovf is read without a crash.

Verdicts: ok, ok with warnings, rejected (InputError/EdivError with a reason). Any other
exception type is a bug. Spot checks pin what specific real files must yield.
"""

from __future__ import annotations

import collections

import pytest

from ediv.errors import EdivError
from ediv.ovf.inspect import inspect_package
from ediv.ovf.package import open_package
from ediv.ovf.reader import read_descriptor

pytestmark = pytest.mark.corpus
SUFFIXES = (".ovf", ".ova", ".xml", ".ovd", ".expected")


@pytest.fixture(scope="module")
def ovf_corpus(corpus):
    root = corpus / "ovf"
    if not root.is_dir():
        pytest.skip(f"OVF corpus not found at {root}")
    return root


def test_whole_corpus_reads_without_crash(ovf_corpus, monkeypatch):
    """Every file gets one verdict; how many files each verdict covers is printed (run with
    -s) and the counts are asserted loosely. A traceback is never a verdict."""
    for var in ("EDIV_OVF_REQUIRE_SIGNATURE", "EDIV_OVF_TRUST", "EDIV_OVF_LIMITS"):
        monkeypatch.delenv(var, raising=False)
    verdicts: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    crashes = []
    files = sorted(p for p in ovf_corpus.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    for path in files:
        try:
            result = inspect_package(path)
        except EdivError as exc:
            verdicts["rejected"] += 1
            reasons[str(exc).split(": ", 1)[-1].split(" (")[0][:60]] += 1
            continue
        except Exception as exc:
            verdicts["traceback"] += 1
            crashes.append(f"{path.relative_to(ovf_corpus)}: {type(exc).__name__}: {exc}")
            continue
        statuses[f"manifest {result.manifest.status}"] += 1
        statuses[f"signature {result.signature.status}"] += 1
        if result.failed:
            verdicts["refused by the trust policy"] += 1
        else:
            verdicts["accepted with warnings" if result.warnings else "accepted"] += 1
    print(f"\nOVF corpus: {len(files)} files: " +
          ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    for reason, n in reasons.most_common():
        print(f"  rejected x{n}: {reason}")
    assert not crashes, "\n".join(crashes)
    assert verdicts["traceback"] == 0
    assert sum(verdicts.values()) == len(files) > 800
    assert verdicts["accepted"] + verdicts["accepted with warnings"] > 780
    assert 0 < verdicts["refused by the trust policy"] < 20  # the corpus's broken packages
    assert statuses["signature expired"] >= 1 and statuses["manifest mismatch"] >= 1


def read(ovf_corpus, rel):
    return read_descriptor((ovf_corpus / rel).read_bytes(), rel)


def summary(ovf_corpus, rel):
    return inspect_package(ovf_corpus / rel).to_json()


def test_cisco_csr1000v(ovf_corpus):
    data = summary(ovf_corpus, "cot/csr1000v.ovf")
    assert data["ovf_version"] == "1.0"
    assert len(data["properties"]) == 27
    (system,) = data["systems"]
    assert len(system["nics"]) == 3
    assert set(data["networks"]) == {n["network"] for n in system["nics"]}
    assert data["configuration"] in data["deployment_options"]


def test_profiles_select_nics(ovf_corpus):
    env = read(ovf_corpus, "cot/iosv.ovf")
    vs = env.systems()[0]
    per_profile = {opt.id: sum(1 for i in vs.items(opt.id) if i.resource_type == 10)
                   for opt in env.deployment_options}
    assert len(set(per_profile.values())) > 1  # profiles differ in NIC count
    assert max(per_profile.values()) == 16


def test_ovf_09_typed_sections(ovf_corpus):
    data = summary(ovf_corpus, "cot/v0.9.ovf")
    assert data["ovf_version"] == "0.9"
    (system,) = data["systems"]
    assert system["memory_mb"] == 8192 and system["cpus"] == 1
    assert system["nics"] == [{"network": "bridged"}]
    assert system["disks"][0]["file"] == "input.vmdk"
    assert system["disks"][0]["capacity_bytes"] == 1073741824


def test_ovf_2_virtualbox(ovf_corpus):
    data = summary(ovf_corpus, "cot/ubuntu.2.0.ovf")
    assert data["ovf_version"] == "2.0"
    assert data["manifest"]["status"] == "ok"
    assert data["systems"][0]["nics"]


def test_nested_collection_flattens(ovf_corpus):
    data = summary(ovf_corpus,
                   "govmomi/external/2011OVFs/StudioVappEulaOvf/StudioVappEulaOvf.ovf")
    assert len(data["systems"]) == 2
    assert len(data["properties"]) == 13


def test_wrong_encoding_declaration_repaired(ovf_corpus):
    env = read(ovf_corpus, "xenadmin/sample_app.ovf")
    assert any("utf-16" in w for w in env.warnings)
    assert env.disks and env.systems()


def test_undeclared_prefix_repaired(ovf_corpus):
    env = read(ovf_corpus, "govmomi/external/ovftoolresources/item_msgid.ovf")
    assert any("'ovfstr'" in w for w in env.warnings)


def test_namespace_uri_with_space_repaired(ovf_corpus):
    env = read(ovf_corpus, "govmomi/virtualsystemcollection.ovf")
    assert any("not a valid URI" in w for w in env.warnings)


def test_namespace_less_envelope(ovf_corpus):
    env = read(ovf_corpus, "govmomi/external/SLES11_SP2_64/SLES11_SP2_64.ovf")
    assert env.ovf_version == "1.0"
    assert any("no namespace" in w for w in env.warnings)


def test_ovirt_dialect(ovf_corpus):
    env = read(ovf_corpus, "ovirt-engine/vmOvfData2.xml")
    assert env.dialect == "ovirt" and env.ovf_version == "1.0"
    assert env.systems()[0].name == "sevenofnine"


def test_unknown_required_vs_optional_sections(ovf_corpus):
    env = read(ovf_corpus, "govmomi/external/unsupported-ovfs/unsupportedSection.ovf")
    assert env.unknown_required == ["ovf:UnsupportedSectionFoo"]
    names = {e.name for e in env.extensions}
    assert "ovf:UnknwonSection" in names  # kept, but silent: ovf:required="false"
    assert not any("UnknwonSection" in w for w in env.warnings)


def test_fictional_ovf_3_rejected(ovf_corpus):
    with pytest.raises(EdivError, match="unknown OVF envelope namespace"):
        read(ovf_corpus, "cot/ersatz_ovf_3.0.ovf")


def test_real_ova_with_spaced_sha1_manifest(ovf_corpus):
    data = summary(ovf_corpus, "govmomi/vapi-testdata/ttylinux-pc_i486-16.1.ova")
    assert data["manifest"]["status"] == "ok"
    assert len(data["manifest"]["files"]) == 2


def test_gzip_wrapped_ova(ovf_corpus):
    data = summary(ovf_corpus, "ganeti/ova.ova")
    assert any("compressed tar" in w for w in data["warnings"])
    assert data["systems"]


def test_wrong_manifest_mismatch(ovf_corpus):
    result = inspect_package(ovf_corpus / "ganeti/wrong_manifest.ovf")
    assert result.manifest.status == "mismatch" and result.failed


def test_signed_expired_weak_certificate(ovf_corpus):
    result = inspect_package(ovf_corpus / "open-ovf/test_files/ourOVF.ovf")
    assert result.signature.status == "expired"
    assert any("verifies" in d for d in result.signature.details)
    assert any("512-bit" in w for w in result.warnings)
    assert any("SHA-1" in w for w in result.warnings)


def test_broken_signed_ova(ovf_corpus):
    result = inspect_package(ovf_corpus / "open-ovf/test_files/ourOVF.ova")
    assert result.manifest.status == "mismatch"
    assert result.signature.status == "invalid"


@pytest.mark.parametrize("rel, message", [
    ("glance/testserver-not-tar.ova", "neither an OVA"),
    ("glance/testserver-no-ovf.ova", "no .ovf descriptor"),
    ("cloudkeeper/image_formats/fake-image02.ova", "no .ovf descriptor"),
    ("ganeti/wrong_xml.ovf", "malformed XML"),
    ("govmomi/external/DeleteHDTestdata/PvScsis_old/descriptor.ovf", "root element is <HTML>"),
])
def test_broken_inputs_rejected_with_reason(ovf_corpus, rel, message):
    with pytest.raises(EdivError, match=message):
        inspect_package(ovf_corpus / rel)


def test_descriptor_not_first_member_warns(ovf_corpus):
    with open_package(ovf_corpus / "cloudkeeper/image_formats/fake-image06.ova") as pkg:
        assert pkg.descriptor_name == "image.ovf"
        assert any("not the first member" in w for w in pkg.warnings)


def test_schema_validation_advisory(ovf_corpus):
    schemas = ovf_corpus / "xen-orchestra/ova-schema"
    good = inspect_package(ovf_corpus / "cot/csr1000v.ovf", schema_dir=schemas)
    assert good.schema.status == "valid"
    bad = inspect_package(ovf_corpus / "cot/invalid.ovf", schema_dir=schemas)
    assert bad.schema.status == "invalid"
    assert any(w.startswith("schema: ") for w in bad.warnings)
    assert not bad.failed  # advisory only


def test_schema_with_absolute_imports(ovf_corpus):
    schemas = ovf_corpus / "openxt-manager/schema"
    result = inspect_package(ovf_corpus / "cot/minimal.ovf", schema_dir=schemas)
    assert result.schema.status == "valid"
    v2 = inspect_package(ovf_corpus / "cot/ubuntu.2.0.ovf", schema_dir=schemas)
    assert v2.schema.status == "skipped"  # no envelope/2 schema exists in public
