"""One step call's working context: the shared services, the step's legs, and their commits.

``Services`` is what every call of the executor shares (database, clock, audit, policy,
timing, retry policies). ``StepContext`` is one call working on one step under one lease
holder; the send and reconcile paths are plain functions that take it. Every change to a
record goes through ``StepContext.commit``: a compare-and-set under the lease, audited in the
same transaction, with the policy reservation settled when the step becomes final. While the
call holds its leases, a :class:`~treasury.execution.lease.LeaseKeeper` renews them (the
heartbeat), and :meth:`StepContext.before_sign` is the last check before a request is signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from treasury.audit import NewEvent, append_through
from treasury.audit.events import EXECUTION_STATE, RETRY_SCHEDULED
from treasury.audit.log import AuditSink
from treasury.clock import Clock
from treasury.execution import records as R
from treasury.execution.lease import LeaseKeeper, RenewingClock
from treasury.execution.outcomes import ExecutionSettings, StepOutcome, error_text, reason_text, settled
from treasury.execution.progress import NO_PROGRESS, ProgressListener, Wait, seconds_text
from treasury.execution.records import ExecRecord
from treasury.execution.retry import RetryPolicy
from treasury.keys import KeyProfile
from treasury.models import ExecState, StepState
from treasury.operations.params import Params
from treasury.operations.registry import OperationSpec
from treasury.store.db import durable_transaction

# seconds a request may be signed after its SENDING commit before ``sent_at`` is moved to the
# signing time (see StepContext.before_sign); far below any settle window
SIGN_SLACK = 0.5


def policy_api() -> Any:
    """``treasury.policy``, imported late: the policy package sits above the execution layer."""
    import treasury.policy as policy_api

    return policy_api


class Stop(Exception):
    """Leave the drive loop with this outcome (halt, lease lost, budget spent)."""

    def __init__(self, outcome: StepOutcome) -> None:
        self.outcome = outcome


@dataclass(frozen=True)
class Services:
    """What every step call shares; built from the executor's current attributes for each call."""

    engine: Engine
    clock: Clock
    settings: ExecutionSettings
    policy: Any | None
    audit: AuditSink
    read_policy: RetryPolicy
    send_policy: RetryPolicy
    progress: ProgressListener = NO_PROGRESS

    def load_step(self, run_id: str, step_id: str) -> list[ExecRecord]:
        """The step's execution records, in their own transaction."""
        with self.engine.begin() as conn:
            return R.load_step(conn, run_id, step_id)

    def event(self, type_: str, actor: str, run_id: str | None, step_id: str | None,
              payload: dict[str, Any]) -> None:
        """Append one audit event in its own transaction."""
        with self.engine.begin() as conn:
            self.audit(conn, type=type_, actor=actor, at=self.clock.now(), run_id=run_id, step_id=step_id,
                       payload=payload)

    def audit_all(self, conn: Connection, events: Sequence[NewEvent]) -> None:
        """Append ``events`` in order inside ``conn``'s transaction: as one batch (two
        statements) with the audit log's own appender, one by one through an injected one."""
        append_through(self.audit, conn, events)

    def retry_audit(self, actor: str, run_id: str, step_id: str, operation: str) -> Callable[[Any], None]:
        """A ``before_sleep`` hook that audits every scheduled retry as ``retry.scheduled``."""
        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            why = error_text(exc) if exc is not None else "retry"
            wait = float(state.upcoming_sleep)
            self.event(RETRY_SCHEDULED, actor, run_id, step_id, {
                "operation": operation, "attempt": state.attempt_number,
                "wait_seconds": round(wait, 3), "why": why})
            self.progress.waiting(Wait(
                f"retrying {operation}", f"attempt {state.attempt_number} failed ({why}); next try in "
                f"{seconds_text(wait)}", until=self.clock.time() + wait, run_id=run_id, step_id=step_id))
        return before_sleep

    def settle_policy(self, conn: Connection, run_id: str, step_id: str, at: Any,
                      legs: Sequence[ExecRecord] | None = None) -> None:
        """Confirm (any leg succeeded) or release (all failed) once every leg is settled;
        NEEDS_ATTENTION keeps the reservation until a person resolves the step. ``legs``: the
        step's records as this transaction wrote them (read from the database when None)."""
        if self.policy is None:
            return
        if legs is None:
            legs = R.load_step(conn, run_id, step_id)
        if not settled(legs):
            return
        if any(r.state is ExecState.SUCCEEDED for r in legs):
            policy_api().confirm(conn, run_id=run_id, step_id=step_id, at=at)
        else:
            policy_api().release(conn, run_id=run_id, step_id=step_id, at=at)


@dataclass
class StepContext:
    """One call working on one step: who acts, under which lease, with which client, until when."""

    svc: Services
    spec: OperationSpec
    run_id: str
    step_id: str
    actor: str
    holder: str
    client: Any
    profile: KeyProfile
    max_attempts: int
    send_until: float  # epoch seconds: no new send or rate-limit wait after this
    stop_at: float  # epoch seconds: hard end of this call
    legs: dict[str, ExecRecord]
    rate_waits: int = 0
    # client id -> digest of the parameters this step was asked (and approved) to send; a
    # record whose stored parameters no longer hash to it is never sent
    expected: dict[str, str] = field(default_factory=dict)
    # client id -> the leg's parameters as validated when the step was prepared (what the
    # client sends); a leg without one is never sent
    checked: dict[str, Params] = field(default_factory=dict)
    # the step's parameters as requested (without client ids): what its policy reservation
    # was evaluated on, and what a later send is checked against again
    params: Mapping[str, Any] = field(default_factory=dict)
    # the policy reserved this step moments ago in this call: its first send needs no re-check
    policy_fresh: bool = False
    not_after: float | None = None  # the step's timeout (see StepRequest.not_after)
    # ``legs`` holds every record of the step (the sweeper's pass holds one leg only): then
    # whether the step is settled is read from them, not from the database again
    all_legs: bool = True
    timeout_text: str | None = None
    keeper: LeaseKeeper = field(init=False)
    clock: RenewingClock = field(init=False)  # the clock for this call's waits: it renews first

    def __post_init__(self) -> None:
        settings = self.svc.settings
        self.keeper = LeaseKeeper(self.svc.engine, self.svc.clock, self.holder,
                                  lease_seconds=settings.lease_seconds, renew_seconds=settings.renew_seconds,
                                  legs=lambda: list(self.legs.values()))
        self.clock = RenewingClock(self.keeper)

    @property
    def noun(self) -> str:
        """What a person calls this step's request ("withdrawal", "internal transfer")."""
        return self.spec.what

    def report(self, what: str, detail: str = "", until: float | None = None) -> None:
        """Tell the progress listener what this step waits for now."""
        self.svc.progress.waiting(Wait(what, detail, until, run_id=self.run_id, step_id=self.step_id))

    @property
    def client_ids(self) -> list[str]:
        return [r.client_id for r in sorted(self.legs.values(), key=lambda r: r.leg)]

    def running(self, error: str) -> StepOutcome:
        """A RUNNING outcome for this step: it must be continued later."""
        return StepOutcome(StepState.RUNNING, error=error, client_ids=self.client_ids)

    def reason(self, rec: ExecRecord, why: str, *, story: str | None = None) -> str:
        """The plain-language reason a person reads for this step's record ``rec``."""
        return reason_text(self.spec, self.run_id, self.step_id, rec, why, story=story)

    def event(self, type_: str, payload: dict[str, Any]) -> None:
        """Append one audit event for this step in its own transaction."""
        self.svc.event(type_, self.actor, self.run_id, self.step_id, payload)

    def retry_audit(self, operation: str) -> Callable[[Any], None]:
        """A ``before_sleep`` hook auditing retries of ``operation`` for this step."""
        return self.svc.retry_audit(self.actor, self.run_id, self.step_id, operation)

    def read(self, operation: str, params: dict[str, Any]) -> Any:
        """One read on the exchange with the step's key, under the read retry policy (retries
        audited); returns the answer's JSON or raises."""
        return self.svc.read_policy.call(
            lambda: self.client.call(operation, self.profile, params).data, self.clock,
            before_sleep=self.retry_audit(operation))

    def claim(self) -> None:
        """Take the lease on every unfinished leg and start its heartbeat.

        Raises:
            LeaseLost: another worker holds one of them.
        """
        at = self.svc.clock.now()
        with self.keeper.lock:
            claimed: dict[str, ExecRecord] = {}
            # records this call has just inserted are born leased to it: nothing to write
            ours = {cid: rec for cid, rec in self.legs.items() if not rec.terminal and rec.lease_owner == self.holder
                    and rec.lease_until is not None and rec.lease_until > at}
            claimed.update(ours)
            todo = [(cid, rec) for cid, rec in self.legs.items() if not rec.terminal and cid not in ours]
            if todo:
                with self.svc.engine.begin() as conn:
                    for cid, rec in todo:
                        claimed[cid] = R.claim(conn, rec, owner=self.holder, at=at,
                                               lease_seconds=self.svc.settings.lease_seconds)
            for cid, fresh in claimed.items():
                self.legs[cid] = fresh
                self.keeper.note(fresh)
        self.keeper.start()

    def release(self) -> None:
        """Stop the heartbeat and give back the lease on every leg this call holds."""
        self.keeper.stop()
        at = self.svc.clock.now()
        with self.keeper.lock:
            held = [cid for cid, rec in self.legs.items() if rec.lease_owner == self.holder]
            if not held:
                return  # every leg finished: its last change gave the lease up
            with self.svc.engine.begin() as conn:
                for cid in held:
                    R.release_lease(conn, cid, owner=self.holder, at=at)

    def wait(self, seconds: float) -> None:
        """Wait on the clock with the leases renewed before (and, for a long wait, during) it."""
        self.keeper.wait(seconds)

    def before_sign(self, cids: Sequence[str]) -> Callable[[float], None]:
        """The last check before the request for ``cids`` is signed, given the signing time.

        The signature's timestamp is fixed when this runs: the exchange refuses the request
        once recvWindow has passed after it, however long this process stalls afterwards. So
        the lease is checked *for that timestamp*. When the lease may have run out by then (the
        heartbeat saw it lost, or the lease we last wrote ends before the signing time), or
        time passed since SENDING was committed (a rate-limit or 2FA wait, a stalled process),
        ``sent_at`` is moved to the signing time by a compare-and-set on the version and the
        holder (which also renews the lease):

        - a worker whose records were taken over meanwhile fails that write (``LeaseLost``)
          and sends nothing: the new holder reconciles the request as it found it;
        - one that still holds them (nobody claimed them: a claim moves the version) sends,
          and the settle window counts from when the request could really have left.
        """
        def check(signed_at: float) -> None:
            at = datetime.fromtimestamp(signed_at, tz=UTC)
            legs = [self.legs[c] for c in cids]
            if not self.keeper.held(cids, at) or any(
                    r.sent_at is None or signed_at - r.sent_at.timestamp() > SIGN_SLACK for r in legs):
                self.commit([(r, {"sent_at": at}) for r in legs], durable=True)
        return check

    def commit(
        self,
        changes: Sequence[tuple[ExecRecord, dict[str, Any]]],
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        *,
        durable: bool = False,
    ) -> list[ExecRecord]:
        """Apply ``changes`` (CAS under our lease) and ``events`` in one transaction.

        State changes are audited as ``execution.state``; when the step becomes final the
        policy reservation is confirmed or released in the same transaction. ``durable``: the
        commit guards a request about to be sent, so it must survive a power loss
        (``durable_transaction``).

        Raises:
            LeaseLost: another worker took a record over; nothing of this commit is kept.
        """
        with self.keeper.lock:
            return self._commit(changes, events, durable)

    def _commit(
        self,
        changes: Sequence[tuple[ExecRecord, dict[str, Any]]],
        events: Sequence[tuple[str, dict[str, Any]]],
        durable: bool,
    ) -> list[ExecRecord]:
        svc = self.svc
        at = svc.clock.now()
        out: list[ExecRecord] = []
        audited = [NewEvent(type_, self.actor, at, self.run_id, self.step_id, payload) for type_, payload in events]
        with durable_transaction(svc.engine) if durable else svc.engine.begin() as conn:
            # the legs as this call holds them: under our lease nobody else can have moved them
            # (a change that finds otherwise fails its compare-and-set and rolls all of this back)
            was_settled = svc.policy is None or settled(
                list(self.legs.values()) if self.all_legs else R.load_step(conn, self.run_id, self.step_id))
            for rec, values in changes:
                fresh = R.change(conn, rec, owner=self.holder, at=at, lease_seconds=svc.settings.lease_seconds,
                                 **values)
                if fresh.state is not rec.state:
                    audited.append(NewEvent(EXECUTION_STATE, self.actor, at, self.run_id, self.step_id, {
                        "client_id": rec.client_id, "from": rec.state.value, "to": fresh.state.value,
                        "attempts": fresh.attempts, "exchange_order_id": fresh.exchange_order_id,
                        "error": fresh.error, "reason": fresh.reason}))
                out.append(fresh)
            # after the records' own writes: the head stays locked only until the commit
            svc.audit_all(conn, audited)
            if not was_settled:
                legs = {**self.legs, **{r.client_id: r for r in out}} if self.all_legs else None
                svc.settle_policy(conn, self.run_id, self.step_id, at, None if legs is None else list(legs.values()))
        for fresh in out:
            self.legs[fresh.client_id] = fresh
            self.keeper.note(fresh)
        return out
