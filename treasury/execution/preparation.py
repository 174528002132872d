"""Preparing a step: its legs and client ids, and the PREPARED rows written before any send.

The client id of each leg is deterministic (run, step, leg). The PREPARED rows are inserted
in the same transaction as the policy reservation and its audited decision, so nothing can be
sent for a step whose reservation was not taken; a denied step is written as FAILED instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from treasury.audit import NewEvent
from treasury.audit.events import EXECUTION_STATE, POLICY_DECISION
from treasury.audit.tables import audit_events
from treasury.errors import TreasuryError
from treasury.execution import records as R
from treasury.execution.context import Services, policy_api
from treasury.execution.ids import client_id_for
from treasury.execution.outcomes import StepRequest
from treasury.execution.records import ExecRecord, NewRecord
from treasury.models import ExecState
from treasury.operations.params import Params
from treasury.operations.registry import OperationSpec, parse_params


class RecordsVanished(TreasuryError):
    """The audit history shows execution records for a step that has none now (nothing is sent)."""


def _ever_prepared(conn: Connection, run_id: str, step_id: str) -> bool:
    """Whether the audit history shows execution records for this step (chain-protected, unlike rows)."""
    c = audit_events.c
    return conn.execute(select(c.seq).where(c.run_id == run_id, c.step_id == step_id,
                                            c.type == EXECUTION_STATE).limit(1)).first() is not None


def legs_for(spec: OperationSpec, req: StepRequest) -> list[NewRecord]:
    """The step's legs (as the operation splits it) with their client ids set in the wire parameters,
    each with its parameters validated into the operation's model.

    Raises:
        ParameterError: the parameters cannot be split into legs, or do not fit the operation.
        ValueError: a parameter value cannot be parsed.
    """
    field_ = spec.client_id_field
    wires: list[tuple[str, dict[str, Any]]] = []
    for index, part in enumerate(spec.legs.split(req.params)):
        cid = client_id_for(req.run_id, req.step_id, spec.legs.number(index))
        wires.append((cid, {**part, field_: cid} if field_ else part))
    # validated once, here: the typed legs are what the client sends
    checked = spec.legs.parts(parse_params(spec, spec.legs.join([wire for _, wire in wires])))
    return [NewRecord(cid, index, wire, model)
            for index, ((cid, wire), model) in enumerate(zip(wires, checked, strict=True))]


def measured(spec: OperationSpec, req: StepRequest, legs: Sequence[NewRecord]) -> Params | dict[str, Any]:
    """What the policy measures for the step: its validated request (the model the client
    sends), or, for legs built without their models, the parameters as requested."""
    checked = [leg.checked for leg in legs if leg.checked is not None]
    if legs and len(checked) == len(legs):
        return spec.legs.whole(checked)
    return dict(req.params)


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
                                                 op=spec.name, params=measured(spec, req, legs), at=at,
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
