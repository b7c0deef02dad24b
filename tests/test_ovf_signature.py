"""Package signatures (.cert): RSA and ECDSA, chains, trust, expiry, weak keys, bad files."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

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
    early = inspect_package(built.path, trust=built.trust, now=past)
    assert early.signature.status == "not-yet-valid" and early.failed


# -- RFC 5280 path validation (cryptography's verifier), chains built here -----------------
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def root():
    key = f.make_key("ec")
    return key, f.issue("Test Root CA", key, "Test Root CA", key, ca=True)


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _signed_by(tmp_path, root, leaf_key, leaf, *intermediates):
    signer = f.Signer(leaf_key, leaf, chain=list(intermediates))
    return f.build_package(tmp_path, sign_with=signer, trust_pem=_pem(root[1]))


def test_signer_issued_by_ca_false_leaf_is_never_ok(tmp_path, root):
    """A leaf certificate (CA:FALSE) of a trusted root mints a 'signer': path validation
    refuses it although every signature of the chain is correct."""
    root_key, _root = root
    leaf_key, signer_key = f.make_key("ec"), f.make_key("ec")
    leaf = f.issue("Some TLS Server", leaf_key, "Test Root CA", root_key, ca=False,
                   usage=f.key_usage(sign=True, cert_sign=True))
    forged = f.issue("Forged Vendor", signer_key, "Some TLS Server", leaf_key, ca=False)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, forged, leaf).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status in ("invalid", "untrusted")
    assert result.signature.status == "invalid", result.signature.details
    assert result.failed
    assert "path validation" in result.signature.details[-1]


def test_path_length_violated(tmp_path, root):
    root_key, _root = root
    k1, k2, signer_key = f.make_key("ec"), f.make_key("ec"), f.make_key("ec")
    ca1 = f.issue("CA One", k1, "Test Root CA", root_key, ca=True, path_length=0)
    ca2 = f.issue("CA Two", k2, "CA One", k1, ca=True)
    leaf = f.issue("Vendor", signer_key, "CA Two", k2, ca=False)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf, ca2, ca1).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == "invalid", result.signature.details
    # the same chain without the violation validates
    ca1_ok = f.issue("CA One", k1, "Test Root CA", root_key, ca=True, path_length=1)
    good = inspect_package(_signed_by(tmp_path, root, signer_key, leaf, ca2, ca1_ok).path,
                           trust=tmp_path / "trust.pem")
    assert good.signature.status == "ok", good.signature.details


def test_expired_intermediate(tmp_path, root):
    root_key, _root = root
    now = dt.datetime.now(dt.UTC)
    ca_key, signer_key = f.make_key("ec"), f.make_key("ec")
    ca = f.issue("Old CA", ca_key, "Test Root CA", root_key, ca=True,
                 not_before=now - 400 * DAY, not_after=now - 10 * DAY)
    leaf = f.issue("Vendor", signer_key, "Old CA", ca_key, ca=False)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf, ca).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == "expired" and result.failed
    assert any("Old CA" in d for d in result.signature.details)


def test_not_yet_valid_signer(tmp_path, root):
    root_key, _root = root
    now = dt.datetime.now(dt.UTC)
    signer_key = f.make_key("ec")
    leaf = f.issue("Future Vendor", signer_key, "Test Root CA", root_key, ca=False,
                   not_before=now + 10 * DAY, not_after=now + 400 * DAY)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == "not-yet-valid" and result.failed
    assert result.to_json()["signature"]["status"] == "not-yet-valid"


@pytest.mark.parametrize("usage, eku, status", [
    (True, [ExtendedKeyUsageOID.CODE_SIGNING], "ok"),
    (True, [ExtendedKeyUsageOID.SERVER_AUTH], "invalid"),
    (f.key_usage(cert_sign=True), None, "invalid"),  # no digitalSignature
    (None, None, "ok"),  # neither extension: nothing restricts the key
])
def test_signer_key_usage_and_eku(tmp_path, root, usage, eku, status):
    root_key, _root = root
    signer_key = f.make_key("ec")
    leaf = f.issue("Vendor", signer_key, "Test Root CA", root_key, ca=False, usage=usage,
                   eku=eku)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == status, result.signature.details


def test_issuer_without_key_cert_sign(tmp_path, root):
    root_key, _root = root
    ca_key, signer_key = f.make_key("ec"), f.make_key("ec")
    ca = f.issue("Signing-only CA", ca_key, "Test Root CA", root_key, ca=True,
                 usage=f.key_usage(sign=True))
    leaf = f.issue("Vendor", signer_key, "Signing-only CA", ca_key, ca=False)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf, ca).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == "invalid", result.signature.details


def test_self_signed_signer_not_in_store_untrusted(tmp_path, rsa_signer):
    built = f.build_package(tmp_path, sign_with=rsa_signer, trust_pem=_pem(f.self_signed(
        "Someone Else").cert))
    result = inspect_package(built.path, trust=built.trust)
    assert result.signature.status == "untrusted"
    assert any("self-signed" in d for d in result.signature.details)


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


@pytest.mark.parametrize("eku, status", [
    ([ExtendedKeyUsageOID.CODE_SIGNING], "ok"),
    ([ExtendedKeyUsageOID.SERVER_AUTH], "invalid"),  # a TLS-only CA cannot vouch for code
])
def test_issuer_extended_key_usage_chains(tmp_path, root, eku, status):
    root_key, _root = root
    ca_key, signer_key = f.make_key("ec"), f.make_key("ec")
    ca = f.issue("Issuing CA", ca_key, "Test Root CA", root_key, ca=True, eku=eku)
    leaf = f.issue("Vendor", signer_key, "Issuing CA", ca_key, ca=False)
    result = inspect_package(_signed_by(tmp_path, root, signer_key, leaf, ca).path,
                             trust=tmp_path / "trust.pem")
    assert result.signature.status == status, result.signature.details
