"""Which role may see which page and take which action: the console's one role matrix.

Roles come from ``people.yaml``: ``requester``, ``approver``, ``operator``, ``auditor``.
A page or action the person's roles do not allow is a 403.
"""

from __future__ import annotations

EVERYONE = frozenset({"requester", "approver", "operator", "auditor"})

PAGES: dict[str, frozenset[str]] = {
    "inbox": frozenset({"approver"}),
    "runs": EVERYONE,
    "run": EVERYONE,
    "attention": frozenset({"operator", "auditor"}),
    "schedules": EVERYONE,
    "audit": frozenset({"operator", "auditor"}),
    "exchange": frozenset({"operator", "auditor"}),
}

# the decision kinds the console makes, and the role each needs (as at the door)
ACTIONS: dict[str, frozenset[str]] = {
    "approve": frozenset({"approver"}),
    "reject": frozenset({"approver"}),
    "resolve": frozenset({"operator"}),
    "schedule.pause": frozenset({"operator"}),
    "schedule.resume": frozenset({"operator"}),
    "exchange.resume": frozenset({"operator"}),
}


def allowed(roles: frozenset[str] | set[str], what: str) -> bool:
    """Whether holders of ``roles`` may open page ``what`` or take action ``what``."""
    need = PAGES.get(what) or ACTIONS.get(what)
    return need is not None and bool(need & set(roles))


def first_page(roles: frozenset[str] | set[str]) -> str:
    """Where a person lands after sign-in: the inbox for approvers, else the runs."""
    return "/inbox" if allowed(roles, "inbox") else "/runs"
