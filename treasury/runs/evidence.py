"""Before every send: what is about to be sent must be what signed documents say.

The database alone is not trusted. Just before a step is sent:

- the run's workflow snapshot and inputs must hash to the digests in the ``request`` its
  requester signed (a scheduled run has no human request: its snapshot must be, byte for
  byte, a workflow file in the workflows folder that declares that schedule);
- every approval step guarding the step must have its quorum of distinct, eligible people,
  never the requester, whose ``approve`` signatures verify over this step's digest, and no
  verified ``reject``; a run with a verified ``cancel`` starts no step that has not sent yet
  (a database owner who sets a rejected or cancelled run back to waiting moves nothing).

Signatures are re-verified from the stored documents, never taken from rows' booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from treasury.canonical import inputs_json
from treasury.clock import as_utc
from treasury.errors import DecisionRefused, TreasuryError
from treasury.language.inputs import coerce_inputs
from treasury.language.loader import load_workflow_text
from treasury.language.timing import ScheduleSpec, next_fire
from treasury.people.decisions import check_signature, digest_of, stored
from treasury.people.registry import People
from treasury.store.tables import execution_records


class EvidenceMissing(TreasuryError):
    """What is about to be sent is not backed by verified signed decisions (nothing is sent)."""

def signed_requester(conn: Connection, people: People, run: Any, workflows_dir: Path | None = None) -> str:
    """The person whose verified ``request`` matches this run's snapshot and inputs.

    Raises:
        EvidenceMissing: no such request (and, for a scheduled run, no matching workflow file).
    """
    workflow_digest = digest_of(run.workflow_snapshot)
    inputs_digest = digest_of(run.inputs)
    problems = []
    for signed in stored(conn, run.id, kind="request"):
        try:
            v = check_signature(signed, people, kind="request", conn=conn)
        except DecisionRefused as exc:
            problems.append(str(exc))
            continue
        if v.doc.get("run") != run.id:
            problems.append("the signed request names another run")
        elif v.doc.get("workflow_digest") != workflow_digest:
            problems.append("the stored workflow snapshot is not the workflow the requester signed")
        elif v.doc.get("params_digest") != inputs_digest:
            problems.append("the stored inputs are not the inputs the requester signed")
        else:
            return v.person
    if not problems and run.schedule and workflows_dir is not None and _declared(workflows_dir, run):
        return f"schedule:{run.schedule}"
    if not problems and run.schedule:
        problems.append("no signed request is on record for it, and no workflow file declares its schedule "
                        "with this snapshot and these inputs")
    why = "; ".join(problems) or "no signed request is on record for it"
    raise EvidenceMissing(f"run {run.id} is not backed by its signed request ({why})")


def _declared(workflows_dir: Path, run: Any) -> bool:
    """A workflow file whose bytes are the snapshot, which declares the run's schedule, and whose
    ``schedule.inputs`` are the run's inputs (nobody signed any others)."""
    want = digest_of(run.workflow_snapshot)
    for path in sorted(workflows_dir.glob("*.y*ml")):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if digest_of(text) == want and schedule_problem(text, run) is None:
            return True
    return False


def schedule_problem(snapshot: str, run: Any) -> str | None:
    """Why a scheduled run is not what ``snapshot`` schedules (None when it is).

    The snapshot must declare a schedule named ``run.schedule`` whose ``inputs`` are, once
    coerced as the scheduler coerces them, exactly the run's stored inputs, and whose cron fires
    at the run's ``due_at``.
    """
    try:
        spec = load_workflow_text(snapshot, source=f"run {run.id}").spec
        if spec.schedule is None or spec.name != run.schedule:
            return f"its workflow does not declare the schedule {run.schedule!r}"
        declared = inputs_json(coerce_inputs(spec, dict(spec.schedule.inputs)))
    except TreasuryError as exc:
        return f"its workflow cannot be read ({exc})"
    if digest_of(declared) != digest_of(run.inputs):
        return "its stored inputs are not the inputs its schedule declares"
    return _instant_problem(spec, run)


def _instant_problem(spec: Any, run: Any) -> str | None:
    """A scheduled run's ``due_at`` must be an instant its cron fires (one run per instant)."""
    due = run.due_at
    if due is None:
        return "it has no due time"
    due = as_utc(due)
    block = spec.schedule
    try:
        fires = next_fire(ScheduleSpec(name=spec.name, cron=block.cron, timezone=block.timezone),
                          due - timedelta(microseconds=1))
    except (TreasuryError, ValueError) as exc:
        return f"its schedule cannot be read ({exc})"
    if fires != due:
        return f"its due time {due.isoformat()} is not an instant its schedule fires ({block.cron!r})"
    return None


def _signed(conn: Connection, people: People, run_id: str, kind: str, step_id: str | None = None) -> str | None:
    """Who signed a verified ``kind`` decision on this run (and step), if anyone did.

    The role is not asked for: a requester may cancel their own run, and any verified "stop"
    from a registered person is one to obey.
    """
    for signed in stored(conn, run_id, kind=kind, step_id=step_id):
        try:
            v = check_signature(signed, people, kind=kind, check_role=False, conn=conn)
        except DecisionRefused:
            continue
        if v.doc.get("run") == run_id and (step_id is None or v.doc.get("step") == step_id):
            return v.person
    return None


def _has_records(conn: Connection, run_id: str, step_id: str) -> bool:

    c = execution_records.c
    return conn.execute(select(c.client_id).where(c.run_id == run_id, c.step_id == step_id).limit(1)).first() \
        is not None


def check_before_send(
    conn: Connection, people: People, run: Any, spec: Any, step_id: str, digests: Mapping[str, str],
    *, workflows_dir: Path | None = None,
) -> str:
    """Verify the request and every guarding approval's signatures; returns the requester.

    ``digests`` maps each approval step guarding ``step_id`` to the digest recomputed from
    what is about to be sent.

    Raises:
        EvidenceMissing: in plain words, naming the approval step and the count.
    """
    requester = signed_requester(conn, people, run, workflows_dir)
    workflow_digest = digest_of(run.workflow_snapshot)
    if not _has_records(conn, run.id, step_id) and (who := _signed(conn, people, run.id, "cancel")):
        # a step already sending finishes after a cancel; one that never sent does not start
        raise EvidenceMissing(f"run {run.id} was cancelled by {who}'s signed decision; nothing was sent")
    for approval_id in spec.guards().get(step_id, []):
        approval = spec.step(approval_id).approval
        if who := _signed(conn, people, run.id, "reject", approval_id):
            raise EvidenceMissing(f"approval {approval_id!r} was rejected by {who}'s signed decision (one "
                                  "rejection ends the run); nothing was sent")
        digest = digests.get(approval_id)
        eligible = people.eligible(approval.approvers, exclude=requester)
        verified: set[str] = set()
        for signed in stored(conn, run.id, kind="approve", step_id=approval_id):
            try:
                v = check_signature(signed, people, kind="approve", conn=conn)
            except DecisionRefused:
                continue
            d = v.doc
            if (d.get("run") == run.id and d.get("step") == approval_id and digest is not None
                    and d.get("params_digest") == f"sha256:{digest}" and d.get("workflow_digest") == workflow_digest
                    and v.person in eligible):
                verified.add(v.person)
        if len(verified) < approval.quorum:
            who = ", ".join(sorted(verified)) or "nobody"
            raise EvidenceMissing(
                f"approval {approval_id!r} needs {approval.quorum} verified signatures over what is about to "
                f"be sent, and has {len(verified)} ({who}); nothing was sent")
    return requester
