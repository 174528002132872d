"""What the run service's parts share: the run context, the dispatcher, and what each part needs
from the service, as small protocols.

``votes``, ``signing``, ``views`` and ``steps`` take the service as an argument; they name here
the little of it they use, so none of them imports ``service`` (which imports them all).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from treasury.audit.log import AuditSink
from treasury.clock import Clock
from treasury.engine import machine as eng
from treasury.people.keyring import Keyring
from treasury.people.watch import PeopleWatch
from treasury.policy import Policy
from treasury.policy.watch import PolicyWatch

"""``treasury.audit.append_event``: appends one event to the hash chain in the caller's transaction."""


class StepExecuting(Protocol):
    """Executes one dispatched step: what a dispatcher drives (the run service)."""

    def execute_step(self, run_id: str, step_id: str) -> None: ...


class Dispatcher(Protocol):
    """Carries out ``Dispatch`` commands: inline (a local queue) or on Celery workers."""

    def dispatch(self, run_id: str, step_id: str) -> None: ...

    def flush(self, service: StepExecuting) -> None: ...


class InlineDispatcher:
    """Runs dispatched steps in this process, one after another, when the caller flushes."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, str]] = deque()
        self._draining = False

    def dispatch(self, run_id: str, step_id: str) -> None:
        self.queue.append((run_id, step_id))

    def flush(self, service: StepExecuting) -> None:
        if self._draining:  # a step finishing dispatches the next; the outer loop runs it
            return
        self._draining = True
        try:
            while self.queue:
                run_id, step_id = self.queue.popleft()
                service.execute_step(run_id, step_id)
        finally:
            self._draining = False


@dataclass
class RunContext:
    """What the service needs besides the database: config, the executor and the clock."""

    keys: Mapping[str, Any]  # name -> KeySpec
    approvers: Any  # treasury.people.approvers.Approvers (or the registry that extends it)
    policy: Policy | None
    executor: Any  # treasury.execution.StepExecutor (None where no step is executed)
    dispatcher: Dispatcher
    clock: Clock
    step_start_limit: int = 5  # Settings.step_start_limit
    worker_actor: str = field(default_factory=lambda: f"worker:{socket.gethostname()}")
    # keeps ``policy`` equal to its file (None: fixed policy)
    policy_watch: PolicyWatch | None = None
    # demo keys that sign for people (simulator only; else None)
    keyring: Keyring | None = None
    decision_max_age: float = 600.0  # Settings.decision_max_age (seconds)
    # where scheduled runs' workflow files live (a scheduled run is backed by its file, not a person)
    workflows_dir: Path | None = None
    # keeps ``approvers`` equal to people.yaml (None: fixed)
    people_watch: PeopleWatch | None = None


class RunHost(Protocol):
    """The service as signed decisions see it: the database, the context, the clock and the audit."""

    engine: Engine
    ctx: RunContext

    @property
    def audit_fn(self) -> AuditSink: ...

    def now(self) -> datetime: ...

    def audit(self, conn: Connection, type: str, actor: str, *, run_id: str | None = None,
              step_id: str | None = None, payload: Mapping[str, Any] | None = None) -> None: ...

    def refresh_people(self) -> None: ...


class ParamsHost(RunHost, Protocol):
    """Adds what reads a workflow's steps: specs, parameters and accounts."""

    def spec_of(self, run: Any) -> Any: ...

    def source_spec_of(self, run: Any) -> Any: ...

    def instances(self, loaded: Any, stored_inputs: Mapping[str, Any]) -> list[Any]: ...

    def account_of(self, key_profile: str | None) -> str | None: ...

    def resolve_params(self, run: Any, step: Any, results: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def bind_params(self, run: Any, step: Any, results: Mapping[str, Any]) -> dict[str, Any]: ...

    def check_quorums(self, spec: Any, requested_by: str) -> None: ...


class EventHost(ParamsHost, Protocol):
    """Adds what moves a run on: applying engine events and dispatching what they command."""

    def step_results(self, conn: Connection, run_id: str) -> dict[str, Any]: ...

    def key_binding(self, key_profile: str | None) -> dict[str, Any]: ...

    def apply_event(self, conn: Connection, run: Any, event: eng.Event, *, actor: str,
                    error: str | None = None, result_digest: str | None = None,
                    step_values: Mapping[str, Any] | None = None) -> list[tuple[str, str]]: ...

    def carry_out(self, pairs: Iterable[tuple[str, str]]) -> None: ...

    def finish_entry(self) -> None: ...

    def state_of(self, run_id: str) -> str: ...

    def refresh_policy(self, conn: Connection | None = None) -> bool: ...


__all__ = ["AuditSink", "Dispatcher", "EventHost", "InlineDispatcher", "ParamsHost", "RunContext", "RunHost",
           "StepExecuting"]
