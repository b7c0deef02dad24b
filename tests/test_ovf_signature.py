"""Package signatures (.cert): RSA and ECDSA, chains, trust, expiry, weak keys, bad files."""

from __future__ import annotations

import datetime as dt

import pytest

from ediv.ovf.inspect import inspect_package
from ediv.ovf.signature import parse_cert_file
from tests import ovf_factory as f


@pytest.fixture(scope="module")
def rsa_signer():
    return f.self_signed()


@pytest.mark.parametrize("kind, algorithm", [("rsa", "SHA256"), ("ec", "SHA256"),
                                             ("ec", "SHA512"), ("rsa", "SHA512")])
def test_valid_signature_trusted(tmp_path, kind, algorithm):
    signer = f.self_signed(kind=kind)
    built = f.build_package(tmp_path, sign_with=signer, algorithm=algorithm)
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "ok", result.signature.details
    assert not result.failed
    assert "Appliance Vendor" in result.signature.signer


def test_chain_to_trusted_ca(tmp_path):
    signer, ca_pem = f.ca_signed()
    built = f.build_package(tmp_path, sign_with=signer, trust_pem=ca_pem)
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "ok", result.signature.details
    assert "Test Root CA" in result.signature.issuer


def test_chain_to_unknown_ca_untrusted(tmp_path):
    signer, _ca_pem = f.ca_signed()
    _other, other_ca = f.ca_signed(ca_cn="Some Other CA")
    built = f.build_package(tmp_path, sign_with=signer, trust_pem=other_ca)
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "untrusted"
    assert any("Test Root CA" in d and "not in" in d for d in result.signature.details)


def test_trust_store_folder(tmp_path, rsa_signer):
    built = f.build_package(tmp_path, sign_with=rsa_signer)
    store = tmp_path / "cas"
    store.mkdir()
    (store / "vendor.pem").write_bytes(rsa_signer.cert_pem)
    assert inspect_package(built.path, trust=store).signature.status == "ok"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert inspect_package(built.path, trust=empty).signature.status == "untrusted"


def test_signature_over_other_data_invalid(tmp_path, rsa_signer):
    built = f.build_package(tmp_path, sign_with=rsa_signer, wrong_signature=True)
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "invalid" and result.failed


def test_manifest_edited_after_signing_invalid(tmp_path, rsa_signer):
    """Re-hashing a tampered disk into the manifest does not help: the signature breaks."""
    built = f.build_package(tmp_path, sign_with=rsa_signer)
    members = dict(built.members)
    members["router-disk1.img"] = b"evil" + members["router-disk1.img"][4:]
    members["router.mf"] = f.manifest({"router.ovf": members["router.ovf"],
                                       "router-disk1.img": members["router-disk1.img"]})
    f.write_ova(built.path, list(members.items()))
    result = inspect_package(built.path, trust=built.trust)
    assert result.manifest.status == "ok"
    assert result.signature.status == "invalid"


def test_expired_and_not_yet_valid(tmp_path):
    expired = f.self_signed(expired=True)
    built = f.build_package(tmp_path, sign_with=expired)
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "expired"
    fresh = f.self_signed()
    built = f.build_package(tmp_path, sign_with=fresh)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert inspect_package(built.path, trust=built.trust, now=past).signature.status == "expired"


def test_weak_key_and_sha1_reported(tmp_path):
    weak = f.self_signed(bits=1024)
    built = f.build_package(tmp_path, sign_with=weak, algorithm="SHA1")
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "ok"  # verifies, but the user is told
    joined = " ".join(result.warnings)
    assert "1024-bit" in joined and "SHA-1" in joined


def test_cert_without_manifest_invalid(tmp_path, rsa_signer):
    built = f.build_package(tmp_path, sign_with=rsa_signer)
    members = {k: v for k, v in built.members.items() if not k.endswith(".mf")}
    f.write_ova(built.path, list(members.items()))
    result = inspect_package(built.path, trust=built.trust)
    assert result.manifest.status == "absent"
    assert result.signature.status == "invalid"


def test_garbage_cert_file_invalid(tmp_path, rsa_signer):
    built = f.build_package(tmp_path, sign_with=rsa_signer)
    members = dict(built.members)
    members["router.cert"] = b"not a certificate\n"
    f.write_ova(built.path, list(members.items()))
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "invalid"
    assert any("unreadable certificate" in d for d in result.signature.details)


def test_parse_wrapped_signature(rsa_signer):
    sig = f.sign(rsa_signer, b"data")
    hexsig = sig.hex()
    text = (f"SHA256(x.mf)= {hexsig[:64]}\n{hexsig[64:]}\n").encode() + rsa_signer.cert_pem
    parsed = parse_cert_file(text)
    assert parsed.signature == sig and parsed.signed_name == "x.mf"
    assert len(parsed.certificates) == 1
