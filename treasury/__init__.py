"""treasury: a workflow runner for a treasury desk on HashKey PRO.

The public surface is small on purpose: the error tree, the shared vocabulary and the
settings. Everything else is reached through its module.
"""

from __future__ import annotations

from treasury.errors import (
    ExchangeError,
    OperationNotPermitted,
    OutcomeUnknown,
    ParameterError,
    PolicyDenied,
    TreasuryError,
    WorkflowInvalid,
)
from treasury.models import ExecState, Permission, RateClass, RetryStrategy, RunState, StepState
from treasury.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ExchangeError",
    "ExecState",
    "OperationNotPermitted",
    "OutcomeUnknown",
    "ParameterError",
    "Permission",
    "PolicyDenied",
    "RateClass",
    "RetryStrategy",
    "RunState",
    "Settings",
    "StepState",
    "TreasuryError",
    "WorkflowInvalid",
    "__version__",
]
