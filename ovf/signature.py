"""OVF package signatures (.cert, DSP0243 5.4): a signed manifest digest plus PEM certificates.

Format: ``SHA256(package.mf)= <hex signature>`` followed by the signer's PEM certificate and
optionally its chain. The signature is over the manifest *file* (RSA PKCS#1 v1.5 or ECDSA,
as ``openssl dgst -sign`` writes it).

The signer's chain is validated by cryptography's X.509 path validation
(``cryptography.x509.verification``, RFC 5280 with the WebPKI profile: CA basicConstraints
and keyCertSign on every issuer, pathLenConstraint, validity of every certificate, allowed
algorithms), with the extension policies of code signing instead of TLS: on the signer, a
keyUsage must allow digitalSignature and an extendedKeyUsage must allow codeSigning; an
issuer's extendedKeyUsage, when present, must allow codeSigning too; subjectAltName and key
identifiers are not required (real signers rarely carry them). A signer that is itself in
the trust store is trusted as it is.

Status: ``ok`` the chain validates; ``not-yet-valid`` / ``expired`` a certificate of the
chain is outside its dates; ``invalid`` the signature does not verify, or the chain reaches
a trusted certificate but breaks a rule of path validation (a CA:FALSE issuer, pathLen...);
``untrusted`` the chain leads to no certificate of the trust store; ``absent`` no .cert.
What each status means for the package is decided by ``ovf.policy``.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ediv.errors import InputError

from .package import Package

HASHES = {"SHA1": hashes.SHA1, "SHA224": hashes.SHA224, "SHA256": hashes.SHA256,
          "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
MIN_RSA_BITS = 2048
MAX_CHAIN = 8
MAX_CERT_BYTES = 1 << 20
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
_SIG = re.compile(r"([A-Za-z0-9-]+)\s*\(([^)]+)\)\s*=\s*([0-9A-Fa-f\s]+?)\s*(?=-----BEGIN|\Z)",
                  re.S)


@dataclass
class CertFile:
    algorithm: str
    signed_name: str
    signature: bytes
    certificates: list[x509.Certificate]


@dataclass
class SignatureReport:
    status: str  # ok | invalid | untrusted | expired | not-yet-valid | absent
    name: str | None = None
    signer: str | None = None
    issuer: str | None = None
    not_after: str | None = None
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": self.status, "name": self.name, "signer": self.signer,
                "issuer": self.issuer, "not_after": self.not_after, "details": self.details}


def parse_cert_file(data: bytes) -> CertFile:
    """Raise ValueError with a readable reason when ``data`` is not a .cert file."""
    text = data.removeprefix(b"\xef\xbb\xbf").decode("ascii", errors="replace")
    m = _SIG.search(text)
    if m is None:
        raise ValueError("no 'ALG(file.mf)= signature' line")
    alg = m.group(1).upper().replace("-", "")
    if alg not in HASHES:
        raise ValueError(f"unsupported signature digest {m.group(1)!r}")
    signature = bytes.fromhex(re.sub(r"\s+", "", m.group(3)))
    pem_start = text.find("-----BEGIN CERTIFICATE-----")
    if pem_start < 0:
        raise ValueError("no PEM certificate")
    certs = x509.load_pem_x509_certificates(text[pem_start:].encode("ascii"))
    return CertFile(alg, m.group(2).strip(), signature, certs)


def load_trust_store(path: str | Path | None) -> list[x509.Certificate]:
    """CA certificates from a PEM bundle or a folder of PEM files; the system bundle when
    ``path`` is None (empty if the machine has none)."""
    if path is None:
        for bundle in SYSTEM_BUNDLES:
            if Path(bundle).is_file():
                return _load_pem_file(Path(bundle))
        return []
    p = Path(path)
    if p.is_dir():
        certs: list[x509.Certificate] = []
        for f in sorted(p.iterdir()):
            if f.is_file() and f.suffix.lower() in (".pem", ".crt", ".cer"):
                certs.extend(_load_pem_file(f))
        return certs
    if not p.is_file():
        raise InputError(f"trust store {p} not found", str(p))
    certs = _load_pem_file(p)
    if not certs:
        raise InputError("no PEM certificate in the trust store", str(p))
    return certs


def _load_pem_file(path: Path) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            # System bundles hold a few legacy CAs that newer cryptography frowns upon.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_pem_x509_certificates(path.read_bytes())
    except (ValueError, OSError):
        return []


def find_cert(pkg: Package) -> str | None:
    stem = posixpath.splitext(pkg.descriptor_name)[0]
    exact = pkg.find(stem + ".cert")
    if exact:
        return exact
    others = [n for n in pkg.names() if n.lower().endswith(".cert")
              and posixpath.dirname(n) == pkg.base_dir]
    if pkg.kind == "directory":
        return None  # in a shared folder, another descriptor's .cert is not ours
    return others[0] if len(others) == 1 else None


def verify_signature(pkg: Package, manifest_names: list[str],
                     trust: str | Path | None = None, now: dt.datetime | None = None
                     ) -> SignatureReport:
    """Check the package's .cert, if any. ``trust``: PEM bundle or folder of trusted CAs
    (the system bundle when None); read only when the package is signed."""
    name = find_cert(pkg)
    report = SignatureReport(status="absent", name=name)
    if name is None:
        return report
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert_file = parse_cert_file(pkg.read(name, MAX_CERT_BYTES))
    except (ValueError, InputError) as exc:
        return _invalid(report, f"{name}: unreadable certificate file: {exc}")
    leaf = cert_file.certificates[0]
    report.signer = leaf.subject.rfc4514_string()
    report.issuer = leaf.issuer.rfc4514_string()
    report.not_after = leaf.not_valid_after_utc.isoformat()

    manifest = _signed_manifest(pkg, cert_file, manifest_names, report)
    if manifest is None:
        return _invalid(report, f"{name}: the signed manifest {cert_file.signed_name!r} "
                                "is not in the package")
    _note_weakness(cert_file, report)
    try:
        _verify(leaf.public_key(), cert_file.signature, pkg.read(manifest, 16 * 2**20),
                HASHES[cert_file.algorithm]())
    except InvalidSignature:
        return _invalid(report, f"{name}: the signature over {manifest} does not verify "
                                f"with the key of {report.signer}")
    except (UnsupportedAlgorithm, TypeError, ValueError) as exc:
        return _invalid(report, f"{name}: cannot verify the signature: {exc}")
    report.details.append(f"signature over {manifest} verifies ({cert_file.algorithm}, "
                          f"signer {report.signer})")

    status, details = chain_status(cert_file.certificates, load_trust_store(trust), now)
    report.status = status
    report.details.extend(details)
    return report


def chain_status(embedded: list[x509.Certificate], trust: list[x509.Certificate],
                 now: dt.datetime) -> tuple[str, list[str]]:
    """Status of the signer ``embedded[0]`` (with the other certificates of the .cert as
    intermediates) against ``trust``, and the details that say why."""
    walked, reached, reason = _build_chain(embedded, trust)
    error = None
    try:
        verified = _verifier(trust, now).verify(embedded[0], embedded[1:])
        walked = list(verified.chain)
    except (VerificationError, ValueError, TypeError) as exc:
        error = _short(exc)
    not_yet = [c for c in walked if now < c.not_valid_before_utc]
    expired = [c for c in walked if now > c.not_valid_after_utc]
    if not_yet or expired:
        return ("not-yet-valid" if not_yet else "expired",
                [f"certificate {c.subject.rfc4514_string()} is valid from "
                 f"{c.not_valid_before_utc:%Y-%m-%d} to {c.not_valid_after_utc:%Y-%m-%d}; "
                 f"now is {now:%Y-%m-%d}" for c in not_yet or expired])
    if error is None:
        return "ok", ["chain: " + " <- ".join(c.subject.rfc4514_string() for c in walked)]
    if reached:
        return "invalid", [f"the chain to the trusted {walked[-1].subject.rfc4514_string()} "
                           f"fails path validation: {error}"]
    return "untrusted", [reason]


def _verifier(trust: list[x509.Certificate], now: dt.datetime):
    if not trust:
        raise ValueError("the trust store is empty")
    return (PolicyBuilder().store(Store(trust)).time(now).max_chain_depth(MAX_CHAIN)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_SIGNER_POLICY)
            .build_client_verifier())


def _signer_eku(_policy, _cert, ext: x509.ExtendedKeyUsage | None) -> None:
    if ext is not None and not {ExtendedKeyUsageOID.CODE_SIGNING,
                                ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(ext):
        raise ValueError("extendedKeyUsage does not allow codeSigning")


def _signer_key_usage(_policy, _cert, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.digital_signature:
        raise ValueError("keyUsage of the signer does not allow digitalSignature")


_SIGNER_POLICY = (ExtensionPolicy.webpki_defaults_ee()
                  .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _signer_eku)
                  .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _signer_key_usage)
                  .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
                  .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
                  # a self-signed signer made by `openssl req -x509` says CA:TRUE
                  .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None))
_CA_POLICY = (ExtensionPolicy.webpki_defaults_ca()
              .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _signer_eku)
              .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
              .may_be_present(x509.SubjectKeyIdentifier, Criticality.AGNOSTIC, None))


def _short(exc: Exception) -> str:
    """cryptography's message without the certificate repr it appends."""
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered processing <Certificate")[0]


def _signed_manifest(pkg: Package, cert_file: CertFile, manifest_names: list[str],
                     report: SignatureReport) -> str | None:
    target = pkg.resolve(cert_file.signed_name)
    found = pkg.find(target) if target else None
    if found is not None and found != target:
        report.warnings.append(f"certificate signs {cert_file.signed_name!r}; matched "
                               f"{found!r} ignoring case")
    if found is None and len(manifest_names) == 1:
        report.warnings.append(f"certificate names {cert_file.signed_name!r}; the package's "
                               f"manifest is {manifest_names[0]!r}")
        found = manifest_names[0]
    return found


def _verify(key, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, dsa.DSAPublicKey):
        key.verify(signature, data, algorithm)
    else:
        raise TypeError(f"unsupported signer key type {type(key).__name__}")


def _note_weakness(cert_file: CertFile, report: SignatureReport) -> None:
    weak = []
    if cert_file.algorithm == "SHA1":
        weak.append("the manifest signature uses SHA-1")
    for cert in cert_file.certificates:
        key = cert.public_key()
        who = cert.subject.rfc4514_string()
        if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey) and key.key_size < MIN_RSA_BITS:
            weak.append(f"certificate {who} has a weak {key.key_size}-bit key")
        h = cert.signature_hash_algorithm
        if h is not None and h.name in ("sha1", "md5"):
            weak.append(f"certificate {who} is signed with {h.name.upper()}")
    for w in weak:
        report.details.append(f"weak: {w}")
        report.warnings.append(f"signature: {w}")


def _invalid(report: SignatureReport, message: str) -> SignatureReport:
    report.status = "invalid"
    report.details.append(message)
    return report


def _build_chain(embedded: list[x509.Certificate], trust: list[x509.Certificate]
                 ) -> tuple[list[x509.Certificate], bool, str]:
    """Walk issuer links from the signer (names and signatures only, for the report: path
    validation is ``chain_status``'s verifier); True when a certificate of ``trust`` is
    reached."""
    trusted_fps = {c.fingerprint(hashes.SHA256()) for c in trust}
    pool = embedded[1:] + trust
    chain = [embedded[0]]
    current = embedded[0]
    for _ in range(MAX_CHAIN):
        if current.fingerprint(hashes.SHA256()) in trusted_fps:
            return chain, True, ""
        issuer = _find_issuer(current, pool)
        if issuer is None:
            if current.issuer == current.subject:
                return chain, False, (f"signer chain ends at self-signed "
                                      f"{current.subject.rfc4514_string()}, which is not in "
                                      "the trust store")
            return chain, False, (f"issuer {current.issuer.rfc4514_string()} of "
                                  f"{current.subject.rfc4514_string()} is not in the package "
                                  "nor in the trust store")
        if issuer.fingerprint(hashes.SHA256()) == current.fingerprint(hashes.SHA256()):
            return chain, False, (f"signer chain ends at self-signed "
                                  f"{current.subject.rfc4514_string()}, which is not in the "
                                  "trust store")
        chain.append(issuer)
        current = issuer
    return chain, False, "certificate chain too long"


def _find_issuer(cert: x509.Certificate, pool: list[x509.Certificate]
                 ) -> x509.Certificate | None:
    for candidate in [cert, *pool]:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None
