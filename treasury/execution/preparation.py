"""Preparing a step: its legs and client ids, and the PREPARED rows written before any send.

The client id of each leg is deterministic (run, step, leg). The PREPARED rows are inserted
in the same transaction as the policy reservation and its audited decision, so nothing can be
sent for a step whose reservation was not taken; a denied step is written as FAILED instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from treasury.audit import NewEvent
from treasury.audit.events import EXECUTION_STATE, POLICY_DECISION
from treasury.errors import ParameterError, TreasuryError
from treasury.execution import records as R
from treasury.execution.context import Services, policy_api
from treasury.execution.ids import client_id_for
from treasury.execution.outcomes import StepRequest
from treasury.execution.records import ExecRecord, NewRecord
from treasury.models import ExecState
from treasury.operations.registry import OperationSpec, parse_params


class RecordsVanished(TreasuryError):
    """The audit history shows execution records for a step that has none now (nothing is sent)."""


def _ever_prepared(conn: Connection, run_id: str, step_id: str) -> bool:
    """Whether the audit history shows execution records for this step (chain-protected, unlike rows)."""
    from treasury.audit.tables import audit_events

    c = audit_events.c
    return conn.execute(select(c.seq).where(c.run_id == run_id, c.step_id == step_id,
                                            c.type == EXECUTION_STATE).limit(1)).first() is not None


def legs_for(spec: OperationSpec, req: StepRequest) -> list[NewRecord]:
    """The step's legs with their client ids set in the wire parameters (one leg per batch order).

    Raises:
        ParameterError: a batch has no orders, or the parameters do not fit the operation.
        ValueError: a parameter value cannot be parsed.
    """
    params = dict(req.params)
    field_ = spec.client_id_field
    if spec.lookup == "batch_orders":
        orders = params.get("orders")
        if not isinstance(orders, list) or not orders:
            raise ParameterError("orders", "must be a non-empty list of orders")
        legs = [NewRecord(client_id_for(req.run_id, req.step_id, i), i,
                          {**dict(order), str(field_): client_id_for(req.run_id, req.step_id, i)})
                for i, order in enumerate(orders)]
        parse_params(spec, {"orders": [leg.params for leg in legs]})
        return legs
    cid = client_id_for(req.run_id, req.step_id)
    wire = {**params, field_: cid} if field_ else params
    parse_params(spec, wire)
    return [NewRecord(cid, 0, wire)]


def prepare(svc: Services, spec: OperationSpec, req: StepRequest, legs: list[NewRecord], *,
            account: str | None = None, holder: str | None = None) -> tuple[list[ExecRecord] | None, bool]:
    """Insert the PREPARED records (with the policy reservation); returns (records, inserted).

    The records are None when another worker inserted them first; ``inserted`` is True only
    when this call inserted them, so the policy was evaluated just now. With ``holder``, the
    PREPARED records are inserted leased to it (the step's claim, in the same write).

    Raises:
        RecordsVanished: the step's records are gone but the audit history shows them (deleted
            in the database, or a restored backup): sending again could pay twice.

    ``account`` is the key profile's account, for account-scoped rules on operations whose
    parameters name none (withdrawals).
    """
    at = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            existing = R.load_step(conn, req.run_id, req.step_id)
            if existing:
                return existing, False
            if _ever_prepared(conn, req.run_id, req.step_id):
                # Another worker may have committed the records (with their audit events) between
                # the two reads above: read the records again, after the audit. Only if they are
                # still missing were they deleted.
                existing = R.load_step(conn, req.run_id, req.step_id)
                if existing:
                    return existing, False
                raise RecordsVanished(
                    f"step {req.step_id} of run {req.run_id} has no execution records, but the audit history "
                    f"shows it had some ({', '.join(leg.client_id for leg in legs)}): they were deleted or a "
                    "backup was restored; nothing was sent. Check the exchange for these client ids")
            denied: list[Any] = []
            events: list[NewEvent] = []
            if svc.policy is not None:
                verdicts = policy_api().reserve(conn, svc.policy, run_id=req.run_id, step_id=req.step_id,
                                                 op=spec.name, params=dict(req.params), at=at,
                                                 account=account)
                denied = [v for v in verdicts if not v.allowed]
                events.append(NewEvent(POLICY_DECISION, req.actor, at, req.run_id, req.step_id, {
                    "operation": spec.name, "allowed": not denied,
                    "policy_digest": getattr(svc.policy, "digest", None),
                    "verdicts": [v.to_dict() for v in verdicts]}))
            if denied:
                error = "policy denied: " + "; ".join(f"{v.rule}: {v.message}" for v in denied)
                recs = R.insert_prepared(conn, run_id=req.run_id, step_id=req.step_id, operation=spec.name,
                                         key_profile=req.key_profile, legs=legs, at=at,
                                         state=ExecState.FAILED, error=error)
                state = ExecState.FAILED
            else:
                recs = R.insert_prepared(conn, run_id=req.run_id, step_id=req.step_id, operation=spec.name,
                                         key_profile=req.key_profile, legs=legs, at=at, lease_owner=holder,
                                         lease_seconds=svc.settings.lease_seconds)
                state = ExecState.PREPARED
            events += [NewEvent(EXECUTION_STATE, req.actor, at, req.run_id, req.step_id, {
                "client_id": leg.client_id, "leg": leg.leg, "to": state.value, "operation": spec.name,
                "key_profile": req.key_profile}) for leg in legs]
            svc.audit_all(conn, events)  # after the writes: the head is locked until the commit
            return recs, True
    except IntegrityError:
        return None, False  # another worker inserted them first: continue from what it wrote
