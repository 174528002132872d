"""The step executor: exactly one effect per money-moving step, or a person decides.

For an operation with a client id (docs/reference.md section 5)::

    PREPARED ─commit─▶ SENDING ─2xx─▶ SUCCEEDED
                          ├─definite rejection──────────▶ FAILED
                          ├─not sent / 429 / halted─────▶ PREPARED (nothing happened)
                          └─5xx / timeout / reset / dup─▶ UNKNOWN ─reconcile─┬─found──▶ SUCCEEDED
                                                                             ├─absent─▶ PREPARED ▶ re-send
                                                                             └─deadline▶ NEEDS_ATTENTION

Rules that make it exactly-once:

- The client id is deterministic (run, step, leg) and written in the PREPARED row, in the
  same transaction as the policy reservation, before anything is sent.
- Every change is a compare-and-set under a lease; a second worker (redelivery, two
  processes) finds the lease held and returns RUNNING without touching the exchange.
- SENDING is committed (with the audit event) before the request goes out; a record found
  in SENDING or UNKNOWN is only ever reconciled, never re-sent blindly.
- A re-send reuses the client id, and only after lookups prove the request absent and the
  settle window has passed; for VA withdrawals absence must be shown by two lookups.

Reads and other operations without a client id run under the read retry policy and are
audited the same way (``request.sent`` / ``response.received``).

This module owns the public API and the drive loop; the parts it drives live beside it:
``preparation`` (legs, client ids, PREPARED rows with the policy reservation), ``sending``
(the send path and its answers), ``reconciler`` (acting on lookup verdicts), ``context``
(the per-call context and its audited compare-and-set commits) and ``outcomes`` (requests,
outcomes, and the texts a person reads).
"""

from __future__ import annotations

import contextvars
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import Engine

from treasury.audit import append_event
from treasury.audit.events import DUPLICATE_SUPPRESSED, REQUEST_SENT, RESPONSE_RECEIVED, STEP_RESOLVED
from treasury.clock import Clock
from treasury.errors import Banned, ExchangeHalted, ParameterError, RateLimited, RunStateError, TreasuryError
from treasury.execution import records as R
from treasury.execution.context import AuditSink, Services, StepContext, Stop
from treasury.execution.outcomes import (
    HALT_HINT,
    RESOLVE_HINT,
    ExecutionSettings,
    StepOutcome,
    StepRequest,
    error_payload,
    error_text,
    halt_message,
    outcome_of,
    resolve_hint,
    sent_payload,
)
from treasury.execution.preparation import RecordsVanished, legs_for, prepare
from treasury.execution.progress import NO_PROGRESS, ProgressListener, Wait, seconds_text
from treasury.execution.reconciler import reconcile_pass
from treasury.execution.records import LeaseLost
from treasury.execution.retry import READ_POLICY, SEND_POLICY, poll
from treasury.execution.sending import send
from treasury.keys import KeyProfile
from treasury.models import ExecState, RetryStrategy, StepState
from treasury.observe import context as log_context
from treasury.observe import metrics
from treasury.operations.registry import OperationSpec, get_operation, parse_params

__all__ = [
    "HALT_HINT",
    "RESOLVE_HINT",
    "AuditSink",
    "ClientProvider",
    "ExecutionSettings",
    "StepExecutor",
    "StepOutcome",
    "StepRequest",
]

ClientProvider = Callable[[str], tuple[Any, KeyProfile]]  # profile name -> (HashKeyClient, profile)


def _default_owner() -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}"[:80]


def _default_audit() -> AuditSink:
    return append_event


class StepExecutor:
    """Runs operation steps against the exchange with exactly-once execution records.

    Args:
        engine: the database holding ``execution_records`` and the audit log.
        clients: key profile name -> (client, resolved profile).
        clock: every timestamp, lease and wait comes from it.
        settings: reconciliation timing.
        policy: a loaded policy for ``treasury.policy.reserve``; None means no policy (a library
            caller's choice: the runtime never sends a money-moving step without a policy file,
            see ``RunService.execute_step`` and ``treasury.policy.watch``).
        audit: ``append_event``-compatible function (default: ``treasury.audit.append_event``).
        owner: lease owner prefix; each call adds a random suffix so two calls never share a lease.
        progress: told what each step waits for (default: nobody).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clients: ClientProvider,
        clock: Clock,
        settings: ExecutionSettings = ExecutionSettings(),
        policy: Any | None = None,
        audit: AuditSink | None = None,
        owner: str | None = None,
        progress: ProgressListener = NO_PROGRESS,
    ) -> None:
        self.engine = engine
        self.clients = clients
        self.clock = clock
        self.settings = settings
        self.policy = policy
        self.audit = audit if audit is not None else _default_audit()
        self.owner = owner or _default_owner()
        self.progress = progress
        self.read_policy = READ_POLICY.with_limits(budget_seconds=settings.read_retry_seconds)
        self.send_policy = SEND_POLICY.with_limits(max_attempts=max(1, settings.send_retry_attempts))

    # ================================================================== public

    def execute(self, req: StepRequest) -> StepOutcome:
        """Run one step to SUCCEEDED, FAILED or NEEDS_ATTENTION (RUNNING: try again later).

        Never raises for exchange, policy or parameter problems: they become the outcome.
        Raises only for database failures and programming errors.
        """
        # the step's log lines carry its ids; what is bound inside dies with the copy
        outcome = contextvars.copy_context().run(self._execute_bound, req)
        metrics.step_finished(req.operation, outcome.state.value)
        return outcome

    def _execute_bound(self, req: StepRequest) -> StepOutcome:
        log_context.bind(run_id=req.run_id, step_id=req.step_id, operation=req.operation)
        try:
            spec = get_operation(req.operation)
        except TreasuryError as exc:
            return StepOutcome(StepState.FAILED, error=str(exc))
        try:
            if spec.retry_strategy is RetryStrategy.SAFE and spec.client_id_field is None:
                return self._execute_safe(spec, req)
            return self._execute_recorded(spec, req)
        finally:
            self.progress.finished()

    def reconcile_record(self, client_id: str) -> ExecState:
        """One reconciliation pass for a SENDING/UNKNOWN record (the sweeper's entry point).

        Never sends: an absence proven after the settle window moves the record back to
        PREPARED, and the step's next execution sends it with the same client id. Returns
        the record's state afterwards (unchanged when another worker holds it).

        Raises:
            KeyError: no record has ``client_id``.
        """
        with self.engine.begin() as conn:
            rec = R.load(conn, client_id)
        if rec is None:
            raise KeyError(client_id)
        if rec.state not in R.IN_FLIGHT:
            return rec.state
        spec = get_operation(rec.operation)
        try:
            client, profile = self.clients(rec.key_profile)
        except TreasuryError:
            return rec.state  # the key cannot be loaded here; leave it for a worker that can
        holder = self._holder()
        now = self.clock.time()
        ctx = StepContext(self._services(), spec, rec.run_id, rec.step_id, f"system:{self.owner}"[:100], holder,
                          client, profile, max_attempts=1, send_until=now, stop_at=now,
                          legs={}, all_legs=False)  # the sweeper never waits
        ctx.legs[rec.client_id] = rec
        try:
            ctx.claim()
            reconcile_pass(ctx, [rec.client_id])
        except (LeaseLost, Stop):
            pass
        finally:
            ctx.release()
            self.progress.finished()
        with self.engine.begin() as conn:
            fresh = R.load(conn, client_id)
        assert fresh is not None
        return fresh.state

    def resolve(
        self, *, run_id: str, step_id: str, outcome: Literal["succeeded", "failed"], by: str, note: str
    ) -> None:
        """A person settles a step's NEEDS_ATTENTION records as succeeded or failed.

        Settling as failed also fails the legs still PREPARED: nothing was sent for them, and a
        worker about to send one loses its compare-and-set and sends nothing. Audited as
        ``step.resolved``; the policy reservation is confirmed (succeeded) or released
        (failed, when no leg succeeded).

        Raises:
            ParameterError: ``outcome`` is not "succeeded" or "failed", or ``by``/``note`` is empty.
            RunStateError: the step has no record waiting for a person.
        """
        if outcome not in ("succeeded", "failed"):
            raise ParameterError("outcome", f"must be succeeded or failed, got {outcome!r}")
        if not by.strip():
            raise ParameterError("by", "must name the person who resolves the step")
        if not note.strip():
            raise ParameterError("note", "must say why (what was checked on the exchange)")
        target = ExecState.SUCCEEDED if outcome == "succeeded" else ExecState.FAILED
        at = self.clock.now()
        with self.engine.begin() as conn:
            recs = R.load_step(conn, run_id, step_id)
            waiting = [r for r in recs if r.state is ExecState.NEEDS_ATTENTION
                       or (target is ExecState.FAILED and r.state is ExecState.PREPARED)]
            if not waiting:
                states = ", ".join(f"{r.client_id}={r.state.value}" for r in recs) or "no execution record"
                raise RunStateError(
                    f"step {step_id!r} of run {run_id} has nothing waiting for a person ({states})"
                )
            for rec in waiting:
                R.settle_by_person(conn, rec, state=target, note=f"resolved by {by}: {note}", at=at)
            self.audit(conn, type=STEP_RESOLVED, actor=by, at=at, run_id=run_id, step_id=step_id,
                       payload={"outcome": outcome, "note": note,
                                "client_ids": [r.client_id for r in waiting]})
            self._services().settle_policy(conn, run_id, step_id, at)

    # ================================================================== reads and safe ops

    def _execute_safe(self, spec: OperationSpec, req: StepRequest) -> StepOutcome:
        try:
            checked = parse_params(spec, req.params)
            client, profile = self.clients(req.key_profile)
        except TreasuryError as exc:
            return StepOutcome(StepState.FAILED, error=str(exc))
        svc = self._services()
        attempt = 0

        def once() -> Any:
            nonlocal attempt
            attempt += 1
            self.progress.waiting(Wait(f"calling {spec.name}", f"attempt {attempt}", run_id=req.run_id,
                                       step_id=req.step_id))
            svc.event(REQUEST_SENT, req.actor, req.run_id, req.step_id, sent_payload(
                spec, req.key_profile, dict(req.params), None, attempt))
            try:
                response = client.call(spec, profile, checked)
            except TreasuryError as exc:
                svc.event(RESPONSE_RECEIVED, req.actor, req.run_id, req.step_id,
                          error_payload(spec, None, attempt, exc))
                raise
            svc.event(RESPONSE_RECEIVED, req.actor, req.run_id, req.step_id, {
                "operation": spec.name, "attempt": attempt, "outcome": "succeeded",
                "status": getattr(response, "status", None), "body": response.data})
            return response.data

        try:
            policy = self.read_policy.with_limits(max_attempts=max(1, req.max_attempts),
                                                  budget_seconds=min(self.settings.read_retry_seconds,
                                                                     req.max_seconds))
            data = policy.call(once, self.clock, before_sleep=svc.retry_audit(req.actor, req.run_id,
                                                                             req.step_id, spec.name))
        except (RateLimited, ExchangeHalted, Banned) as exc:
            return StepOutcome(StepState.RUNNING, error=halt_message(exc))
        except TreasuryError as exc:
            return StepOutcome(StepState.FAILED, error=error_text(exc))
        result = dict(data) if isinstance(data, Mapping) else {"data": data}
        return StepOutcome(StepState.SUCCEEDED, result=result)

    # ================================================================== recorded operations

    def _execute_recorded(self, spec: OperationSpec, req: StepRequest) -> StepOutcome:
        try:
            legs = legs_for(spec, req)
        except (TreasuryError, ValueError) as exc:
            return StepOutcome(StepState.FAILED, error=f"nothing was sent: {exc}")
        cids = [leg.client_id for leg in legs]
        log_context.bind(client_order_id=",".join(cids))
        svc = self._services()
        try:
            client, profile = self.clients(req.key_profile)
        except TreasuryError as exc:
            existing = svc.load_step(req.run_id, req.step_id)
            if existing and all(r.terminal for r in existing):
                return outcome_of(spec, existing)
            if existing:
                return StepOutcome(StepState.RUNNING, client_ids=cids, error=f"cannot load key profile: {exc}")
            return StepOutcome(StepState.FAILED, client_ids=cids,
                               error=f"cannot load key profile {req.key_profile!r}; nothing was sent: {exc}")
        holder = self._holder()
        try:
            recs, reserved_now = prepare(svc, spec, req, legs, account=profile.account_id, holder=holder)
        except RecordsVanished as exc:
            return StepOutcome(StepState.NEEDS_ATTENTION, client_ids=cids, error=str(exc),
                               reason=f"{exc}, then {resolve_hint(req.run_id, req.step_id)}.")
        if recs is None:
            recs = svc.load_step(req.run_id, req.step_id)
        # the stored digest must match this request, and the stored parameters (what would be
        # sent) must still hash to it: a record edited in the database is never sent
        wanted = {leg.client_id: R.params_digest(leg.params) for leg in legs}
        mismatch = [r.client_id for r in recs
                    if r.params_digest != wanted.get(r.client_id) or R.params_digest(r.params) != r.params_digest]
        if len(recs) != len(legs) or mismatch:
            return StepOutcome(
                StepState.NEEDS_ATTENTION, client_ids=cids,
                error="execution record parameters differ from this request",
                reason=(f"Step {req.step_id} of run {req.run_id} already has execution records "
                        f"({', '.join(r.client_id for r in recs)}) with other parameters; nothing was "
                        "sent. Compare them with `treasury show RUN` before deciding."))
        if all(r.terminal for r in recs):
            svc.event(DUPLICATE_SUPPRESSED, req.actor, req.run_id, req.step_id,
                      {"client_ids": cids, "state": "finished", "reason": "step already finished"})
            return outcome_of(spec, recs)
        now = self.clock.time()
        send_until = now + req.max_seconds
        if req.not_after is not None:
            send_until = min(send_until, req.not_after)
        ctx = StepContext(svc, spec, req.run_id, req.step_id, req.actor, holder, client, profile,
                          max_attempts=max(1, req.max_attempts), send_until=send_until,
                          stop_at=now + req.max_seconds + self.settings.deadline_seconds,
                          legs={r.client_id: r for r in recs},
                          expected=wanted, params=req.params,
                          checked={leg.client_id: leg.checked for leg in legs if leg.checked is not None},
                          policy_fresh=reserved_now, not_after=req.not_after, timeout_text=req.timeout_text)
        try:
            ctx.claim()
        except LeaseLost:
            svc.event(DUPLICATE_SUPPRESSED, req.actor, req.run_id, req.step_id,
                      {"client_ids": cids, "state": "in progress",
                       "reason": "another worker holds the step's lease"})
            return StepOutcome(StepState.RUNNING, client_ids=cids,
                               error="another worker is executing this step")
        try:
            return self._drive(ctx)
        except Stop as stop:
            return stop.outcome
        except LeaseLost:
            return StepOutcome(StepState.RUNNING, client_ids=cids,
                               error="another worker took over this step")
        finally:
            ctx.release()

    # ================================================================== the loop

    def _drive(self, ctx: StepContext) -> StepOutcome:
        while True:
            legs = list(ctx.legs.values())
            if all(r.terminal for r in legs):
                return outcome_of(ctx.spec, legs)
            if self.clock.time() >= ctx.stop_at:
                raise Stop(ctx.running("the outcome is not settled yet; will continue"))
            prepared = [r.client_id for r in legs if r.state is ExecState.PREPARED]
            if prepared:
                send(ctx, prepared)
                continue
            self._reconcile_until_decided(ctx, [r.client_id for r in legs if r.state in R.IN_FLIGHT])

    def _reconcile_until_decided(self, ctx: StepContext, inflight: list[str]) -> None:
        """Reconciliation passes (the poll policy) until no leg is waiting or a decision is due."""
        def pause(seconds: float) -> None:
            legs = [ctx.legs[c] for c in inflight if ctx.legs[c].state in R.IN_FLIGHT]
            settles = min((r.sent_at.timestamp() + self.settings.settle_seconds for r in legs if r.sent_at),
                          default=None)
            detail = f"next lookup round in {seconds_text(seconds)}"
            if settles is not None and settles > self.clock.time():
                detail += (f"; absence counts only once the settle window "
                           f"({seconds_text(self.settings.settle_seconds)} after sending) has passed")
            ctx.report(f"reconciling the {ctx.noun} {', '.join(r.client_id for r in legs)} (its answer was lost)",
                       detail, until=self._decision_time(ctx, inflight))
            ctx.wait(seconds)

        started = self.clock.monotonic()
        try:
            poll(lambda: reconcile_pass(ctx, inflight), done=lambda pending: not pending,
                 clock=self.clock, deadline=lambda: self._decision_time(ctx, inflight), sleep=pause)
        finally:
            metrics.reconciled(self.clock.monotonic() - started, "step")

    def _decision_time(self, ctx: StepContext, cids: Sequence[str]) -> float:
        """When the earliest in-flight leg must be decided (settle or deadline), capped by stop_at."""
        times = [ctx.stop_at]
        for cid in cids:
            rec = ctx.legs[cid]
            if rec.state not in R.IN_FLIGHT:
                continue
            since = (rec.unknown_since or rec.sent_at or self.clock.now()).timestamp()
            sent = (rec.sent_at or self.clock.now()).timestamp()
            times.append(max(since + self.settings.deadline_seconds, sent + self.settings.settle_seconds))
        return min(times)

    # ================================================================== helpers

    def _holder(self) -> str:
        return f"{self.owner}#{uuid.uuid4().hex[:8]}"[:100]

    def _services(self) -> Services:
        """What this call shares with the send and reconcile paths, from the current attributes
        (``settings`` may be replaced after construction, e.g. the worker's lease length)."""
        return Services(self.engine, self.clock, self.settings, self.policy, self.audit,
                        self.read_policy, self.send_policy, self.progress)
