"""What a step call is asked and what it answers, and the words used to explain it.

``StepRequest`` goes in, ``StepOutcome`` comes out; ``outcome_of`` derives the outcome from a
step's execution records. The rest are the texts a person reads (reasons, error texts, hints)
and the audit payloads of a request and its answer, kept together so every path of the
executor says the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from treasury.errors import ExchangeError, ExchangeHalted, RateLimited
from treasury.execution.records import ExecRecord
from treasury.models import ExecState, StepState
from treasury.operations.registry import OperationSpec

# Two complete commands a person can paste as printed (the shell fills in $USER); a person
# in approvers.yaml settles the step, with a note saying what they checked.
RESOLVE_HINT = ("settle it: if HashKey shows it done, run "
                "`treasury resolve {run} {step} --as \"$USER\" --outcome succeeded --note \"seen on HashKey\"`; "
                "if not, run "
                "`treasury resolve {run} {step} --as \"$USER\" --outcome failed --note \"not on HashKey\"`")


def resolve_hint(run_id: str, step_id: str) -> str:
    """What a person runs to settle a NEEDS_ATTENTION step (see ``RESOLVE_HINT``)."""
    return RESOLVE_HINT.format(run=run_id, step=step_id)
HALT_HINT = "a person must run `treasury resume-exchange`"


@dataclass(frozen=True)
class ExecutionSettings:
    """Timing of sends and reconciliation.

    ``escalate_requires_two_lookups``: for ``reconcile_then_escalate`` operations (VA
    withdrawals), re-send only when two independent lookups prove the request absent; when
    False one lookup is enough.
    """

    settle_seconds: float = 5.0
    deadline_seconds: float = 120.0
    # how long a claim or change holds a record; a step renews it while it works
    lease_seconds: float = 300.0
    # how often a background heartbeat renews the leases of a working step (None: only before
    # the step's own waits; the runtime sets a quarter of the lease)
    renew_seconds: float | None = None
    send_retry_attempts: int = 3
    read_retry_seconds: float = 20.0
    escalate_requires_two_lookups: bool = True


@dataclass(frozen=True)
class StepRequest:
    """One operation step to run. ``params`` are resolved wire strings without the client id."""

    run_id: str
    step_id: str
    operation: str
    key_profile: str
    params: Mapping[str, Any]
    actor: str
    max_attempts: int = 5
    max_seconds: float = 120.0
    # the step's ``timeout``: epoch seconds after which nothing of it is sent (any more); legs
    # not yet sent then fail, and a request already sent is still reconciled to its end
    not_after: float | None = None
    timeout_text: str | None = None  # the workflow's own words for it, for the error ("10m")


@dataclass
class StepOutcome:
    """Where a step stands. RUNNING: another worker has it, or it must be retried later."""

    state: StepState
    result: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None
    client_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- texts


def cause(exc: BaseException) -> str:
    """A short plain description of why an answer was not definite."""
    if isinstance(exc, ExchangeError):
        if exc.status is not None:
            return f"HTTP {exc.status}" + (f", code {exc.code}" if exc.code else "")
        return "no answer after the request was sent" if exc.outcome_unknown else str(exc).split(" operation=")[0]
    return f"{type(exc).__name__}: {exc}"


def error_text(exc: BaseException) -> str:
    """The error as stored on a record and shown to a person: class, exchange code and message."""
    if isinstance(exc, ExchangeError):
        detail = str(exc.msg or exc).split(" operation=")[0]
        return f"{type(exc).__name__}: " + (f"code {exc.code}: {detail}" if exc.code else detail)
    return str(exc)


def suspended(exc: BaseException) -> bool:
    """A 429, or the limiter refusing because the key is suspended (ends by itself; a ban does not)."""
    text = str(exc).lower()
    return isinstance(exc, RateLimited) or (
        isinstance(exc, ExchangeHalted) and "suspended" in text and "banned" not in text
    )


def halt_message(exc: BaseException) -> str:
    """Why a step stays RUNNING after a rate limit or a halt, and what a person must do about a halt."""
    if suspended(exc):
        return "rate limited; will retry"
    return f"exchange halted: {error_text(exc)}; {HALT_HINT}"


def reason_text(spec: OperationSpec, run_id: str, step_id: str, rec: ExecRecord, why: str, *,
                story: str | None = None) -> str:
    """The plain-language reason a person reads: what happened, what to check, what to run."""
    what, where = spec.what, spec.history
    story = story or f"got no definite answer ({rec.error or 'no answer'}) and {why}"
    return (f"The {what} request (client id {rec.client_id}) {story}. Check HashKey's {where} for "
            f"client id {rec.client_id}, then " + resolve_hint(run_id, step_id) + ".")


# ---------------------------------------------------------------------- audit payloads


def sent_payload(spec: OperationSpec, profile: str, params: dict[str, Any], client_id: str | None,
                 attempt: int) -> dict[str, Any]:
    """The ``request.sent`` payload: what was sent, where, with which key profile."""
    return {"operation": spec.name, "method": spec.method, "path": spec.path, "params": params,
            "client_id": client_id, "attempt": attempt, "key_profile": profile}


def error_payload(spec: OperationSpec, client_id: str | None, attempt: int, exc: BaseException) -> dict[str, Any]:
    """The ``response.received`` payload for a request that ended in an error."""
    ex = exc if isinstance(exc, ExchangeError) else None
    return {"operation": spec.name, "client_id": client_id, "attempt": attempt,
            "outcome": type(exc).__name__, "status": ex.status if ex else None,
            "code": ex.code if ex else None, "body": {"code": ex.code, "msg": ex.msg} if ex else None,
            "error": error_text(exc)}


# ---------------------------------------------------------------------- outcomes


def settled(recs: Sequence[ExecRecord]) -> bool:
    """Every leg is SUCCEEDED or FAILED (so the policy reservation can be confirmed or released)."""
    return bool(recs) and all(r.state in (ExecState.SUCCEEDED, ExecState.FAILED) for r in recs)


def outcome_of(spec: OperationSpec, recs: Sequence[ExecRecord]) -> StepOutcome:
    """The step's outcome from its records (all final, or the latest state of each), as the
    operation's legs add up (``OperationSpec.legs.standing``)."""
    recs = sorted(recs, key=lambda r: r.leg)
    standing = spec.legs.standing(recs)
    return StepOutcome(standing.state, standing.result, error=standing.error, reason=standing.reason,
                       client_ids=[r.client_id for r in recs])
