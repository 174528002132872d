"""The step runner: executes one dispatched operation step, checking everything before it sends.

In order, each a function of its own: read the policy and people files as they are now (fail
closed when they cannot be read), take the run's lock and find the step still running, stop a
step that keeps dying on start, bind its parameters (refusing results that are not the ones
audited, and stored parameters that are not what the templates resolve to), check its approvals
and their signatures, then hand it to the executor and record the outcome. Every refusal ends
the step with its audit event, in the transaction that found it, and sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from treasury.audit.events import STEP_START_LIMIT
from treasury.clock import as_utc
from treasury.engine import machine as eng
from treasury.errors import ConfigError, DigestMismatch
from treasury.execution import StepRequest
from treasury.execution.outcomes import resolve_hint
from treasury.models import StepState
from treasury.operations.registry import REGISTRY
from treasury.people import decisions
from treasury.runs import evidence, result_digests, votes
from treasury.runs import runstore as store
from treasury.runs.context import EventHost

log = logging.getLogger("treasury.runs")

Dispatch = list[tuple[str, str]]
"""(run id, step id) pairs to dispatch once the transaction that chose them has committed."""

_LIVE = (StepState.RUNNING.value, StepState.UNKNOWN.value)


def needs_policy(op: str | None) -> bool:
    """Whether a step with operation ``op`` may only run under a policy: every operation that
    moves money or changes exchange state (an unknown name too: fail closed). Reads do not."""
    if op is None:
        return False
    spec = REGISTRY.get(op)
    return spec is None or spec.mutates


def step_done(host: EventHost, conn: Connection, run: Any, step_id: str, state: StepState, *,
              actor: str, result: Any = None, error: str | None = None) -> Dispatch:
    """Record the step's end (result or error) and advance the run; returns what to dispatch."""
    digest = None
    if state == StepState.SUCCEEDED:
        # the result as a later read sees it (the JSON column's round trip), so that read
        # hashes the same value
        digest = result_digests.result_digest(store.as_stored(result))
    run_error = None
    if state == StepState.FAILED:
        run_error = f"step {step_id!r} failed: {error}"
    elif state == StepState.NEEDS_ATTENTION:
        run_error = f"step {step_id!r} needs attention: {error}"
    return host.apply_event(conn, run, eng.StepFinished(step_id, state), actor=actor, error=run_error,
                            result_digest=digest,
                            step_values={"result": result, "error": error, "open_starts": 0})


@dataclass(frozen=True)
class _Bound:
    """The parameters a step sends, and whether stored ones differ from what its templates say."""

    params: dict[str, Any]
    changed: bool


class StepRunner:
    """Executes steps for ``host`` (the run service), one ``run`` call per dispatched step."""

    def __init__(self, host: EventHost) -> None:
        self.host = host

    @property
    def actor(self) -> str:
        return self.host.ctx.worker_actor

    def run(self, run_id: str, step_id: str) -> None:
        """Execute one operation step. Idempotent: a step no longer running is left alone."""
        if not self.config_readable(run_id, step_id):
            return
        host = self.host
        with host.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            row = store.get_step(conn, run_id, step_id)
            if row.state not in _LIVE:
                log.info("step %s/%s is %s; nothing to do", run_id, step_id, row.state)
                return
            spec = host.spec_of(run)
            step = spec.step(step_id)
            prepared = self.prepare(conn, run, row, spec, step)
        if not isinstance(prepared, dict):
            host.carry_out(prepared)
            return
        outcome = host.ctx.executor.execute(self.request(run_id, step_id, row, step, prepared))
        self.record(run_id, step_id, outcome)

    def config_readable(self, run_id: str, step_id: str) -> bool:
        """Re-read people.yaml and the policy file; False when this step must not run without them.

        Fail closed: nothing of a step that needs a policy is sent under one nobody can read (or
        none at all); the step stays as it is (the sweeper brings it back) and says why.
        """
        host = self.host
        try:
            host.refresh_people()
            host.refresh_policy()
        except ConfigError as exc:
            with host.engine.begin() as conn:
                row = store.get_step(conn, run_id, step_id)
                if needs_policy(row.operation):
                    log.error("step %s/%s not executed: %s", run_id, step_id, exc)
                    if row.state in _LIVE:
                        store.update_step(conn, run_id, step_id, host.now(),
                                          error=f"not executed, nothing sent: {exc}; will retry once it is mended")
                    return False
        return True

    def prepare(self, conn: Connection, run: Any, row: Row[Any], spec: Any, step: Any) -> dict[str, Any] | Dispatch:
        """The parameters to send, or (when the step is refused and ended) what to dispatch."""
        starts = (row.open_starts or 0) + 1
        if starts > self.host.ctx.step_start_limit:
            return self.stop_restarts(conn, run, step.id, starts)
        bound = self.bind(conn, run, row, step, starts)
        if not isinstance(bound, _Bound):
            return bound
        refused = self.check_decisions(conn, run, spec, step.id, step, bound.params)
        if refused is not None:
            return refused
        if bound.changed:
            return self.refuse_changed_params(conn, run, step.id, bound.params)
        return bound.params

    def stop_restarts(self, conn: Connection, run: Any, step_id: str, starts: int) -> Dispatch:
        """Every earlier start died or raised before recording an end: stop the loop for a person."""
        limit = self.host.ctx.step_start_limit
        reason = (f"started {starts - 1} times without finishing (a worker may be dying on it); "
                  f"check its execution records and the exchange, then {resolve_hint(run.id, step_id)}")
        self.host.audit(conn, STEP_START_LIMIT, self.actor, run_id=run.id, step_id=step_id,
                        payload={"starts": starts - 1, "limit": limit})
        return step_done(self.host, conn, run, step_id, StepState.NEEDS_ATTENTION, actor=self.actor,
                         error=reason)

    def bind(self, conn: Connection, run: Any, row: Row[Any], step: Any, starts: int) -> _Bound | Dispatch:
        """The step's parameters, counting this start; refused when a result it reads changed.

        One write holds the start count and, on the first start, the resolved parameters (audited
        as ``step.params``). Parameters stored at an earlier start must still be what the step's
        templates resolve to, or the database chose what is sent: that is reported in ``changed``
        and refused after the approval check (which fails what it can see on its own).
        """
        host, actor, run_id, step_id = self.host, self.actor, run.id, step.id
        params = row.params
        values: dict[str, Any] = {"open_starts": starts}
        resolved = params is None
        changed_params = False
        stored = {r.step_id: r.result for r in store.get_steps(conn, run_id)
                  if r.state == StepState.SUCCEEDED.value}
        changed = result_digests.changed_results(conn, run_id, stored, result_digests.steps_read(step.params))
        if changed:
            # a result a template reads is not the one audited: resolve nothing, send nothing
            host.audit(conn, result_digests.RESULT_CHANGED, actor, run_id=run_id, step_id=step_id,
                       payload={"steps": changed})
            return step_done(host, conn, run, step_id, StepState.NEEDS_ATTENTION, actor=actor,
                             error=f"not sent: {result_digests.changed_message(changed)}")
        fresh = host.resolve_params(run, step, {k: v or {} for k, v in stored.items()})
        if resolved:
            params = values["params"] = fresh
        elif fresh is None or decisions.digest_of(fresh) != decisions.digest_of(params):
            changed_params = True
        if params is None:
            return step_done(host, conn, run, step_id, StepState.FAILED, actor=actor,
                             error="a template could not be resolved")
        store.update_step(conn, run_id, step_id, host.now(), **values)
        if resolved:
            host.audit(conn, "step.params", actor, run_id=run_id, step_id=step_id,
                       payload={"op": step.op, "key": step.key, "params": params})
        return _Bound(params=dict(params), changed=changed_params)

    def check_decisions(self, conn: Connection, run: Any, spec: Any, step_id: str, step: Any,
                        params: dict[str, Any]) -> Dispatch | None:
        """The step's approvals as recorded, then the signatures behind them; None when both hold."""
        host, actor = self.host, self.actor
        try:
            digests = votes.check_approvals(host, conn, run, spec, step, params)
            evidence.check_before_send(conn, host.ctx.approvers, run, spec, step_id, digests,
                                       workflows_dir=host.ctx.workflows_dir)
        except DigestMismatch as exc:
            host.audit(conn, "approval.digest_mismatch", actor, run_id=run.id, step_id=step_id,
                       payload={"approved": exc.approved, "actual": exc.actual})
            return step_done(host, conn, run, step_id, StepState.FAILED, error=str(exc), actor=actor)
        except evidence.EvidenceMissing as exc:
            # the database says go, the signatures do not: park it for people to look at
            host.audit(conn, "decision.unverified", actor, run_id=run.id, step_id=step_id,
                       payload={"reason": str(exc)})
            return step_done(host, conn, run, step_id, StepState.NEEDS_ATTENTION, actor=actor,
                             error=f"not sent: {exc}")
        return None

    def refuse_changed_params(self, conn: Connection, run: Any, step_id: str, params: dict[str, Any]) -> Dispatch:
        """Stored parameters that are not what the templates resolve to: park the step, send nothing."""
        self.host.audit(conn, result_digests.PARAMS_CHANGED, self.actor, run_id=run.id, step_id=step_id,
                        payload={"stored_digest": decisions.digest_of(params)})
        return step_done(self.host, conn, run, step_id, StepState.NEEDS_ATTENTION, actor=self.actor,
                         error=f"not sent: {result_digests.params_changed_message(step_id)}")

    def request(self, run_id: str, step_id: str, row: Row[Any], step: Any, params: dict[str, Any]) -> StepRequest:
        """What the executor sends: the parameters, the retry budget and the step's deadline.

        The deadline is counted from the step's first start (dispatch), across redeliveries and
        restarts.
        """
        budget = step.retry
        not_after = None
        if step.timeout_after is not None:
            began = row.started_at or self.host.now()
            not_after = as_utc(began).timestamp() + step.timeout_after.total_seconds()
        return StepRequest(
            run_id=run_id, step_id=step_id, operation=step.op, key_profile=step.key, params=params,
            actor=self.actor,
            max_attempts=budget.max_attempts if budget else 5,
            max_seconds=budget.max_seconds if budget else 120.0,
            not_after=not_after, timeout_text=step.timeout,
        )

    def record(self, run_id: str, step_id: str, outcome: Any) -> None:
        """Record the executor's outcome, unless another worker recorded the step first."""
        host = self.host
        if outcome.state == StepState.RUNNING:
            log.info("step %s/%s still running: %s", run_id, step_id, outcome.error)
            with host.engine.begin() as conn:
                store.update_step(conn, run_id, step_id, host.now(), error=outcome.error, open_starts=0)
            return
        with host.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            row = store.get_step(conn, run_id, step_id)
            if row.state not in _LIVE:
                return  # another worker recorded it first
            dispatch = step_done(host, conn, run, step_id, outcome.state, result=outcome.result,
                                 error=outcome.reason or outcome.error, actor=self.actor)
        host.carry_out(dispatch)


__all__ = ["Dispatch", "StepRunner", "needs_policy", "step_done"]
