"""The send path: PREPARED legs go out once per attempt, and every answer lands on a record.

SENDING is committed (with ``request.sent``) before the request leaves; the answer then moves
each leg to SUCCEEDED, FAILED, back to PREPARED (nothing happened: not sent, 429, halted) or
UNKNOWN (it may have happened: 5xx, timeout, reset, duplicate). A successful answer is read
onto the legs by the operation's declaration (``OperationSpec.legs.answer``: a batch's by
client order id, never by position).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from treasury.audit.events import POLICY_DECISION, REQUEST_SENT, RESPONSE_RECEIVED, RETRY_SCHEDULED
from treasury.errors import (
    Banned,
    DuplicateClientId,
    ExchangeError,
    ExchangeHalted,
    NotSent,
    OperationNotPermitted,
    OutcomeUnknown,
    ParameterError,
    RateLimited,
    Rejected,
    TreasuryError,
)
from treasury.exchange.responses import code_text, error_class_for_code
from treasury.execution import baseline
from treasury.execution import records as R
from treasury.execution.context import StepContext, Stop, policy_api
from treasury.execution.outcomes import (
    cause,
    error_payload,
    error_text,
    halt_message,
    sent_payload,
    suspended,
)
from treasury.execution.progress import seconds_text
from treasury.execution.records import ExecRecord, LeaseLost
from treasury.models import ExecState
from treasury.operations.legs import ItemError, LegAnswer
from treasury.operations.params import Params


def send(ctx: StepContext, cids: list[str]) -> None:
    """Send the PREPARED legs ``cids`` under the send retry policy.

    Legs out of attempts go to NEEDS_ATTENTION; a request that could not leave at all fails
    its legs; a rate limit or halt is waited out or stops the call.

    Raises:
        Stop: the time budget is spent, or the exchange is halted or rate limited for too long.
        LeaseLost: another worker took a leg over.
    """
    exhausted = [c for c in cids if ctx.legs[c].attempts >= ctx.max_attempts]
    for cid in exhausted:
        rec = ctx.legs[cid]
        ctx.commit([(rec, {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(
            rec, "", story=f"was sent {rec.attempts} times; each time the answer was not definite "
                           "and lookups then showed it had not happened, and no more attempts "
                           "are allowed")})])
    cids = [c for c in cids if c not in exhausted]
    if not cids:
        return
    clock = ctx.svc.clock
    if ctx.not_after is not None and clock.time() >= ctx.not_after:
        # the step's own timeout: what has not gone out by now never will
        late = [ctx.legs[c] for c in cids if ctx.legs[c].state is ExecState.PREPARED]
        ctx.commit([(r, {"state": ExecState.FAILED, "error": (
            f"the step's timeout ({ctx.timeout_text or 'set in the workflow'}) passed before it was sent; "
            "nothing was sent")}) for r in late])
        return
    if clock.time() >= ctx.send_until:
        raise Stop(ctx.running("the step's time budget is spent before sending; will retry"))
    if ctx.policy_fresh:
        ctx.policy_fresh = False
    else:
        cids = recheck_policy(ctx, cids)
        if not cids:
            return
    try:
        note_baselines(ctx, cids)
        ctx.svc.send_policy.call(lambda: send_once(ctx, cids), ctx.clock,
                                 before_sleep=ctx.retry_audit(ctx.spec.name))
    except NotSent as exc:
        still = [ctx.legs[c] for c in cids if ctx.legs[c].state is ExecState.PREPARED]
        ctx.commit([(r, {"state": ExecState.FAILED, "error":
                         f"could not reach the exchange; nothing was sent ({cause(exc)})"})
                    for r in still])
    except (RateLimited, ExchangeHalted, Banned) as exc:
        wait_out(ctx, exc, until=ctx.send_until)


def recheck_policy(ctx: StepContext, cids: list[str]) -> list[str]:
    """Before sending legs reserved in an earlier call, or again after a proven absence, check
    the rules that can turn since (windows, allowlists, per-transaction limits); returns the
    legs that may go. Denied legs end FAILED with nothing sent, which releases the reservation.

    Raises:
        LeaseLost: another worker took a leg over.
    """
    svc = ctx.svc
    recs = [ctx.legs[c] for c in cids if ctx.legs[c].state is ExecState.PREPARED]
    if svc.policy is None or not recs:
        return cids
    verdicts = policy_api().recheck(svc.policy, op=ctx.spec.name, params=measured(ctx), at=svc.clock.now(),
                                    account=ctx.profile.account_id)
    denied = [v for v in verdicts if not v.allowed]
    event = (POLICY_DECISION, {"operation": ctx.spec.name, "allowed": not denied, "stage": "before sending again",
                               "policy_digest": getattr(svc.policy, "digest", None),
                               "verdicts": [v.to_dict() for v in verdicts]})
    if not denied:
        if verdicts:
            ctx.event(*event)
        return cids
    error = "policy denied before sending again; nothing was sent: " + "; ".join(
        f"{v.rule}: {v.message}" for v in denied)
    ctx.commit([(r, {"state": ExecState.FAILED, "error": error}) for r in recs], events=[event])
    return []


def measured(ctx: StepContext) -> Params | Mapping[str, Any]:
    """What the policy checks again: the step's validated request (every leg's model, as the
    client sends it), or the parameters as requested when a leg has no model (it is never sent)."""
    recs = sorted(ctx.legs.values(), key=lambda r: r.leg)
    if recs and all(r.client_id in ctx.checked for r in recs):
        return ctx.spec.legs.whole([ctx.checked[r.client_id] for r in recs])
    return ctx.params


def note_baselines(ctx: StepContext, cids: list[str]) -> None:
    """Before the first send with a key that cannot read the fund statement, note the balances
    the operation declares (a transfer's two accounts; ``treasury.execution.baseline``).

    Raises:
        RateLimited, ExchangeHalted, Banned: nothing may be read now (nothing was sent).
        LeaseLost: another worker took a leg over.
    """
    for cid in cids:
        rec = ctx.legs[cid]
        if rec.state is ExecState.PREPARED and baseline.needed(ctx.spec, ctx.profile, rec):
            baseline.take(ctx, rec)


def wait_out(ctx: StepContext, exc: ExchangeError, *, until: float) -> None:
    """After a 429 or a local halt: wait out a key suspension if it ends before ``until``
    (at most twice per call); otherwise stop with RUNNING. A ban always stops.

    Raises:
        Stop: the halt is not a suspension, or it lasts past ``until``, or two waits were spent.
    """
    if not suspended(exc):
        raise Stop(ctx.running(halt_message(exc)))
    clock = ctx.svc.clock
    found = re.search(r"another ([0-9.]+) s", str(exc))
    wait = float(found.group(1)) if found else float(getattr(ctx.client, "suspension_seconds", 60.0))
    if ctx.rate_waits >= 2 or clock.time() + wait > until:
        raise Stop(ctx.running("rate limited; will retry"))
    ctx.rate_waits += 1
    ctx.event(RETRY_SCHEDULED, {"operation": ctx.spec.name, "wait_seconds": wait,
                                "why": "rate limited (key suspended)"})
    ctx.report(f"waiting out the exchange's rate limit for the {ctx.noun}",
               f"the key is suspended for another {seconds_text(wait)}", until=clock.time() + wait)
    ctx.wait(wait)


def send_once(ctx: StepContext, cids: list[str]) -> None:
    """One attempt: commit SENDING, send the request, record the answer on every leg.

    Raises:
        NotSent, ExchangeHalted: nothing left this process (the legs are PREPARED again).
        RateLimited, Banned: refused before execution (the legs are PREPARED again).
        LeaseLost: another worker took a leg over.
    """
    recs = [ctx.legs[c] for c in cids if ctx.legs[c].state is ExecState.PREPARED]
    if not recs:
        return
    altered = [r for r in recs if R.params_digest(r.params) != ctx.expected.get(r.client_id)
               or r.client_id not in ctx.checked]
    if altered:
        # The stored parameters changed after this step was asked for (and approved): sending
        # them would send something nobody approved. Nothing goes out; a person looks. (A leg
        # with no expected digest or no validated parameters counts as changed: only a step's
        # own call may send.)
        ctx.commit([(r, {"state": ExecState.NEEDS_ATTENTION, "reason": ctx.reason(
            r, "", story="was about to be sent, but its stored parameters no longer match what the "
                         "step asked for (the record was changed in the database); nothing was sent")})
                    for r in altered])
        recs = [r for r in recs if r not in altered]
        if not recs:
            return
    now = ctx.svc.clock.now()
    sent = ctx.commit([(r, {"state": ExecState.SENDING, "attempts": r.attempts + 1, "sent_at": now,
                            "error": None}) for r in recs],
                      events=[(REQUEST_SENT, sent_payload(ctx.spec, ctx.profile.name, r.params,
                                                          r.client_id, r.attempts + 1))
                              for r in recs],
                      durable=True)  # it guards the send: a power loss must not roll it back
    # the parameters validated when the step was prepared, equal to the stored ones (their
    # digests matched above): sent as they are, not parsed from the records again
    request = ctx.spec.legs.whole([ctx.checked[r.client_id] for r in sent])
    ctx.report(f"sending the {ctx.noun} {', '.join(r.client_id for r in sent)}",
               f"attempt {sent[0].attempts} of {ctx.max_attempts}")
    error: TreasuryError | None = None
    try:
        response = ctx.client.call(ctx.spec, ctx.profile, request,
                                   before_sign=ctx.before_sign([r.client_id for r in sent]))
    except LeaseLost:
        raise  # checked before signing: nothing was sent, and the records are another worker's now
    except TreasuryError as exc:
        error = exc
    # the signing check may have moved the legs on (``sent_at``): answer on their current rows
    sent = [ctx.legs[r.client_id] for r in sent]
    if isinstance(error, NotSent | ExchangeHalted | OperationNotPermitted | ParameterError):
        # Nothing left this process: undo the attempt.
        definite = isinstance(error, OperationNotPermitted | ParameterError)
        ctx.commit([(r, {"state": ExecState.FAILED if definite else ExecState.PREPARED,
                         "attempts": r.attempts - 1, "error": error_text(error)}) for r in sent],
                   events=[(RESPONSE_RECEIVED, error_payload(ctx.spec, r.client_id, r.attempts, error))
                           for r in sent])
        if not definite:
            raise error
        return
    if isinstance(error, RateLimited | Banned):
        # Rejected before execution: nothing happened, so the same request may go again later.
        ctx.commit([(r, {"state": ExecState.PREPARED, "error": error_text(error)}) for r in sent],
                   events=[(RESPONSE_RECEIVED, error_payload(ctx.spec, r.client_id, r.attempts, error))
                           for r in sent])
        raise error
    if isinstance(error, OutcomeUnknown | DuplicateClientId):
        to_unknown(ctx, sent, error)
        return
    if isinstance(error, Rejected):
        ctx.commit([(r, {"state": ExecState.FAILED, "error": error_text(error)}) for r in sent],
                   events=[(RESPONSE_RECEIVED, error_payload(ctx.spec, r.client_id, r.attempts, error))
                           for r in sent])
        return
    if error is not None:
        to_unknown(ctx, sent, error)  # not in the table: assume it may have happened
        return
    answered = ctx.spec.legs.answer(sent, response.data, item_error=item_error)
    now = ctx.svc.clock.now()
    ctx.commit([(r, leg_change(r, answered.legs[r.client_id], now)) for r in sent],
               events=[(RESPONSE_RECEIVED, {**answered.names, "operation": ctx.spec.name,
                                            "outcome": answered.outcome, "status": response.status,
                                            "body": response.data})])


def leg_change(rec: ExecRecord, answer: LegAnswer, now: datetime) -> dict[str, Any]:
    """The change an answer makes to one leg's record."""
    if answer.state is ExecState.SUCCEEDED:
        return {"state": answer.state, "response": answer.response, "exchange_order_id": answer.exchange_order_id}
    if answer.state is ExecState.UNKNOWN:
        return {"state": answer.state, "unknown_since": rec.unknown_since or now, "error": answer.error}
    return {"state": answer.state, "error": answer.error}


def to_unknown(ctx: StepContext, recs: Sequence[ExecRecord], exc: BaseException) -> None:
    """The answer was not definite: the legs may have happened, so they go to UNKNOWN."""
    now = ctx.svc.clock.now()
    ctx.commit([(r, {"state": ExecState.UNKNOWN, "unknown_since": r.unknown_since or now,
                     "error": cause(exc)}) for r in recs],
               events=[(RESPONSE_RECEIVED, error_payload(ctx.spec, r.client_id, r.attempts, exc))
                       for r in recs])


def item_error(item: Mapping[str, Any]) -> ItemError | None:
    """One item's error in an answer with a result per leg, as (error class, code, message),
    or None when it succeeded."""
    code = code_text(item.get("code"))
    if code is None or code in ("0", "0000", "200"):
        return None
    msg = str(item.get("msg") or "")
    cls = error_class_for_code(code, msg) or Rejected
    return cls, code, msg
