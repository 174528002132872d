"""Policy guardrails: transaction limits, velocity caps, destination allowlists, windows, approval tiers.

Load ``config/policy.yaml`` with ``load_policy``; check steps with ``evaluate_static``
(validate), ``evaluate`` (run start, dry-run, approval request) and ``reserve`` (just
before sending), then ``release`` or ``confirm``. Every function returns verdicts for the
caller to audit; none raises for a denial (``raise_if_denied`` does, on request).

Note: ``treasury.policy.evaluate`` as an *attribute* is the function (re-exported for
``from treasury.policy import evaluate``), which shadows the submodule of that name;
``from treasury.policy.evaluate import reserve`` still imports from the module, but
``import treasury.policy.evaluate as m`` or a ``mock.patch`` target through it gets the function.
"""

from __future__ import annotations

from treasury.policy.evaluate import (
    Headroom,
    check_tiers,
    confirm,
    denials,
    evaluate,
    evaluate_static,
    headroom,
    raise_if_denied,
    recheck,
    release,
    required_approval,
    reserve,
)
from treasury.policy.model import (
    ApprovalGuard,
    ApprovalTier,
    Policy,
    Verdict,
    check_environment,
    load_policy,
    parse_policy,
)

__all__ = [
    "ApprovalGuard",
    "ApprovalTier",
    "Headroom",
    "Policy",
    "Verdict",
    "check_environment",
    "check_tiers",
    "confirm",
    "denials",
    "evaluate",
    "evaluate_static",
    "headroom",
    "load_policy",
    "parse_policy",
    "raise_if_denied",
    "recheck",
    "release",
    "required_approval",
    "reserve",
]
