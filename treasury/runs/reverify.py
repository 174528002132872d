"""Re-verify every stored decision, later, against the registry in force when it was made.

``treasury audit verify`` calls ``verify_decisions``: each row of ``decisions`` must verify
against the registry its digest names (as recorded in a ``people.changed`` audit event), and
each approval row must be backed by a verified signed decision of the same person, kind, run,
step and digest. An approval row inserted or edited in the database is named.
``decisions_evidence`` is what an evidence bundle carries so that an auditor can check the
signatures offline: ``ssh-keygen -Y verify`` for SSHSIG, any WebAuthn verifier for a passkey.

A passkey decision is re-verified with the public key, person, relying party and time that
the credential's ``credential.enrolled`` audit event recorded, not with the ``passkeys`` row
(which a database owner could rewrite). Its sign count cannot be re-checked: that is judged
once, at the door.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from treasury.audit import query_events
from treasury.audit.tables import audit_events
from treasury.errors import DecisionRefused
from treasury.people.credentials import (
    CREDENTIAL_ENROLLED,
    Passkey,
    audited_passkeys,
    parse_envelope,
    passkey_by_id,
    public_key_pem,
)
from treasury.people.decisions import (
    PEOPLE_CHANGED,
    SignedDecision,
    check_signature,
    digest_of,
    registries_in_history,
)
from treasury.people.registry import People
from treasury.people.tables import decisions
from treasury.runs.evidence import schedule_problem
from treasury.runs.result_digests import audited_digests, changed_text, result_digest
from treasury.store.tables import approvals, runs, steps


@dataclass
class DecisionsReport:
    """How many decisions and approval rows verified, and every problem, naming its row."""
    decisions: int = 0
    approval_rows: int = 0
    runs: int = 0
    legacy_runs: int = 0  # made before the first people.changed: before signed decisions existed
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "decisions": self.decisions, "approval_rows": self.approval_rows,
                "runs": self.runs, "legacy_runs": self.legacy_runs, "problems": list(self.problems)}


def _registries(engine: Engine) -> dict[str, People]:

    return registries_in_history(query_events(engine, type=PEOPLE_CHANGED))


def _enrolled(engine: Engine) -> dict[str, Passkey]:

    return audited_passkeys(query_events(engine, type=CREDENTIAL_ENROLLED))


def _passkey_problem(conn: Connection, credential_id: str, audited: dict[str, Passkey]) -> str | None:
    """What differs between a credential's ``passkeys`` row and its audited enrolment."""
    want = audited.get(credential_id)
    if want is None:
        return f"credential {credential_id} has no {CREDENTIAL_ENROLLED} event in the audit history"
    row = passkey_by_id(conn, credential_id)
    if row is None:
        return None  # removed later: the audited key still verifies what it signed
    if (row.person, row.public_key, row.rp_id, row.origin) != (want.person, want.public_key, want.rp_id,
                                                              want.origin):
        return (f"the stored passkey {credential_id} (person, public key or relying party) is not the one "
                f"audited when it was enrolled")
    return None


def _legacy_runs(engine: Engine) -> set[str] | None:
    """Runs requested before signed decisions existed (None: every run, none were ever made).

    Judged by the audit history, not by ``runs.created_at`` (which a database owner can backdate):
    a legacy run's ``run.requested`` event comes before the first ``people.changed``.
    """
    with engine.connect() as conn:
        began = conn.execute(select(func.min(audit_events.c.seq))
                             .where(audit_events.c.type == PEOPLE_CHANGED)).scalar()
        if began is None:
            return None
        q = select(audit_events.c.run_id).where(audit_events.c.type == "run.requested",
                                                audit_events.c.run_id.is_not(None), audit_events.c.seq < began)
        return {str(r) for r in conn.execute(q).scalars()}


def verify_decisions(engine: Engine, run_id: str | None = None) -> DecisionsReport:
    """Re-verify stored decisions and approval rows (of one run, or all)."""
    registries = _registries(engine)
    enrolled = _enrolled(engine)
    legacy = _legacy_runs(engine)
    report = DecisionsReport()
    verified: dict[tuple[str, str, str, str], set[str]] = {}  # (run, step, person, kind) -> digests
    requests: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        q = select(decisions).order_by(decisions.c.created_at, decisions.c.nonce)
        if run_id is not None:
            q = q.where(decisions.c.run_id == run_id)
        for row in conn.execute(q):
            where = f"decision {row.nonce} ({row.kind} by {row.person}, run {row.run_id})"
            people = registries.get(row.registry_digest)
            if people is None:
                report.problems.append(f"{where}: registry {row.registry_digest} is not in the audit history")
                continue
            decision = SignedDecision(row.document, row.signature)
            if decision.is_passkey and (why := _passkey_problem(conn, str(row.key_fp), enrolled)) is not None:
                report.problems.append(f"{where}: {why}")
                continue
            try:
                v = check_signature(decision, people, passkeys=enrolled.get)
            except DecisionRefused as exc:
                report.problems.append(f"{where}: {exc}")
                continue
            d = v.doc
            if (d["kind"], v.person, d.get("run"), d.get("step"), d["nonce"]) != (
                    row.kind, row.person, row.run_id, row.step_id, row.nonce):
                report.problems.append(f"{where}: the row does not match its signed document")
                continue
            report.decisions += 1
            key = (str(row.run_id), str(row.step_id), v.person, str(row.kind))
            verified.setdefault(key, set()).add(str(d.get("params_digest")))
            if row.kind == "request":
                requests.setdefault(str(row.run_id), []).append(d)
        q3 = select(runs.c.id, runs.c.workflow_snapshot, runs.c.inputs, runs.c.schedule,
                    runs.c.due_at)
        if run_id is not None:
            q3 = q3.where(runs.c.id == run_id)
        for run in conn.execute(q3.order_by(runs.c.created_at, runs.c.id)):
            if legacy is None or run.id in legacy:
                report.legacy_runs += 1
                continue
            report.runs += 1
            signed = requests.get(run.id, [])
            if not signed:
                if run.schedule is None:
                    report.problems.append(f"run {run.id}: no signed request is on record for it")
                elif (why := schedule_problem(run.workflow_snapshot, run)) is not None:
                    report.problems.append(f"run {run.id} (schedule {run.schedule}): {why}")
                continue
            if not any(d.get("workflow_digest") == digest_of(run.workflow_snapshot)
                       and d.get("params_digest") == digest_of(run.inputs) for d in signed):
                report.problems.append(f"run {run.id}: its stored workflow snapshot or inputs are not what its "
                                       "requester signed")
        q2 = select(approvals).order_by(approvals.c.id)
        if run_id is not None:
            q2 = q2.where(approvals.c.run_id == run_id)
        for row in conn.execute(q2):
            if legacy is None or row.run_id in legacy:
                continue
            digests = verified.get((row.run_id, row.step_id, row.approver, row.decision), set())
            if f"sha256:{row.digest}" not in digests:
                report.problems.append(
                    f"approvals row {row.id} (run {row.run_id}, step {row.step_id}, {row.decision} by "
                    f"{row.approver}): no verified signed decision backs it")
            else:
                report.approval_rows += 1
        report.problems.extend(_changed_results(conn, run_id))
    return report


def _changed_results(conn: Connection, run_id: str | None) -> list[str]:
    """Succeeded steps whose stored result is not the one audited at their success, by run."""
    q = select(steps.c.run_id, steps.c.step_id, steps.c.result).where(steps.c.state == "SUCCEEDED")
    if run_id is not None:
        q = q.where(steps.c.run_id == run_id)
    audited = audited_digests(conn, run_id)
    changed: dict[str, list[str]] = {}
    for row in conn.execute(q.order_by(steps.c.run_id, steps.c.idx)):
        want = audited.get((str(row.run_id), str(row.step_id)))
        if want is not None and result_digest(row.result) != want:
            changed.setdefault(str(row.run_id), []).append(str(row.step_id))
    return [f"run {rid}: {changed_text(ids)}" for rid, ids in changed.items()]


def decisions_evidence(engine: Engine, run_id: str) -> dict[str, Any]:
    """The run's signed decisions with the public keys that verify them (for an evidence bundle)."""
    registries = _registries(engine)
    enrolled = _enrolled(engine)
    documents = []
    signers: dict[str, str] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(decisions).where(decisions.c.run_id == run_id)
                                .order_by(decisions.c.created_at, decisions.c.nonce)):
            if SignedDecision(row.document, row.signature).is_passkey:
                documents.append(_passkey_evidence(row, enrolled.get(str(row.key_fp))))
                continue
            people = registries.get(row.registry_digest)
            person = people.persons.get(row.person) if people else None
            key = next((k for k in (person.keys if person else ()) if k.fingerprint == row.key_fp), None)
            if key is not None:
                signers[f"{row.person} {key.type} {key.openssh().split()[1]}"] = row.person
            documents.append({"kind": row.kind, "person": row.person, "step": row.step_id,
                              "document": row.document, "sshsig": row.signature, "key": row.key_fp,
                              "public_key": key.openssh() if key else None,
                              "registry_digest": row.registry_digest})
    return {
        "namespace": "treasury",
        "allowed_signers": "".join(f"{line}\n" for line in sorted(signers)),
        "documents": documents,
        "how_to_verify": (
            "for each document: write 'document' byte for byte (no newline) to d.json and 'sshsig' to "
            "d.json.sig, write 'allowed_signers' to allowed_signers, then run: ssh-keygen -Y verify "
            "-f allowed_signers -I PERSON -n treasury -s d.json.sig < d.json"),
        "how_to_verify_passkeys": (
            "for each document with 'webauthn' (a passkey assertion; binary fields base64url): "
            "SHA-256 of 'document' (its exact bytes) must equal the challenge in client_data_json, whose type "
            "is webauthn.get and origin is 'origin'; the first 32 bytes of authenticator_data must be SHA-256 "
            "of 'rp_id' and its flags byte must have bit 0 (user present) set; then 'signature' (ECDSA DER, "
            "or the key's algorithm) must verify over authenticator_data || SHA-256(client_data_json) with "
            "'public_key_pem', the key audited when credential 'credential_id' was enrolled "
            "(credential.enrolled event, no later than the document's issued_at)"),
    }


def _passkey_evidence(row: Any, passkey: Passkey | None) -> dict[str, Any]:

    try:
        assertion: dict[str, Any] | None = parse_envelope(row.signature)
    except DecisionRefused:
        assertion = None
    return {"kind": row.kind, "person": row.person, "step": row.step_id, "document": row.document,
            "webauthn": assertion, "credential_id": row.key_fp, "key": row.key_fp,
            "public_key": None, "public_key_pem": None, "rp_id": None, "origin": None,
            "enrolled_at": None, "registry_digest": row.registry_digest} | ({} if passkey is None else {
            "public_key": _b64(passkey.public_key), "public_key_pem": public_key_pem(passkey.public_key),
            "rp_id": passkey.rp_id, "origin": passkey.origin, "enrolled_at": passkey.created_at.isoformat()})


def _b64(data: bytes) -> str:
    from webauthn.helpers import bytes_to_base64url

    return bytes_to_base64url(data)

