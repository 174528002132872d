"""Exactly-once execution of operation steps: records, reconciliation, retry policies, sweeper.

``StepExecutor.execute(StepRequest)`` is what the workflow driver calls for every operation
step; ``sweep`` picks up what crashed workers left behind; ``StepExecutor.resolve`` records a
person's decision on a step that needs attention.
"""

from __future__ import annotations

from treasury.execution.executor import (
    AuditSink,
    ClientProvider,
    ExecutionSettings,
    StepExecutor,
    StepOutcome,
    StepRequest,
)
from treasury.execution.ids import client_id_for, is_run_id, new_run_id
from treasury.execution.reconcile import Absent, Found, Inconclusive, Verdict
from treasury.execution.records import ExecRecord, LeaseLost, params_digest
from treasury.execution.retry import READ_POLICY, SEND_POLICY, RetryPolicy, poll
from treasury.execution.sweeper import Swept, sweep, sweep_records

__all__ = [
    "READ_POLICY",
    "SEND_POLICY",
    "Absent",
    "AuditSink",
    "ClientProvider",
    "ExecRecord",
    "ExecutionSettings",
    "Found",
    "Inconclusive",
    "LeaseLost",
    "RetryPolicy",
    "StepExecutor",
    "StepOutcome",
    "StepRequest",
    "Swept",
    "Verdict",
    "client_id_for",
    "is_run_id",
    "new_run_id",
    "params_digest",
    "poll",
    "sweep",
    "sweep_records",
]
