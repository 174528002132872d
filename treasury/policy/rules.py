"""Pure rule checks: which limits apply to a movement, per-transaction limits, allowlists, windows.

Nothing here touches the database or the clock; ``evaluate`` adds the velocity caps.

``strict`` is the mode used immediately before sending: every parameter is final, and a
rule that cannot be decided (its account is not known, the amount is missing) denies.
Otherwise (validation, run start, dry-run) a rule whose inputs are still templates is
skipped: it will be decided later.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import Enum

from treasury.models import format_amount
from treasury.operations.registry import REGISTRY
from treasury.policy.model import DAYS, LimitRule, Policy, Verdict, WindowRule
from treasury.policy.movements import Movement, normalize_destination


class Match(Enum):
    YES = "yes"
    NO = "no"
    UNDECIDED = "undecided"  # the movement's asset, account or destination is not known yet


def limit_destinations(policy: Policy, rule: LimitRule) -> set[str]:
    """The destination keys a limit's ``destination`` stands for: itself, or the entries with that label."""
    assert rule.destination is not None
    keys = {normalize_destination(rule.destination)}
    for entry in policy.destinations.for_op(rule.op) or ():
        if entry.label == rule.destination:
            keys.add(normalize_destination(entry.key))
    return keys


def match_limit(policy: Policy, rule: LimitRule, mv: Movement) -> Match:
    """Whether ``rule`` applies to ``mv``."""
    if rule.op != mv.op:
        return Match.NO
    if mv.asset is None:
        return Match.UNDECIDED
    if rule.target != mv.asset:
        return Match.NO
    if rule.account is not None:
        if mv.account is None:
            return Match.UNDECIDED
        if mv.account != rule.account:
            return Match.NO
    if rule.destination is not None:
        if mv.destination is None:
            return Match.UNDECIDED
        if mv.destination not in limit_destinations(policy, rule):
            return Match.NO
    return Match.YES


def applicable_limits(
    policy: Policy, mv: Movement, *, strict: bool
) -> Iterator[tuple[int, LimitRule] | Verdict]:
    """Each limit that applies to ``mv``, or a deny verdict when ``strict`` and it cannot be decided."""
    for index, rule in enumerate(policy.limits):
        match = match_limit(policy, rule, mv)
        if match is Match.YES:
            yield index, rule
        elif match is Match.UNDECIDED and strict:
            yield Verdict(
                False, f"limits[{index}]",
                f"{rule.op} {rule.target}: cannot tell whether this limit applies ({_missing(rule, mv)})",
                {"op": mv.op, "asset": mv.asset or ""},
            )


def _missing(rule: LimitRule, mv: Movement) -> str:
    if mv.asset is None:
        return "the step names no asset"
    if rule.account is not None and mv.account is None:
        return f"the rule is for account {rule.account} and the step's account is not known"
    return f"the rule is for destination {rule.destination} and the step has none"


def amount_problem(index: int, rule: LimitRule, mv: Movement, part: str, *, strict: bool) -> Verdict | None:
    """A deny verdict when the amount a rule needs is bad (or, when strict, unknown); else None."""
    if mv.amount_error is not None:
        return Verdict(False, f"limits[{index}].{part}", f"{mv.op} {mv.asset}: {mv.amount_error}",
                       {"op": mv.op, "asset": mv.asset or ""})
    if mv.amount is None and strict:
        return Verdict(False, f"limits[{index}].{part}",
                       f"{mv.op} {mv.asset}: the amount ({mv.amount_param}) is not known at send time",
                       {"op": mv.op, "asset": mv.asset or ""})
    return None


def per_tx_verdict(index: int, rule: LimitRule, mv: Movement, *, strict: bool) -> Verdict | None:
    """``max_per_tx`` of an applicable limit: allowed up to and including the limit.

    None when the rule has no per-transaction maximum or (not strict) the amount is unknown.
    """
    if rule.max_per_tx is None:
        return None
    problem = amount_problem(index, rule, mv, "max_per_tx", strict=strict)
    if problem is not None or mv.amount is None:
        return problem
    amount, limit = format_amount(mv.amount), format_amount(rule.max_per_tx)
    details = {"op": mv.op, "asset": rule.target, "amount": amount, "limit": limit}
    if mv.amount <= rule.max_per_tx:
        message = f"{mv.op} {amount} {rule.target} is within the per-transaction limit of {limit}"
        return Verdict(True, f"limits[{index}].max_per_tx", message, details)
    message = f"{mv.op} {amount} {rule.target} exceeds the per-transaction limit of {limit}"
    return Verdict(False, f"limits[{index}].max_per_tx", message, details)


def destination_verdicts(policy: Policy, mv: Movement, *, strict: bool) -> list[Verdict]:
    """The allowlist for ``mv.op``, if the policy has one: the destination must be on it."""
    entries = policy.destinations.for_op(mv.op)
    if entries is None:
        return []
    rule = f"destinations.{mv.op}"
    money = REGISTRY[mv.op].money
    if money is None:
        return []
    needed = money.allowlist_needs
    if any(entry.names_asset for entry in entries):
        needed = (*needed, "asset")
    shown, details = money.allowlist_text(mv)
    if not mv.known(*needed) and not strict:
        return []
    for index, entry in enumerate(entries):
        if entry.matches(mv):
            return [Verdict(True, f"{rule}[{index}]", f"{mv.op} {shown} is on the allowlist as "
                            f"{entry.label!r}", {**details, "label": entry.label})]
    return [Verdict(False, rule, f"{mv.op} {shown} is refused: not on the allowlist", details)]


def in_window(window: WindowRule, at: datetime) -> bool:
    """Whether ``at`` falls inside ``window``; local time comes from zoneinfo, so DST is handled.

    When the end is not after the start (``22:00-06:00``), the window runs past midnight and
    belongs to the day it starts on.
    """
    local = at.astimezone(window.zone)
    now = local.timetz().replace(tzinfo=None)
    start, end = window.start, window.end
    today = DAYS[local.weekday()]
    if end is None or start < end:
        return today in window.days and now >= start and (end is None or now < end)
    yesterday = DAYS[(local - timedelta(days=1)).weekday()]
    return (today in window.days and now >= start) or (yesterday in window.days and now < end)


def window_verdicts(policy: Policy, op: str, at: datetime) -> list[Verdict]:
    """Windows for ``op`` (spot_order also covers batch legs): allowed if any window is open."""
    if at.tzinfo is None:
        raise ValueError("at must be a timezone-aware datetime")
    mine = [(i, w) for i, w in enumerate(policy.windows) if w.op == op]
    if not mine:
        return []
    for index, window in mine:
        if in_window(window, at):
            details = _window_details(window, at)
            return [Verdict(True, f"windows[{index}]", f"{op} is inside its window", details)]
    index, window = mine[0]
    rule = ",".join(f"windows[{i}]" for i, _ in mine)
    local = at.astimezone(window.zone)
    when = "; ".join(f"{','.join(w.days)} {w.hours} {w.timezone}" for _, w in mine)
    message = (f"{op} is outside its allowed window ({when}); "
               f"it is {DAYS[local.weekday()]} {local:%H:%M} in {window.timezone}")
    return [Verdict(False, rule, message, _window_details(window, at))]


def _window_details(window: WindowRule, at: datetime) -> dict[str, str]:
    local = at.astimezone(window.zone)
    return {
        "days": ",".join(window.days),
        "hours": window.hours,
        "timezone": window.timezone,
        "local_time": local.isoformat(),
        "at": at.astimezone(UTC).isoformat(),
    }
