"""Read-side views of runs: the dry-run plan, one run in full, and the run list."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

from treasury.audit import query_events
from treasury.canonical import inputs_json
from treasury.execution.ids import client_id_for
from treasury.language.fanout import split_instance
from treasury.language.inputs import coerce_inputs
from treasury.models import format_amount
from treasury.operations.registry import get_operation
from treasury.policy import evaluate
from treasury.runs import runstore as store
from treasury.runs.context import ParamsHost


class RunListing(TypedDict):
    """One run in the run list (``treasury runs``); scheduled runs add their schedule and due time."""

    id: str
    workflow: str
    state: str
    requested_by: str
    created_at: datetime
    schedule: NotRequired[str]
    due_at: NotRequired[datetime | None]


class ExecutionView(TypedDict):
    """One execution record of a step, as ``treasury show`` lists it."""

    client_id: str
    leg: int
    state: str
    attempts: int
    exchange_order_id: str | None
    reason: str | None
    lease_owner: str | None
    lease_until: datetime | None
    last_seen: datetime | None


class PolicyCheck(TypedDict):
    """One audited policy decision about a step (at start or before a send)."""

    at: datetime
    stage: str
    allowed: bool
    verdicts: list[dict[str, Any]]


class AuditEntry(TypedDict):
    """One audit event of a run, as ``treasury show`` prints its timeline."""

    seq: int
    at: datetime
    actor: str
    step_id: str | None
    type: str
    payload: dict[str, Any]


def plan_run(svc: ParamsHost, loaded: Any, raw_inputs: Mapping[str, Any], *, requested_by: str) -> dict[str, Any]:
    """What a run would do: resolved parameters and policy verdicts. Sends and stores nothing."""
    from types import SimpleNamespace

    inputs = inputs_json(coerce_inputs(loaded.spec, raw_inputs))
    svc.check_quorums(loaded.spec, requested_by)  # refused here exactly as a real start would be
    fake_run = SimpleNamespace(id="r00000000000", inputs=inputs, requested_by=requested_by)
    out_steps = []
    spec = svc.instances(loaded, inputs)
    with svc.engine.connect() as conn:
        for step in spec:
            entry: dict[str, Any] = {"id": step.id}
            if step.approval is not None:
                entry.update({
                    "kind": "approval", "quorum": step.approval.quorum,
                    "eligible": sorted(svc.ctx.approvers.eligible(step.approval.approvers,
                                                                   exclude=requested_by)),
                    "expires_in": step.approval.expires_in,
                })
            else:
                full = svc.resolve_params(fake_run, step, {})
                entry.update({"kind": "operation", "op": step.op, "key": step.key,
                              "params": full if full is not None else svc.bind_params(fake_run, step, {}),
                              "resolved": full is not None})
                if svc.ctx.policy is not None and full is not None:
                    verdicts = evaluate(conn, svc.ctx.policy, op=step.op, params=full, at=svc.now(),
                                        account=svc.account_of(step.key))
                    entry["policy"] = [v.to_dict() for v in verdicts]
            out_steps.append(entry)
    allowed = all(v["allowed"] for s in out_steps for v in s.get("policy", []))
    out = {"workflow": loaded.spec.name, "file": loaded.source, "workflow_digest": loaded.digest,
           "inputs": inputs, "requested_by": requested_by, "steps": out_steps, "allowed": allowed,
           "dry_run": True}
    fan = fan_out_summary(loaded.spec, {s["id"]: (None, s.get("params")) for s in out_steps})
    if fan:
        out["fan_out"] = fan
    return out


def fan_out_summary(spec: Any, steps: Mapping[str, tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """For each for_each step: how many items, how many in each state, and the total it moves
    per asset. ``steps``: step (instance) id -> (state or None, parameters)."""
    from decimal import Decimal


    out = []
    for step in spec.steps:
        if step.for_each is None:
            continue
        mine = {sid: v for sid, v in steps.items() if split_instance(sid)[0] == step.id and sid != step.id}
        states = Counter(state for state, _ in mine.values() if state is not None)
        totals: dict[str, Decimal] = {}
        op = get_operation(step.op) if step.op else None
        money = getattr(op, "money", None)
        for _, params in mine.values():
            if money is None or not isinstance(params, Mapping):
                continue
            for mv in money.movements(params, account=None, resolvable=None):
                if mv.asset is not None and mv.amount is not None:
                    totals[mv.asset] = totals.get(mv.asset, Decimal(0)) + mv.amount
        entry: dict[str, Any] = {"step": step.id, "items": len(mine), "concurrency": step.parallel,
                                 "totals": {a: format_amount(t) for a, t in sorted(totals.items())}}
        if states:
            entry["states"] = dict(sorted(states.items()))
        out.append(entry)
    return out


def show_run(svc: ParamsHost, run_id: str, *, with_audit: bool = True) -> dict[str, Any]:
    """Everything about one run: steps with client ids, results, approvals, audit timeline."""
    with svc.engine.connect() as conn:
        run = store.get_run(conn, run_id)
        step_rows = store.get_steps(conn, run_id)
        votes = store.approval_rows(conn, run_id)
        records = store.records_for(conn, run_id)
    spec = svc.spec_of(run)
    by_step: dict[str, list[Any]] = {}
    for rec in records:
        by_step.setdefault(rec.step_id, []).append(rec)
    steps_out = []
    for r in step_rows:
        recs = by_step.get(r.step_id, [])
        client_ids = [rec.client_id for rec in recs]
        if not client_ids and r.kind == "operation" and get_operation(r.operation).moves_money:
            client_ids = [client_id_for(run_id, r.step_id)]
        entry: dict[str, Any] = {
            "id": r.step_id, "kind": r.kind, "state": r.state, "operation": r.operation,
            "key": r.key_profile,
            "client_order_id": client_ids[0] if len(client_ids) == 1 else (client_ids or None),
            "params": r.params if r.kind == "operation" else None,
            "result": r.result, "error": r.error,
            "started_at": r.started_at, "finished_at": r.finished_at,
        }
        if recs:
            entry["executions"] = [
                ExecutionView(client_id=rec.client_id, leg=rec.leg, state=rec.state, attempts=rec.attempts,
                              exchange_order_id=rec.exchange_order_id, reason=rec.reason,
                              # who holds it, until when, and when its worker last renewed or changed it
                              lease_owner=rec.lease_owner, lease_until=rec.lease_until, last_seen=rec.updated_at)
                for rec in recs
            ]
        if r.kind == "approval":
            approval = spec.step(r.step_id).approval
            material = r.params or {}
            entry.update({
                "digest": r.digest, "quorum": approval.quorum, "approvers": list(approval.approvers),
                "eligible": material.get("eligible"), "expires_at": r.expires_at,
                "waiting_for": material.get("guarded"), "policy": material.get("policy"),
                "votes": [v for v in votes if v["step_id"] == r.step_id],
            })
        steps_out.append(entry)
    verdicts: dict[str, list[PolicyCheck]] = {}
    for e in query_events(svc.engine, run_id=run_id, type="policy.decision"):
        if e.step_id:
            vs = e.payload.get("verdicts", [])
            verdicts.setdefault(e.step_id, []).append(PolicyCheck(
                at=e.at, stage=e.payload.get("stage", "send"),
                allowed=all(v.get("allowed") for v in vs), verdicts=vs,
            ))
    for entry in steps_out:
        if entry["kind"] == "operation":
            entry["policy"] = verdicts.get(entry["id"], [])
    out: dict[str, Any] = {
        "id": run.id, "workflow": run.workflow, "file": run.workflow_file, "state": run.state,
        "requested_by": run.requested_by, "created_at": run.created_at,
        "updated_at": run.updated_at, "inputs": run.inputs,
        "workflow_digest": run.workflow_digest, "policy_digest": run.policy_digest,
        "schedule": run.schedule, "due_at": run.due_at, "error": run.error,
        "steps": steps_out, "approvals": votes,
    }
    # an instance not started yet is counted by its parameters as the spec fills them from its item
    fan = fan_out_summary(svc.source_spec_of(run),
                          {r.step_id: (r.state, r.params if r.params is not None else spec.step(r.step_id).params)
                           for r in step_rows if r.kind == "operation"})
    if fan:
        out["fan_out"] = fan
    if with_audit:
        out["audit"] = [
            AuditEntry(seq=e.seq, at=e.at, actor=e.actor, step_id=e.step_id, type=e.type, payload=e.payload)
            for e in query_events(svc.engine, run_id=run_id)
        ]
    return out


def list_runs(
    svc: ParamsHost, *, state: str | None = None, workflow: str | None = None, limit: int = 100
) -> list[RunListing]:
    """Runs, newest first, filtered by state and workflow name."""
    with svc.engine.connect() as conn:
        rows = store.list_runs(conn, state=state, workflow=workflow, limit=limit)
    out = []
    for r in rows:
        item = RunListing(id=r.id, workflow=r.workflow, state=r.state, requested_by=r.requested_by,
                          created_at=r.created_at)
        if r.schedule:
            item["schedule"] = r.schedule
            item["due_at"] = r.due_at
        out.append(item)
    return out
