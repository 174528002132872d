"""Approval rules and the digest an approval is bound to (pure; no I/O).

An approval binds to a SHA-256 digest of: the workflow snapshot's digest, the resolved
inputs, and every guarded operation step's key profile, operation and parameters as far as
they are resolvable when approval is requested (a parameter that depends on an earlier
step's result is bound by its template text). Just before sending, the digest is
recomputed from what is about to be sent; any difference refuses the step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from treasury.canonical import canonical_json as _canonical_json
from treasury.errors import ApprovalRefused
from treasury.models import format_amount


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, Decimals normalised (``1.50`` → ``"1.5"``): the same bytes for the same meaning."""
    return _canonical_json(value, amounts=format_amount)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class GuardedStep:
    """What an approver approves for one guarded operation step."""

    step_id: str
    operation: str
    key_profile: str
    params: Mapping[str, Any]  # resolved values, or template text where not yet resolvable
    # which account pays: the profile's API key (by fingerprint) and account id, so that editing
    # keys.yaml after approval cannot change it (None: not bound, an older approval)
    account: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"op": self.operation, "key": self.key_profile, "params": dict(self.params)}
        if self.account is not None:
            out["account"] = dict(self.account)
        return out


def approval_digest(
    *, approval_step: str, workflow_digest: str, inputs: Mapping[str, Any], guarded: Sequence[GuardedStep]
) -> str:
    """The digest an approval binds to."""
    material = {
        "approval_step": approval_step,
        "workflow": workflow_digest,
        "inputs": dict(inputs),
        "guarded": {g.step_id: g.as_dict() for g in guarded},
    }
    return sha256_hex(canonical_json(material))


def params_digest(operation: str, key_profile: str, params: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({"op": operation, "key": key_profile, "params": dict(params)}))


def mask_unresolved(sent: Mapping[str, Any], bound: Mapping[str, Any]) -> dict[str, Any]:
    """``sent`` with every value that was bound by template text replaced by that text.

    This is how the executor recomputes the approved digest from what it is about to send:
    resolved-at-approval values must match exactly; template-bound values are checked by
    their template instead (their value did not exist when approval was requested).
    """
    out: dict[str, Any] = {}
    keys = set(sent) | set(bound)
    for k in keys:
        b = bound.get(k)
        if isinstance(b, str) and "${{" in b:
            out[k] = b
        elif isinstance(b, Mapping) and isinstance(sent.get(k), Mapping):
            out[k] = mask_unresolved(sent[k], b)
        elif isinstance(b, list) and isinstance(sent.get(k), list) and len(b) == len(sent[k]):
            out[k] = [
                mask_unresolved(s, bb) if isinstance(s, Mapping) and isinstance(bb, Mapping)
                else (bb if isinstance(bb, str) and "${{" in bb else s)
                for s, bb in zip(sent[k], b, strict=True)
            ]
        elif k in sent:
            out[k] = sent[k]
    return out


@dataclass(frozen=True)
class Vote:
    approver: str
    decision: str  # "approve" | "reject"
    digest: str


def check_vote(
    *,
    user: str,
    requester: str,
    eligible: Set[str],
    known_users: Set[str],
    votes: Sequence[Vote],
) -> None:
    """Refuse a vote that the rules do not allow.

    Raises:
        ApprovalRefused: unknown user, the requester, a user not eligible for this approval,
            or a second vote by the same person.
    """
    if user not in known_users:
        raise ApprovalRefused(f"{user!r} is not a known approver (config/people.yaml)")
    if user == requester:
        raise ApprovalRefused(f"{user!r} requested this run and cannot approve or reject it (four eyes)")
    if user not in eligible:
        names = ", ".join(sorted(eligible)) or "(nobody)"
        raise ApprovalRefused(f"{user!r} is not an approver for this step; eligible: {names}")
    if any(v.approver == user for v in votes):
        raise ApprovalRefused(f"{user!r} has already voted on this step; one person counts once")


def quorum_reached(votes: Sequence[Vote], *, quorum: int, digest: str, requester: str) -> bool:
    """Distinct approvers (never the requester) who approved exactly ``digest``."""
    approvers = {v.approver for v in votes if v.decision == "approve" and v.digest == digest
                 and v.approver != requester}
    return len(approvers) >= quorum
