"""Acting on reconciliation verdicts: in-flight legs become SUCCEEDED, FAILED, PREPARED or a person's.

``treasury.execution.reconcile`` runs the lookups and gives a verdict; this module applies it
to a record under the lease. Absence re-opens a leg for sending (same client id) only after
the settle window, and for VA withdrawals only when enough independent lookups agree; a leg
that stays unknown past the deadline goes to NEEDS_ATTENTION with a reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from treasury.audit.events import RECONCILE_LOOKUP, RECONCILE_VERDICT
from treasury.errors import Banned, ExchangeHalted
from treasury.execution import reconcile as rc
from treasury.execution import records as R
from treasury.execution.context import StepContext
from treasury.execution.outcomes import error_text
from treasury.execution.progress import seconds_text
from treasury.execution.sending import wait_out
from treasury.models import ExecState, RetryStrategy


def reconcile_pass(ctx: StepContext, cids: Sequence[str]) -> bool:
    """Look up every in-flight leg once and act on the verdicts; True while any must wait.

    Raises:
        Stop: the exchange is halted or rate limited for too long.
        LeaseLost: another worker took a leg over.
    """
    pending = False
    for cid in cids:
        if ctx.legs[cid].state in R.IN_FLIGHT:
            pending = reconcile_leg(ctx, cid) or pending
    return pending


def reconcile_leg(ctx: StepContext, cid: str) -> bool:
    """One lookup round for leg ``cid`` and the change it calls for; True while it must wait."""
    clock = ctx.svc.clock
    settings = ctx.svc.settings
    rec = ctx.legs[cid]
    now = clock.now()
    if rec.state is ExecState.SENDING:
        # A worker stopped between "sending" and recording the answer: it may have happened.
        rec = ctx.commit([(rec, {"state": ExecState.UNKNOWN, "unknown_since": now, "error":
                                 "the answer was never recorded (the worker stopped while sending)"})])[0]
    if ctx.spec.reconcile is None:
        ctx.commit([(rec, {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(
            rec, "the exchange offers no lookup for this operation")})])
        return False
    events: list[tuple[str, dict[str, Any]]] = []

    def on_lookup(lookup: rc.Lookup, answer: Any) -> None:
        shown = ({"error": error_text(answer)} if isinstance(answer, BaseException) else {"answer": answer})
        events.append((RECONCILE_LOOKUP, {"client_id": cid, "lookup": lookup.source,
                                          "operation": lookup.operation, "params": lookup.params, **shown}))

    passes = int((rec.response or {}).get("reconcile_passes", 0)) + 1 if isinstance(rec.response, dict) else 1
    planned = len(rc.plan(ctx.spec, cid, rec.params, sent_at=rec.sent_at, now=now,
                          fund_statement=ctx.profile.fund_statement))
    decide_by = ((rec.unknown_since or now) + timedelta(seconds=settings.deadline_seconds)).timestamp()
    done: list[rc.Lookup] = []

    def read_one(lookup: rc.Lookup) -> Any:
        done.append(lookup)
        ctx.report(f"reconciling the {ctx.noun} {cid} (its answer was lost)",
                   f"lookup round {passes}, lookup {len(done)} of {planned} ({lookup.source}), settle window "
                   f"{seconds_text(settings.settle_seconds)}", until=decide_by)
        return read(ctx, lookup)

    try:
        verdict = rc.run_lookups(ctx.spec, cid, rec.params, sent_at=rec.sent_at, now=now,
                                 read=read_one,
                                 permissions=ctx.profile.permissions, on_lookup=on_lookup,
                                 fund_statement=ctx.profile.fund_statement, noted=rec.baseline)
    except (ExchangeHalted, Banned) as exc:
        wait_out(ctx, exc, until=ctx.stop_at)
        return True
    now = clock.now()
    events.append((RECONCILE_VERDICT, {"client_id": cid, "pass": passes, **rc.verdict_dict(verdict)}))
    values: dict[str, Any]
    pending = False
    settled = rec.sent_at is None or (now - rec.sent_at) >= timedelta(seconds=settings.settle_seconds)
    if isinstance(verdict, rc.Found):
        if verdict.failed:
            values = {"state": ExecState.FAILED, "exchange_order_id": verdict.order_id,
                      "response": verdict.data,
                      "error": f"the exchange shows it as {verdict.data.get('status', 'failed')}"}
        else:
            values = {"state": ExecState.SUCCEEDED, "exchange_order_id": verdict.order_id,
                      "response": verdict.data}
    elif isinstance(verdict, rc.Absent):
        needed = 1
        if ctx.spec.retry_strategy is RetryStrategy.RECONCILE_THEN_ESCALATE:
            needed = 2 if settings.escalate_requires_two_lookups else 1
        if not settled:
            values, pending = {"response": {"reconcile_passes": passes, "last": "ABSENT (settling)"}}, True
        elif len(verdict.sources) >= needed:
            values = {"state": ExecState.PREPARED, "unknown_since": None, "response": None,
                      "error": f"proven absent by {' and '.join(verdict.sources)}; "
                               "will re-send with the same client id"}
        else:
            values = {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(
                rec, f"only {' and '.join(verdict.sources)} could be checked, and a "
                     f"{ctx.spec.what} is re-sent only when "
                     f"{needed} independent lookups show it is absent")}
    elif verdict.final and settled:
        values = {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(rec, verdict.reason)}
    else:
        since = rec.unknown_since or now
        if now - since >= timedelta(seconds=settings.deadline_seconds):
            values = {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(
                rec, f"{passes} rounds of lookups over {(now - since).total_seconds():.0f} s could not show "
                     f"whether it happened ({verdict.reason})")}
        else:
            values, pending = {"response": {"reconcile_passes": passes, "last": verdict.reason}}, True
    ctx.commit([(rec, values)], events=events)
    return pending


def read(ctx: StepContext, lookup: rc.Lookup) -> Any:
    """One lookup on the exchange under the read retry policy (retries audited)."""
    return ctx.read(lookup.operation, lookup.params)
