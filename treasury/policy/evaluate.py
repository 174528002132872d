"""Evaluating the policy at each point a step passes, and reserving amounts before sending.

Evaluation points and what each checks:

- ``evaluate_static`` (``treasury validate``): per-transaction limits and allowlists, for
  whatever is not a template; ``required_approval`` + ``check_tiers``: approval tiers.
- ``evaluate`` (run start, ``--dry-run``, approval request): everything, including windows
  and velocity headroom against reserved + committed totals; read-only.
- ``reserve`` (immediately before sending): everything again, strictly, under a lock, and
  records the amount; ``release`` on definite failure, ``confirm`` on success.
- ``recheck`` (before each later send of a reserved step): windows, destinations and
  per-transaction limits again, strictly; velocity stays with the reservation.

Verdicts are returned, never raised: the caller appends each to the audit log
(``Verdict.to_dict`` is JSON-ready) and may call ``raise_if_denied``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from treasury.errors import PolicyDenied
from treasury.models import format_amount
from treasury.operations.params import Params
from treasury.policy.ledger import (
    RELEASED,
    Reservation,
    confirm,
    insert_reservations,
    lock,
    release,
    step_reservations,
    used,
    utc,
)
from treasury.policy.model import ApprovalGuard, ApprovalTier, LimitRule, Policy, Verdict
from treasury.policy.movements import Movement, movements
from treasury.policy.rules import (
    amount_problem,
    applicable_limits,
    destination_verdicts,
    limit_destinations,
    per_tx_verdict,
    window_verdicts,
)

__all__ = [
    "Headroom",
    "check_tiers",
    "confirm",
    "denials",
    "evaluate",
    "evaluate_static",
    "headroom",
    "raise_if_denied",
    "recheck",
    "release",
    "required_approval",
    "reserve",
]


def _final(_value: str) -> bool:
    return True  # at send time every value is literal, even one that looks like a template


def evaluate_static(
    policy: Policy,
    op: str,
    params: Mapping[str, Any],
    *,
    resolvable: Callable[[str], bool] | None = None,
) -> list[Verdict]:
    """Verdicts knowable without the database or the clock: per-transaction limits and allowlists.

    A parameter that is still a template (contains ``${{``, or ``resolvable(value)`` is
    False when a predicate is given) skips the rules that need it. Account-scoped limits are
    skipped (the account is known only at run time). An absent or malformed amount denies.
    """
    out: list[Verdict] = []
    for mv in movements(op, params, resolvable=resolvable):
        out.extend(_limit_verdicts(None, policy, mv, at=None, strict=False))
        out.extend(destination_verdicts(policy, mv, strict=False))
    return out


def evaluate(
    conn: Connection,
    policy: Policy,
    *,
    op: str,
    params: Mapping[str, Any],
    at: datetime,
    account: str | None = None,
) -> list[Verdict]:
    """Every rule for a step at time ``at``, including windows and velocity headroom. Read-only.

    Velocity verdicts carry ``used``, ``limit`` and ``headroom`` (what is left before this
    step). Values that are still templates skip the rules that need them.

    Raises:
        ValueError: ``at`` is naive.
    """
    return _verdicts(conn, policy, movements(op, params, account=account), at=at, strict=False)


def reserve(
    conn: Connection,
    policy: Policy,
    *,
    run_id: str,
    step_id: str,
    op: str,
    params: Mapping[str, Any] | Params,
    at: datetime,
    account: str | None = None,
) -> list[Verdict]:
    """Re-evaluate everything strictly and, if all verdicts allow, reserve the step's amounts.

    ``params`` is the step's validated model (what the executor passes: the request the
    client sends, measured as it is) or its resolved parameters (read strictly: a template
    is literal text).

    Runs inside the caller's transaction: reservations for the same (op, asset) are
    serialized (advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so concurrent runs
    cannot together exceed a cap. When any verdict denies, nothing is inserted. Calling it
    again for a step that holds a reservation allows without counting twice (or denies if
    the amounts differ); a released reservation is replaced.

    Raises:
        ValueError: ``at`` is naive.
        ConfigError: PostgreSQL at REPEATABLE READ (see ``ledger.lock``).
    """
    mvs = movements(op, params, account=account, resolvable=_final)
    measured = [mv for mv in mvs if mv.asset is not None]
    lock(conn, [(mv.op, mv.asset) for mv in measured if mv.asset is not None])
    held = [r for r in step_reservations(conn, run_id=run_id, step_id=step_id) if r.status != RELEASED]
    if held:
        return [_already_reserved(held, measured, run_id, step_id)]
    verdicts = _verdicts(conn, policy, mvs, at=at, strict=True)
    if denials(verdicts):
        return verdicts
    rows = [
        Reservation(mv.leg, mv.op, mv.asset, mv.amount, mv.account, mv.destination, "reserved")
        for mv in measured
        if mv.asset is not None and mv.amount is not None
    ]
    insert_reservations(conn, run_id=run_id, step_id=step_id, at=at, policy_digest=policy.digest, rows=rows)
    return verdicts


def recheck(
    policy: Policy,
    *,
    op: str,
    params: Mapping[str, Any] | Params,
    at: datetime,
    account: str | None = None,
) -> list[Verdict]:
    """The rules that can turn between a step's reservation and a later send of it, strictly.

    ``params`` as for :func:`reserve`: the executor passes the validated request.

    A step is reserved immediately before its first send. When it is sent again later (it could
    not leave, the exchange was halted or banned, or a lost answer was proven absent), the
    time may have left its window and the allowlist or limits may have changed: windows,
    destinations and per-transaction limits are checked again. Velocity is not counted again:
    the step's reservation already holds its amount.

    Raises:
        ValueError: ``at`` is naive.
    """
    # no connection: _limit_verdicts then checks per-transaction limits only, not velocity
    return _verdicts(None, policy, movements(op, params, account=account, resolvable=_final), at=at, strict=True)


def _already_reserved(
    held: list[Reservation], measured: list[Movement], run_id: str, step_id: str
) -> Verdict:
    mine = {(r.leg, r.op, r.asset, r.amount) for r in held}
    wanted = {(mv.leg, mv.op, mv.asset, mv.amount) for mv in measured}
    shown = ", ".join(f"{format_amount(r.amount)} {r.asset} ({r.status})" for r in held)
    details = {"run_id": run_id, "step_id": step_id, "reserved": shown}
    if mine == wanted:
        return Verdict(True, "reservation", f"already reserved for this step: {shown}", details)
    message = f"this step already holds a different reservation ({shown})"
    return Verdict(False, "reservation", message, details)


def _verdicts(
    conn: Connection | None, policy: Policy, mvs: list[Movement], *, at: datetime, strict: bool
) -> list[Verdict]:
    if policy.opt_out:
        # no rules on purpose: say so in every decision, so the audit trail shows what allowed it
        return [Verdict(True, "policy", f"no policy: {policy.source} says `policy: none` "
                        "(allowed only with TREASURY_ENV=simulator)", {"file": policy.source})]
    out = window_verdicts(policy, mvs[0].op, at) if mvs else []
    for mv in mvs:
        out.extend(destination_verdicts(policy, mv, strict=strict))
        out.extend(_limit_verdicts(conn, policy, mv, at=at, strict=strict))
    return out


def _limit_verdicts(
    conn: Connection | None, policy: Policy, mv: Movement, *, at: datetime | None, strict: bool
) -> list[Verdict]:
    out: list[Verdict] = []
    for item in applicable_limits(policy, mv, strict=strict):
        if isinstance(item, Verdict):
            out.append(item)
            continue
        index, rule = item
        verdict = per_tx_verdict(index, rule, mv, strict=strict)
        if verdict is not None:
            out.append(verdict)
        if conn is not None and at is not None:
            verdict = _velocity_verdict(conn, policy, index, rule, mv, at=at, strict=strict)
            if verdict is not None:
                out.append(verdict)
    return out


def _velocity_verdict(
    conn: Connection, policy: Policy, index: int, rule: LimitRule, mv: Movement, *, at: datetime, strict: bool
) -> Verdict | None:
    if rule.max_per_window is None or rule.window_delta is None:
        return None
    problem = amount_problem(index, rule, mv, "max_per_window", strict=strict)
    if problem is not None or mv.amount is None:
        return problem
    since = utc(at) - rule.window_delta
    so_far = _used(conn, policy, rule, since)
    limit = rule.max_per_window
    amount_s, limit_s, used_s = format_amount(mv.amount), format_amount(limit), format_amount(so_far)
    details = {
        "op": mv.op, "asset": rule.target, "amount": amount_s, "limit": limit_s, "used": used_s,
        "headroom": format_amount(max(limit - so_far, Decimal(0))), "window": str(rule.window),
        "since": since.isoformat(),
    }
    name = f"limits[{index}].max_per_window"
    if so_far + mv.amount <= limit:
        return Verdict(True, name, f"{mv.op} {amount_s} {rule.target} fits: {used_s} of {limit_s} used "
                       f"in the last {rule.window}", details)
    return Verdict(False, name, f"{mv.op} {amount_s} {rule.target} would exceed {limit_s} per {rule.window}: "
                   f"{used_s} already used, {details['headroom']} left", details)


def _used(conn: Connection, policy: Policy, rule: LimitRule, since: datetime) -> Decimal:
    return used(
        conn, op=rule.op, asset=rule.target, since=since, account=rule.account,
        destinations=limit_destinations(policy, rule) if rule.destination is not None else None,
    )


# --------------------------------------------------------------------------- headroom


@dataclass(frozen=True)
class Headroom:
    """What is left under one velocity cap at a given time."""

    rule: str
    op: str
    asset: str
    window: str
    limit: str
    used: str
    remaining: str
    account: str | None = None
    destination: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def headroom(conn: Connection, policy: Policy, *, at: datetime) -> list[Headroom]:
    """Used and remaining amounts for every ``max_per_window`` limit at ``at``. Read-only.

    Raises:
        ValueError: ``at`` is naive.
    """
    out = []
    for index, rule in enumerate(policy.limits):
        if rule.max_per_window is None or rule.window_delta is None:
            continue
        so_far = _used(conn, policy, rule, utc(at) - rule.window_delta)
        out.append(Headroom(
            rule=f"limits[{index}].max_per_window", op=rule.op, asset=rule.target, window=str(rule.window),
            limit=format_amount(rule.max_per_window), used=format_amount(so_far),
            remaining=format_amount(max(rule.max_per_window - so_far, Decimal(0))),
            account=rule.account, destination=rule.destination,
        ))
    return out


# --------------------------------------------------------------------------- approval tiers


def required_approval(policy: Policy, op: str, params: Mapping[str, Any]) -> list[ApprovalTier]:
    """The approval tiers a step needs: amount above ``above`` (strictly), or maybe (amount unknown).

    A tier whose asset or amount is still a template comes back with ``conditional=True``:
    it applies if the run's value turns out above the threshold.
    """
    found: dict[str, ApprovalTier] = {}
    for mv in movements(op, params):
        for index, tier in enumerate(policy.approval_tiers):
            if tier.op != mv.op or (mv.asset is not None and tier.target != mv.asset):
                continue
            conditional = mv.asset is None or mv.amount is None
            if not conditional and mv.amount is not None and mv.amount <= tier.above:
                continue
            rule = f"approval_tiers[{index}]"
            if rule in found and not found[rule].conditional:
                continue
            found[rule] = ApprovalTier(
                rule=rule, op=tier.op, asset=tier.target, above=tier.above, quorum=tier.quorum,
                group=tier.group, amount=None if conditional else mv.amount, conditional=conditional,
            )
    return list(found.values())


def check_tiers(tiers: Sequence[ApprovalTier], guards: Sequence[ApprovalGuard]) -> list[str]:
    """Problems with the approval steps guarding a step (those before it); empty means satisfied.

    A guard satisfies a tier when its quorum is at least the tier's (default 1) and, for a
    group tier, every approver it admits belongs to the group (``group:NAME`` entries must
    name that group; users must be members per ``ApprovalGuard.members``), so whatever
    quorum is reached is reached by the group.
    """
    problems = []
    for tier in tiers:
        reasons = [_shortfall(guard, tier) for guard in guards]
        if any(reason is None for reason in reasons):
            continue
        amount = "" if tier.amount is None else f" (here {format_amount(tier.amount)})"
        when = " if its amount is above" if tier.conditional else " above"
        why = "there is no approval step before it" if not guards else "; ".join(
            f"approval step {i + 1}: {r}" for i, r in enumerate(reasons))
        problems.append(
            f"{tier.rule}: {tier.op} of {tier.asset}{when} {format_amount(tier.above)}{amount} needs an "
            f"approval step before it with {tier.requirement()}; {why}"
        )
    return problems


def _shortfall(guard: ApprovalGuard, tier: ApprovalTier) -> str | None:
    need = tier.quorum or 1
    if guard.quorum < need:
        return f"quorum {guard.quorum} is below {need}"
    if tier.group is None:
        return None
    if not guard.approvers and not guard.groups:
        return "it lists no approvers"
    others = sorted(g for g in guard.groups if g != tier.group)
    if others:
        return f"group:{others[0]} may approve, and is not {tier.group}"
    outsiders = sorted(u for u in guard.approvers if tier.group not in guard.members.get(u, ()))
    if outsiders:
        return f"{outsiders[0]} may approve and is not known to be in group {tier.group}"
    return None


# --------------------------------------------------------------------------- helpers


def denials(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts that deny."""
    return [v for v in verdicts if not v.allowed]


def raise_if_denied(verdicts: Sequence[Verdict]) -> None:
    """Raise for the first denial.

    Raises:
        PolicyDenied: with the rule, the message and the numbers.
    """
    for verdict in denials(verdicts):
        raise PolicyDenied(verdict.rule or "policy", verdict.message, dict(verdict.details))
