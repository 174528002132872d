"""Approval operations of the run service: requesting, voting, expiry, and the check before sending.

Functions take the ``RunService`` so they share its transactions, clock and audit; the rules
themselves (who may vote, the digest) are the pure functions in ``treasury.engine.quorum``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from treasury.clock import as_utc
from treasury.durations import parse_duration
from treasury.engine import machine as eng
from treasury.engine.quorum import (
    GuardedStep,
    approval_digest,
    check_vote,
    mask_unresolved,
    quorum_reached,
    sha256_hex,
)
from treasury.errors import ApprovalRefused, DecisionRefused, DigestMismatch
from treasury.models import StepState
from treasury.observe import metrics
from treasury.people.decisions import audit_payload, check_signature
from treasury.policy import evaluate
from treasury.runs import runstore as store
from treasury.runs import signing
from treasury.runs.context import EventHost


def guarded_by(svc: EventHost, spec: Any, approval_step_id: str) -> list[Any]:
    guards = spec.guards()
    return [s for s in spec.steps if s.op is not None and approval_step_id in guards.get(s.id, [])]


def request_approval(svc: EventHost, conn: Connection, run: Any, step_id: str) -> None:
    spec = svc.spec_of(run)
    step = spec.step(step_id)
    results = svc.step_results(conn, run.id)
    guarded = [
        GuardedStep(s.id, s.op, s.key, svc.bind_params(run, s, results), svc.key_binding(s.key))
        for s in guarded_by(svc, spec, step_id)
    ]
    digest = approval_digest(
        approval_step=step_id, workflow_digest=sha256_hex(run.workflow_snapshot),
        inputs=run.inputs, guarded=guarded,
    )
    expires_at = svc.now() + parse_duration(step.approval.expires_in)
    eligible = sorted(svc.ctx.approvers.eligible(step.approval.approvers, exclude=run.requested_by))
    verdicts: dict[str, Any] = {}
    if svc.ctx.policy is not None:
        for g in guarded:
            full = svc.resolve_params(run, spec.step(g.step_id), results)
            if full is not None:
                vs = evaluate(conn, svc.ctx.policy, op=g.operation, params=full, at=svc.now(),
                              account=svc.account_of(g.key_profile))
                verdicts[g.step_id] = [v.to_dict() for v in vs]
    material = {
        "guarded": {g.step_id: g.as_dict() for g in guarded},
        "quorum": step.approval.quorum,
        "eligible": eligible,
        "policy": verdicts,
    }
    store.update_step(conn, run.id, step_id, svc.now(), params=material, digest=digest,
                      expires_at=expires_at)
    svc.audit(conn, "approval.requested", "system", run_id=run.id, step_id=step_id, payload={
        "digest": digest, "quorum": step.approval.quorum, "eligible": eligible,
        "expires_at": expires_at, "guarded": material["guarded"], "policy": verdicts,
    })


def current_digest(svc: EventHost, run: Any, step_row: Any) -> str:
    material = step_row.params or {}
    guarded = [GuardedStep(k, v["op"], v["key"], v["params"], v.get("account"))
               for k, v in material.get("guarded", {}).items()]
    return approval_digest(approval_step=step_row.step_id,
                           workflow_digest=sha256_hex(run.workflow_snapshot),
                           inputs=run.inputs, guarded=guarded)


def refuse(svc: EventHost, run_id: str, step_id: str | None, user: str, action: str, reason: str) -> None:
    with svc.engine.begin() as conn:
        svc.audit(conn, "approval.refused", user, run_id=run_id, step_id=step_id,
                   payload={"action": action, "reason": reason})


def vote(svc: EventHost, run_id: str, signed: Any, decision: str) -> str:
    """Record a signed ``approve`` or ``reject`` after verifying it at the door.

    The person is whoever signed: the signature must verify against their registered key,
    they must hold the approver role, the document must name this run, the step waiting now
    and its current digests, be fresh, and carry an unused nonce. Expiry is checked again
    inside the locked transaction.

    Raises:
        DecisionRefused: the door refuses the document (audited ``decision.refused``).
        ApprovalRefused: the rules refuse the vote (four eyes, eligibility, one vote each; audited).
    """
    svc.refresh_people()
    expire_due(svc)
    dispatch: list[tuple[str, str]] = []
    step_id: str | None = None
    user = "unknown"
    expired = False
    decided: str | None = None
    requested_at: datetime | None = None
    try:
        user = str(signed.parsed().get("person"))
        with svc.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            step = store.waiting_step(conn, run)
            step_id = step.step_id
            if step.expires_at is not None and as_utc(step.expires_at) <= svc.now():
                expired = True  # expired between expire_due and the lock: it fails closed here
                svc.audit(conn, "approval.expired", "system", run_id=run_id, step_id=step_id,
                          payload={"expires_at": step.expires_at})
                svc.apply_event(conn, run, eng.ApprovalDecided(step_id, "expired"), actor="system",
                                error=f"approval {step_id!r} expired")
        if expired:
            raise ApprovalRefused(f"approval {step_id!r} of run {run_id} expired before this vote arrived")
        with svc.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            step = store.waiting_step(conn, run)
            step_id = step.step_id
            if step.expires_at is not None and as_utc(step.expires_at) <= svc.now():
                raise ApprovalRefused(f"approval {step_id!r} of run {run_id} expired before this vote arrived")
            spec = svc.spec_of(run)
            approval = spec.step(step.step_id).approval
            digest = current_digest(svc, run, step)
            if digest != step.digest:
                raise ApprovalRefused(
                    f"the parameters waiting for approval changed after approval was requested "
                    f"(digest {step.digest[:16]}… is now {digest[:16]}…); cancel the run and start again"
                )
            # who signed (authentication) first, then the rules of the vote, then the rest of the door
            user = check_signature(signed, svc.ctx.approvers, kind=decision, check_role=False,
                                   conn=conn).person
            requester = signing.requester_of(conn, svc, run)
            eligible = svc.ctx.approvers.eligible(approval.approvers, exclude=None)
            votes = store.votes_for(conn, run_id, step.step_id)
            check_vote(user=user, requester=requester, eligible=eligible,
                       known_users=set(svc.ctx.approvers.users), votes=votes)
            verified = signing.accept(svc, conn, signed, kind=decision, expect=signing.vote_expect(run, step))
            comment = verified.doc.get("comment" if decision == "approve" else "reason")
            store.insert_vote(conn, run_id=run_id, step_id=step.step_id, approver=user, decision=decision,
                              comment=comment, digest=digest, at=svc.now())
            kind = "approval.granted" if decision == "approve" else "approval.rejected"
            svc.audit(conn, kind, user, run_id=run_id, step_id=step.step_id,
                       payload={"digest": digest, "comment": comment, **audit_payload(verified)})
            votes = store.votes_for(conn, run_id, step.step_id)
            if decision == "reject":
                dispatch = svc.apply_event(conn, run, eng.ApprovalDecided(step.step_id, "rejected"), actor=user,
                                       error=f"rejected by {user}: {comment}")
                decided = "rejected"
            elif quorum_reached(votes, quorum=approval.quorum, digest=digest, requester=requester):
                dispatch = svc.apply_event(conn, run, eng.ApprovalDecided(step.step_id, "granted"), actor=user)
                decided = "granted"
            requested_at = step.started_at
    except DecisionRefused as exc:
        signing.refuse(svc, signed, str(exc), kind=decision, run_id=run_id, step_id=step_id)
        raise
    except ApprovalRefused as exc:
        refuse(svc, run_id, step_id, user, decision, str(exc))
        raise
    if decided is not None:
        _waited(decided, requested_at, svc.now())
    svc.carry_out(dispatch)
    svc.finish_entry()
    return svc.state_of(run_id)


def check_approvals(
    svc: EventHost, conn: Connection, run: Any, spec: Any, step: Any, params: Mapping[str, Any]
) -> dict[str, str]:
    """Recompute every guarding approval's digest from what is about to be sent.

    Returns each guarding approval step's recomputed digest (the signatures are checked
    against these by ``treasury.runs.evidence``).

    Raises:
        DigestMismatch: anything differs from what the approvers approved.
    """
    out: dict[str, str] = {}
    for approval_id in spec.guards().get(step.id, []):
        arow = store.get_step(conn, run.id, approval_id)
        material = arow.params or {}
        bound = material.get("guarded", {}).get(step.id)
        approved = {v.digest for v in store.votes_for(conn, run.id, approval_id) if v.decision == "approve"}
        if arow.state != StepState.SUCCEEDED.value or bound is None or len(approved) != 1:
            raise DigestMismatch(step.id, arow.digest or "", "no valid approval on record")
        sent: dict[str, Any] = {"op": step.op, "key": step.key, "params": mask_unresolved(params, bound["params"])}
        if "account" in bound:
            sent["account"] = svc.key_binding(step.key)  # the key that will actually sign the request
        guarded = []
        for sid, entry in material["guarded"].items():
            e = sent if sid == step.id else entry
            guarded.append(GuardedStep(sid, e["op"], e["key"], e["params"], e.get("account")))
        actual = approval_digest(approval_step=approval_id, workflow_digest=sha256_hex(run.workflow_snapshot),
                                 inputs=run.inputs, guarded=guarded)
        (approved_digest,) = approved
        votes = store.votes_for(conn, run.id, approval_id)
        if actual != approved_digest or not quorum_reached(
            votes, quorum=spec.step(approval_id).approval.quorum, digest=actual, requester=run.requested_by
        ):
            raise DigestMismatch(step.id, approved_digest, actual)
        out[approval_id] = actual
    return out


def expire_due(svc: EventHost) -> list[tuple[str, str]]:
    """Expire approvals whose time has passed (fails closed: the run becomes EXPIRED)."""
    with svc.engine.connect() as conn:
        due = store.due_approvals(conn, svc.now())
    for run_id, step_id in due:
        with svc.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            row = store.get_step(conn, run_id, step_id)
            if row.state != StepState.AWAITING_APPROVAL.value:
                continue
            svc.audit(conn, "approval.expired", "system", run_id=run_id, step_id=step_id,
                       payload={"expires_at": row.expires_at})
            svc.apply_event(conn, run, eng.ApprovalDecided(step_id, "expired"), actor="system",
                        error=f"approval {step_id!r} expired")
        _waited("expired", row.started_at, svc.now())
    return due


def _waited(decision: str, requested_at: datetime | None, now: datetime) -> None:
    if requested_at is not None:
        metrics.approval_decided(decision, (now - as_utc(requested_at)).total_seconds())
