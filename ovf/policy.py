"""The one trust policy that decides whether a verified package may be used.

The same everywhere a package is read: ``ediv ovf inspect|convert|import`` (``--trust``,
``--require-signature``), scenarios with ``<vm appliance>`` (``$EDIV_OVF_TRUST``,
``$EDIV_OVF_REQUIRE_SIGNATURE``) and the WBEM server (``ovf_trust``,
``ovf_require_signature`` in its config, made the process's policy at start-up).

- manifest ``mismatch`` or ``invalid``: refused;
- signature ``invalid``, ``expired``, ``not-yet-valid``: always refused;
- signature ``untrusted`` (it verifies, but the chain leads to no trusted certificate, e.g. a
  self-signed vendor) and ``absent``: a warning, and the package is used, as vSphere and
  ovftool do, unless the policy requires a signature, which refuses them;
- ``ok``: accepted.

The decision goes into ``inspect --json`` as ``"policy"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

REQUIRE_VAR = "EDIV_OVF_REQUIRE_SIGNATURE"
TRUST_VAR = "EDIV_OVF_TRUST"
MANIFEST_REFUSED = frozenset({"mismatch", "invalid"})
SIGNATURE_REFUSED = frozenset({"invalid", "expired", "not-yet-valid"})
SIGNATURE_WARNED = frozenset({"untrusted", "absent"})
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass
class Decision:
    """What the policy made of one package's manifest and signature."""

    require_signature: bool
    refused: bool
    reasons: list[str] = field(default_factory=list)  # why refused (one per failed check)
    warnings: list[str] = field(default_factory=list)  # accepted despite these

    @property
    def decision(self) -> str:
        return "refused" if self.refused else "accepted"

    def to_json(self) -> dict:
        return {"require_signature": self.require_signature, "decision": self.decision,
                "reason": "; ".join(self.reasons) or None}


@dataclass(frozen=True)
class TrustPolicy:
    require_signature: bool = False
    trust: str | None = None  # PEM bundle or folder of trusted CAs; None: the system bundle

    @classmethod
    def from_env(cls) -> TrustPolicy:
        return cls(require_signature=os.environ.get(REQUIRE_VAR, "").strip().lower() in _TRUE,
                   trust=os.environ.get(TRUST_VAR) or None)

    def decide(self, manifest_status: str, manifest_detail: str, signature_status: str,
               signature_detail: str) -> Decision:
        out = Decision(self.require_signature, refused=False)
        if manifest_status in MANIFEST_REFUSED:
            out.reasons.append(f"manifest {manifest_status}: {manifest_detail}")
        if signature_status in SIGNATURE_REFUSED:
            out.reasons.append(f"signature {signature_status}: {signature_detail}")
        elif signature_status in SIGNATURE_WARNED:
            what = ("the package is not signed" if signature_status == "absent"
                    else f"signature untrusted: {signature_detail}")
            if self.require_signature:
                out.reasons.append(f"{what} (a trusted signature is required: "
                                   "--require-signature)")
            else:
                out.warnings.append(f"{what}; the package is used anyway "
                                    "(--require-signature refuses it)")
        out.refused = bool(out.reasons)
        return out


_active: TrustPolicy | None = None


def active() -> TrustPolicy:
    """The policy in force: the one ``use`` set (CLI options, server config), else the
    environment's."""
    return _active if _active is not None else TrustPolicy.from_env()


def use(policy: TrustPolicy | None) -> None:
    """Make ``policy`` the process's policy (None: back to the environment's)."""
    global _active
    _active = policy
