"""Signed decisions in the run service: the documents people sign, and the door they pass.

Every decision (request, approve, reject, cancel, resolve) is a document the person signs
(``treasury.people.decisions``). The service builds the document from the current state, a
signer signs it (the person's key file or ssh-agent; in the simulator a demo key), and
``accept`` verifies it at the door: signature, role, digests equal to the current ones,
age and an unused nonce. A refusal is audited as ``decision.refused`` and nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from treasury.canonical import inputs_json
from treasury.errors import ApprovalRefused, DecisionRefused
from treasury.language.inputs import coerce_inputs
from treasury.people import decisions as dec
from treasury.people.decisions import SignedDecision, Verified, digest_of
from treasury.runs import runstore as store
from treasury.runs.context import RunHost


def people(svc: RunHost) -> Any:
    return svc.ctx.approvers


def max_age(svc: RunHost) -> timedelta:
    return timedelta(seconds=svc.ctx.decision_max_age)


def sign(svc: RunHost, person: str, doc: Mapping[str, Any], signer: Any | None) -> SignedDecision:
    """Sign ``doc`` as ``person``: with ``signer``, or in the simulator with the person's demo key.

    Raises:
        DecisionRefused: no identity to sign with, or an identity that is someone else's key.
    """
    svc.refresh_people()
    if person not in people(svc).persons:
        raise ApprovalRefused(f"{person!r} is not a known approver (config/people.yaml)"
                              if doc.get("kind") in ("approve", "reject")
                              else f"{person!r} is not a known person in config/people.yaml")
    if signer is None:
        keyring = svc.ctx.keyring
        signer = keyring.get(person) if keyring is not None else None
        if signer is None:
            raise DecisionRefused(
                f"no identity to sign as {person!r}: set TREASURY_IDENTITY (a key file or agent:COMMENT) "
                "or pass --identity")
    else:
        owner = people(svc).owner_of(signer.public)
        if owner != person:
            held = f"is {owner!r}'s" if owner else "is registered to nobody"
            raise DecisionRefused(f"the identity key {signer.public.fingerprint} {held}, not {person!r}'s")
    return dec.sign_document(doc, signer)


def refuse(svc: RunHost, signed: SignedDecision | None, reason: str, *, kind: str,
           run_id: str | None = None, step_id: str | None = None, person: str | None = None) -> None:
    """Audit a refused decision (``decision.refused``) in its own transaction."""
    payload: dict[str, Any] = {"kind": kind, "reason": reason}
    if signed is not None:
        payload["document_id"] = signed.doc_id
        try:
            doc = signed.parsed()
            person = person or str(doc.get("person"))
        except DecisionRefused:
            pass
    with svc.engine.begin() as conn:
        svc.audit(conn, dec.DECISION_REFUSED, person or "unknown", run_id=run_id, step_id=step_id, payload=payload)


def accept(svc: RunHost, conn: Connection, signed: SignedDecision, *, kind: str,
           expect: Mapping[str, Any], role: str | None = None) -> Verified:
    """Verify at the door and record the decision (nonce spent) inside ``conn``'s transaction.

    Raises:
        DecisionRefused: see ``treasury.people.decisions.verify_at_door``.
    """
    verified = dec.verify_at_door(signed, people(svc), kind=kind, now=svc.now(), max_age=max_age(svc),
                                  expect=expect, conn=conn, role=role)
    registry = dec.ensure_registry_recorded(conn, people(svc), svc.audit_fn, svc.now())
    dec.record(conn, verified, registry_digest=registry, at=svc.now())
    return verified


# ---------------------------------------------------------------- documents


def request_document(svc: RunHost, loaded: Any, raw_inputs: Mapping[str, Any], person: str,
                     run_id: str) -> dict[str, Any]:
    """The ``request`` a requester signs: the workflow's bytes and the inputs, by digest."""
    inputs = inputs_json(coerce_inputs(loaded.spec, raw_inputs))
    return dec.new_document(
        "request", person, at=svc.now(), run=run_id, workflow=loaded.spec.name,
        workflow_digest=digest_of(loaded.text), params_digest=digest_of(inputs),
        policy_digest=getattr(svc.ctx.policy, "digest", None) or "none")


def request_expect(svc: RunHost, loaded: Any, inputs: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {"run": run_id, "workflow_digest": digest_of(loaded.text), "params_digest": digest_of(dict(inputs)),
            "policy_digest": getattr(svc.ctx.policy, "digest", None) or "none"}


def vote_expect(run: Any, step: Any) -> dict[str, Any]:
    """What an approve/reject document must say about the step waiting now."""
    material = step.params or {}
    return {"run": run.id, "step": step.step_id, "workflow_digest": digest_of(run.workflow_snapshot),
            "params_digest": f"sha256:{step.digest}", "policy_digest": digest_of(material.get("policy", {}))}


def vote_document(svc: RunHost, run_id: str, person: str, kind: str, text: str | None) -> dict[str, Any]:
    """The ``approve`` or ``reject`` document for the step ``run_id`` is waiting on."""
    with svc.engine.connect() as conn:
        run = store.get_run(conn, run_id)
        step = store.waiting_step(conn, run)
    field = "comment" if kind == "approve" else "reason"
    return dec.new_document(kind, person, at=svc.now(), **vote_expect(run, step), **{field: text})


def run_document(svc: RunHost, kind: str, run_id: str, person: str, step_id: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """A ``cancel`` or ``resolve`` document for a run (and step)."""
    with svc.engine.connect() as conn:
        run = store.get_run(conn, run_id)
    return dec.new_document(kind, person, at=svc.now(), run=run_id, step=step_id,
                            workflow_digest=digest_of(run.workflow_snapshot), **extra)


def requester_of(conn: Connection, svc: RunHost, run: Any) -> str:
    """The requester by signature (the signer of ``request``); the row for system runs."""
    for signed in dec.stored(conn, run.id, kind="request"):
        try:
            v = dec.check_signature(signed, people(svc), kind="request", conn=conn)
        except DecisionRefused:
            continue
        if v.doc.get("run") == run.id:
            return v.person
    return str(run.requested_by)


def standalone(svc: RunHost, kind: str, person: str, signer: Any | None, **fields: Any) -> Verified:
    """Sign (as ``person``) and accept a decision about no run: a schedule, an exchange halt.

    ``fields`` (e.g. ``schedule=NAME``) are written into the document and must be in it.
    The decision is recorded (nonce spent) and audited as ``decision.accepted``.

    Raises:
        DecisionRefused: as at the door (audited ``decision.refused``).
    """
    doc = dec.new_document(kind, person, at=svc.now(), **fields)
    try:
        signed = sign(svc, person, doc, signer)
        with svc.engine.begin() as conn:
            verified = accept(svc, conn, signed, kind=kind, expect=fields)
            svc.audit(conn, "decision.accepted", verified.person, payload={"kind": kind, **fields,
                                                                           **dec.audit_payload(verified)})
    except (DecisionRefused, ApprovalRefused) as exc:
        refuse(svc, None, str(exc), kind=kind, person=person)
        raise
    return verified
