"""Audit event types and actor names: the shared vocabulary of the audit log.

Event types are dotted strings, ``<area>.<what happened>``. Actors are a user name (from
people.yaml, by signature), ``scheduler``, ``worker:<host>`` or ``system``.
"""

from __future__ import annotations

# runs and steps
RUN_REQUESTED = "run.requested"
RUN_STATE = "run.state"
STEP_STATE = "step.state"
STEP_DISPATCHED = "step.dispatched"
STEP_PARAMS = "step.params"  # a step's parameters, resolved at its first start
STEP_RESOLVED = "step.resolved"  # a person settled a NEEDS_ATTENTION step
STEP_START_LIMIT = "step.start_limit"  # a step kept dying mid-way and was parked for a person
STEP_RESULT_CHANGED = "step.result_changed"  # a stored result a template reads is not the audited one
STEP_PARAMS_CHANGED = "step.params_changed"  # stored parameters are not what the templates resolve to

# policy
POLICY_DECISION = "policy.decision"
POLICY_CHANGED = "policy.changed"

# approvals
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_GRANTED = "approval.granted"
APPROVAL_REJECTED = "approval.rejected"
APPROVAL_EXPIRED = "approval.expired"
APPROVAL_REFUSED = "approval.refused"  # a vote the rules refused (requester, unknown approver…)
DIGEST_MISMATCH = "approval.digest_mismatch"

# talking to the exchange
REQUEST_SENT = "request.sent"
RESPONSE_RECEIVED = "response.received"
RETRY_SCHEDULED = "retry.scheduled"
RECONCILE_LOOKUP = "reconcile.lookup"
RECONCILE_VERDICT = "reconcile.verdict"
EXECUTION_STATE = "execution.state"
DUPLICATE_SUPPRESSED = "execution.duplicate_suppressed"
EXECUTION_BASELINE = "execution.baseline"  # balances noted before a transfer no lookup can find
EXCHANGE_RATE_LIMITED = "exchange.rate_limited"
EXCHANGE_BANNED = "exchange.banned"
EXCHANGE_RESUMED = "exchange.resumed"

# schedules
SCHEDULE_FIRED = "schedule.fired"
SCHEDULE_MISSED = "schedule.missed"
SCHEDULE_HELD = "schedule.held"  # due while the workflow file was invalid; catch-up decides once mended
SCHEDULE_INVALID = "schedule.invalid"
SCHEDULE_PAUSED = "schedule.paused"
SCHEDULE_RESUMED = "schedule.resumed"

ALL_TYPES: frozenset[str] = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)

# actors that are not people
SCHEDULER = "scheduler"
SYSTEM = "system"


def worker_actor(host: str) -> str:
    """The actor name of a worker process on ``host``: ``worker:<host>``."""
    return f"worker:{host}"
