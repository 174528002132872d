"""The run service: starts runs, records decisions and drives the engine (the I/O around it).

Every state change is committed together with its audit event. Commands that leave the
process (dispatching a step to a worker) happen only after the commit, and are safe to
repeat: executing a step goes through execution records, so a duplicate dispatch never
sends twice.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine

from treasury.audit import NewEvent, append_event, append_through
from treasury.canonical import canonical_json, inputs_json
from treasury.engine import machine as eng
from treasury.engine.quorum import sha256_hex
from treasury.errors import (
    ApprovalRefused,
    ConfigError,
    DecisionRefused,
    ParameterError,
    RunStateError,
    TreasuryError,
    WorkflowInvalid,
)
from treasury.execution.ids import new_run_id
from treasury.language.fanout import expanded, group_of
from treasury.language.inputs import coerce_inputs
from treasury.language.loader import load_workflow_text
from treasury.language.templates import TemplateContext, TemplateError, resolve
from treasury.language.validate import validate_workflow
from treasury.models import ExecState, RunState, StepState, format_amount
from treasury.observe import context as log_context
from treasury.operations.registry import REGISTRY
from treasury.people import decisions
from treasury.policy import evaluate
from treasury.runs import runstore as store
from treasury.runs import signing, views, votes
from treasury.runs.context import AuditSink, Dispatcher, InlineDispatcher, RunContext
from treasury.runs.steps import StepRunner, needs_policy, step_done

log = logging.getLogger("treasury.runs")

@lru_cache(maxsize=256)
def _load_snapshot(text: str, source: str) -> Any:
    return load_workflow_text(text, source=source)


@lru_cache(maxsize=64)
def _expanded_snapshot(text: str, source: str, inputs_json: str) -> Any:
    return expanded(_load_snapshot(text, source).spec, json.loads(inputs_json))


def expanded_spec(loaded: Any, stored_inputs: Mapping[str, Any]) -> Any:
    """The workflow's steps as a run has them: each for_each step as its instances
    (``pay[0007]``), from the run's stored inputs (see treasury.language.fanout)."""
    if not any(s.for_each is not None for s in loaded.spec.steps):
        return loaded.spec
    return _expanded_snapshot(loaded.text, loaded.source, canonical_json(dict(stored_inputs)))


class RunService:
    def __init__(self, engine: Engine, ctx: RunContext, audit: AuditSink | None = None) -> None:
        self.engine = engine
        self.ctx = ctx
        self._audit = audit or append_event

    # ------------------------------------------------------------------ helpers

    @property
    def audit_fn(self) -> AuditSink:
        """The function that appends audit events (``treasury.audit.append_event`` unless replaced)."""
        return self._audit

    def now(self) -> datetime:
        return self.ctx.clock.now()

    def audit(self, conn: Connection, type: str, actor: str, *, run_id: str | None = None,
              step_id: str | None = None, payload: Mapping[str, Any] | None = None) -> None:
        self._audit(conn, type=type, actor=actor, at=self.now(), run_id=run_id, step_id=step_id,
                    payload=dict(payload or {}))

    def account_of(self, key_profile: str | None) -> str | None:
        """The HashKey account a key profile acts on, if keys.yaml says (for account-scoped policy)."""
        spec = self.ctx.keys.get(key_profile) if key_profile else None
        return getattr(spec, "account_id", None)

    def key_binding(self, key_profile: str | None) -> dict[str, Any]:
        """Which account a key profile pays from: its API key (by fingerprint) and account id.

        Taken from the profile the executor signs with (keys.yaml as this process loaded it),
        so an approval binds the account, not only the profile's name.
        """
        profile: Any = None
        clients = getattr(self.ctx.executor, "clients", None)
        if key_profile and clients is not None:
            try:
                profile = clients(key_profile)[1]
            except TreasuryError:
                profile = None
        if profile is None and key_profile:
            profile = self.ctx.keys.get(key_profile)
        if profile is None:
            return {"key_fingerprint": None, "account": None}
        return {"key_fingerprint": sha256_hex(str(profile.api_key))[:32],
                "account": getattr(profile, "account_id", None)}

    def source_spec_of(self, run: Any) -> Any:
        """The run's workflow as written in its snapshot (for_each steps as one step each)."""
        return _load_snapshot(run.workflow_snapshot, run.workflow_file).spec

    def spec_of(self, run: Any) -> Any:
        """The run's workflow from its snapshot, with for_each steps as their instances."""
        return expanded_spec(_load_snapshot(run.workflow_snapshot, run.workflow_file), run.inputs)

    def _deps(self, spec: Any) -> dict[str, tuple[str, ...]]:
        deps = {k: set(v) for k, v in spec.dependencies().items()}
        for step_id, guards in spec.guards().items():
            deps.setdefault(step_id, set()).update(guards)
        return {k: tuple(sorted(v)) for k, v in deps.items()}

    def _view(self, conn: Connection, run: Any) -> eng.RunView:


        spec = self.spec_of(run)
        deps = self._deps(spec)
        rows = store.get_steps(conn, run.id)
        groups = {r.step_id: group_of(spec, r.step_id) for r in rows}
        return eng.RunView(
            id=run.id,
            state=RunState(run.state),
            steps=tuple(
                eng.StepView(r.step_id, r.kind, StepState(r.state), deps.get(r.step_id, ()), groups[r.step_id])
                for r in rows
            ),
            concurrency={s.id: s.parallel for s in self.source_spec_of(run).steps if s.for_each is not None},
        )

    def finish_entry(self) -> None:
        self.ctx.dispatcher.flush(self)

    # ------------------------------------------------------------------ starting runs

    def load_and_check(self, path_or_text: str, *, source: str) -> Any:
        """Load a workflow text and validate it completely.

        Raises:
            WorkflowInvalid: every problem, located.
        """
        loaded = _load_snapshot(path_or_text, source)
        problems = validate_workflow(
            loaded, keys=self.ctx.keys, approvers=self.ctx.approvers, policy=self.ctx.policy
        )
        if problems:
            raise WorkflowInvalid(problems)
        return loaded

    def create_run(
        self, conn: Connection, loaded: Any, raw_inputs: Mapping[str, Any], *, requested_by: str,
        schedule: str | None = None, due_at: datetime | None = None, request: Any | None = None,
        policy_reloaded: bool = False,
    ) -> str:
        """Insert a PENDING run with its steps inside ``conn``'s transaction; returns the run id.

        ``request`` is the requester's signed ``request`` document (a ``SignedDecision``); only
        the scheduler starts runs without one.

        Raises:
            ParameterError: an input is missing or invalid (names the input).
            DecisionRefused: the signed request does not verify or does not match.
        """
        inputs = coerce_inputs(loaded.spec, raw_inputs)
        self.check_quorums(loaded.spec, requested_by)
        # the run records the policy in force now
        reloaded = self.refresh_policy_for(loaded.spec, conn) or policy_reloaded
        stored_inputs = inputs_json(inputs)
        run_id = new_run_id()
        verified = None
        if request is not None:
            run_id = str(request.parsed().get("run") or "")
            verified = signing.accept(self, conn, request, kind="request",
                                       expect=signing.request_expect(self, loaded, stored_inputs, run_id))
            if verified.person != requested_by:
                raise DecisionRefused(f"the request is signed by {verified.person!r}, not {requested_by!r}")
        elif schedule is not None:
            # the schedule acts under the registry in force: audit verify judges it as a signed-era run
            decisions.ensure_registry_recorded(conn, self.ctx.approvers, self._audit, self.now())
        at = self.now()
        policy_digest = getattr(self.ctx.policy, "digest", None)
        store.insert_run(conn, {
            "id": run_id, "workflow": loaded.spec.name, "workflow_file": loaded.source,
            "workflow_snapshot": loaded.text, "workflow_digest": loaded.digest, "inputs": stored_inputs,
            "requested_by": requested_by, "state": RunState.PENDING.value, "created_at": at,
            "updated_at": at, "schedule": schedule, "due_at": due_at, "policy_digest": policy_digest,
            "version": 0,
        })
        rows = []
        for idx, step in enumerate(self.instances(loaded, stored_inputs)):
            rows.append({
                "run_id": run_id, "step_id": step.id, "idx": idx,
                "kind": "approval" if step.approval is not None else "operation",
                "operation": step.op, "key_profile": step.key, "state": StepState.PENDING.value,
                "updated_at": at, "version": 0,
            })
        store.insert_steps(conn, rows)
        previous = store.last_policy_digest(conn, exclude=run_id)
        if policy_digest and previous and previous != policy_digest and not reloaded:
            # the policy file changed since the last run: make it visible in the audit trail
            self.audit(conn, "policy.changed", "system", run_id=run_id,
                       payload={"from": previous, "to": policy_digest,
                                "file": str(getattr(self.ctx.policy, "source", ""))})
        self.audit(conn, "run.requested", requested_by, run_id=run_id, payload={
            "workflow": loaded.spec.name, "file": loaded.source, "workflow_digest": loaded.digest,
            "inputs": stored_inputs, "requested_by": requested_by, "schedule": schedule,
            "due_at": due_at, "policy_digest": policy_digest,
            **(decisions.audit_payload(verified) if verified is not None else {}),
        })
        return run_id

    def instances(self, loaded: Any, stored_inputs: Mapping[str, Any]) -> list[Any]:
        """The steps a run of ``loaded`` has (for_each steps as their instances), each instance's
        key profile checked against keys.yaml.

        Raises:
            ParameterError: an item chooses a key profile that is unknown or lacks the permission
                the operation needs (naming the instance and the profile).
        """
        try:
            spec = expanded_spec(loaded, stored_inputs)
        except TreasuryError as exc:
            raise ParameterError("for_each", str(exc)) from exc
        for step in spec.steps:
            if group_of(spec, step.id) is None or step.key is None or step.op is None:
                continue
            profile = self.ctx.keys.get(step.key)
            op = REGISTRY.get(step.op)
            if profile is None:
                raise ParameterError(step.id, f"chooses key profile {step.key!r}, which is not in keys.yaml")
            if op is not None and op.permission not in profile.permissions:
                raise ParameterError(step.id, f"chooses key profile {step.key!r}, which lacks the "
                                              f"{op.permission.value!r} permission that {op.name} needs")
        return list(spec.steps)

    def check_quorums(self, spec: Any, requested_by: str) -> None:
        """Refuse a run whose approvals its own requester would make unreachable.

        ``validate`` checks each quorum against the eligible people, not knowing who will ask;
        the requester never counts, so a run asked for by one of them may need one person more
        than there are. It would wait until it expired, so it is refused before it exists.

        Raises:
            ApprovalRefused: naming the step, the quorum and who may still approve.
        """
        for step in spec.steps:
            if step.approval is None:
                continue
            try:
                eligible = self.ctx.approvers.eligible(step.approval.approvers, exclude=requested_by)
            except ValueError:
                continue  # an unknown approver is validate's to report, with its location
            if len(eligible) < step.approval.quorum:
                who = ", ".join(sorted(eligible)) or "nobody"
                raise ApprovalRefused(
                    f"run not started: approval step {step.id!r} needs {step.approval.quorum} approvals, "
                    f"but {requested_by!r} is one of its approvers and a requester never counts, so only "
                    f"{len(eligible)} can approve ({who}); ask someone else to request it, or widen the "
                    "approvers in the workflow"
                )

    def start(
        self, loaded: Any, raw_inputs: Mapping[str, Any], *, requested_by: str,
        schedule: str | None = None, due_at: datetime | None = None, signer: Any | None = None,
        signed: Any | None = None,
    ) -> str:
        """Create a run requested (and signed) by ``requested_by``, and start it.

        The ``request`` document is signed with ``signer`` (or, in the simulator, the person's
        demo key) unless ``signed`` is given. Raises DecisionRefused (audited) when it does not
        verify at the door.
        """
        reloaded = False
        if signed is None:
            self.check_quorums(loaded.spec, requested_by)
            reloaded = self.refresh_policy_for(loaded.spec)  # the request names the policy in force now
            signed = self.sign_request(loaded, raw_inputs, requested_by, signer)
        try:
            with self.engine.begin() as conn:
                run_id = self.create_run(conn, loaded, raw_inputs, requested_by=requested_by,
                                         schedule=schedule, due_at=due_at, request=signed,
                                         policy_reloaded=reloaded)
        except DecisionRefused as exc:
            signing.refuse(self, signed, str(exc), kind="request", person=requested_by)
            raise
        self.kick(run_id)
        return run_id

    def sign_request(self, loaded: Any, raw_inputs: Mapping[str, Any], person: str,
                     signer: Any | None = None) -> Any:
        """A signed ``request`` for a new run of ``loaded`` (for ``create_run``'s ``request``).

        Raises:
            DecisionRefused: no identity to sign with (audited).
        """
        doc = signing.request_document(self, loaded, raw_inputs, person, new_run_id())
        return self._signed(person, doc, signer, kind="request")

    def _signed(self, person: str, doc: Mapping[str, Any], signer: Any | None, *, kind: str,
                run_id: str | None = None, step_id: str | None = None) -> Any:
        try:
            return signing.sign(self, person, doc, signer)
        except DecisionRefused as exc:
            signing.refuse(self, None, str(exc), kind=kind, run_id=run_id, step_id=step_id, person=person)
            raise
        except ApprovalRefused as exc:
            votes.refuse(self, run_id or "", step_id, person, kind, str(exc))
            raise

    def kick(self, run_id: str) -> None:
        """Start a PENDING run: evaluate policy for what is known, then advance. Idempotent."""
        dispatch: list[tuple[str, str]] = []
        with self.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            if run.state != RunState.PENDING.value:
                return
            denied = self._policy_at_start(conn, run)
            event: eng.Event = eng.Fail(denied) if denied else eng.Start()
            dispatch = self.apply_event(conn, run, event, actor="system", error=denied)
        self.carry_out(dispatch)
        self.finish_entry()

    def _policy_at_start(self, conn: Connection, run: Any) -> str | None:
        """Evaluate policy for every operation step whose parameters are known now."""
        if self.ctx.policy is None:
            return None
        spec = self.spec_of(run)
        for step in spec.steps:
            if step.op is None:
                continue
            params = self.resolve_params(run, step, {})
            if params is None:
                continue
            verdicts = evaluate(conn, self.ctx.policy, op=step.op, params=params, at=self.now(),
                                account=self.account_of(step.key))
            payload = {"stage": "start", "op": step.op, "allowed": all(v.allowed for v in verdicts),
                       "policy_digest": getattr(self.ctx.policy, "digest", None),
                       "verdicts": [v.to_dict() for v in verdicts]}
            self.audit(conn, "policy.decision", "system", run_id=run.id, step_id=step.id, payload=payload)
            for v in verdicts:
                if not v.allowed:
                    return f"policy refused step {step.id!r}: {v.message}"
        return self._fan_out_totals_at_start(conn, run, spec)

    def _fan_out_totals_at_start(self, conn: Connection, run: Any, spec: Any) -> str | None:
        """Each for_each step's total against the rolling caps: every item passed on its own,
        but the list as a whole must fit too (each send still reserves its own amount).

        Items are summed per key profile and asset; a cap scoped to one destination is judged
        against the list's whole total of that asset (stricter, never looser).
        """
        assert self.ctx.policy is not None
        groups: dict[tuple[str, str | None, str], list[tuple[Any, Any, dict[str, Any]]]] = {}
        for step in spec.steps:
            group = group_of(spec, step.id)
            op = REGISTRY.get(step.op) if step.op else None
            if group is None or op is None or op.money is None:
                continue
            params = self.resolve_params(run, step, {})
            if params is None:
                continue
            for mv in op.money.movements(params, account=self.account_of(step.key), resolvable=None):
                if mv.asset is not None and mv.amount is not None:
                    groups.setdefault((group, step.key, mv.asset), []).append((step, mv, params))
        for (group, key, asset), found in groups.items():
            if len(found) < 2:
                continue
            step, first_mv, first_params = found[0]
            total = sum((mv.amount for _, mv, _ in found), Decimal(0))
            as_one = {**first_params, first_mv.amount_param: format_amount(total)}
            verdicts = [v for v in evaluate(conn, self.ctx.policy, op=step.op, params=as_one, at=self.now(),
                                            account=self.account_of(key))
                        if (v.rule or "").endswith(".max_per_window")]
            if not verdicts:
                continue
            allowed = all(v.allowed for v in verdicts)
            self.audit(conn, "policy.decision", "system", run_id=run.id, step_id=group, payload={
                "stage": "start", "op": step.op, "allowed": allowed, "total": format_amount(total),
                "asset": asset, "items": len(found), "policy_digest": getattr(self.ctx.policy, "digest", None),
                "verdicts": [v.to_dict() for v in verdicts]})
            for v in verdicts:
                if not v.allowed:
                    return (f"policy refused for_each step {group!r} as a whole ({len(found)} items, "
                            f"{format_amount(total)} {asset} in total): {v.message}")
        return None

    # ------------------------------------------------------------------ applying events

    def apply_event(self, conn: Connection, run: Any, event: eng.Event, *, actor: str,
                    error: str | None = None, result_digest: str | None = None,
                    step_values: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """Advance the engine, persist states with audit events, handle approval requests.

        ``result_digest``: the digest of the stored result of the step ``event`` finishes, carried
        by the ``step.state`` event that records its success (see result_digests.py).
        ``step_values``: more columns of that step (its result, error), written with its state.
        """
        view = self._view(conn, run)
        t = eng.advance(view, event)
        at = self.now()
        target = getattr(event, "step_id", None)
        if step_values and target is not None and target not in t.step_states:
            store.update_step(conn, run.id, target, at, **step_values)  # no state change to write with
            step_values = None
        # the transition's events go in one batch after its writes (flushed before an approval
        # request, which writes and audits on its own), in the order they always had
        events: list[NewEvent] = []
        for step_id, new in t.step_states.items():
            old = view.step(step_id).state
            extra: dict[str, Any] = {}
            if new in (StepState.RUNNING, StepState.AWAITING_APPROVAL) and old == StepState.PENDING:
                extra["started_at"] = at  # an approval step starts when approval is requested
            if new.terminal:
                extra["finished_at"] = at
            if step_values and step_id == getattr(event, "step_id", None):
                extra = {**step_values, **extra}
                step_values = None  # written with the state
            store.update_step(conn, run.id, step_id, at, state=new, **extra)
            payload: dict[str, Any] = {"from": old.value, "to": new.value}
            if (result_digest is not None and new == StepState.SUCCEEDED
                    and step_id == getattr(event, "step_id", None)):
                payload["result_digest"] = result_digest
            events.append(NewEvent("step.state", actor, at, run.id, step_id, payload))
        if t.run_state != view.state:
            moved: dict[str, Any] = {"from": view.state.value, "to": t.run_state.value}
            counts = eng.group_counts(eng.RunView(view.id, t.run_state, tuple(
                replace(s, state=t.step_states.get(s.id, s.state)) for s in view.steps)))
            if counts and t.run_state in (RunState.SUCCEEDED, RunState.FAILED, RunState.NEEDS_ATTENTION):
                # the outcome says how many items of each for_each step ended in each state
                moved["items"] = counts
                if error is None and t.run_state != RunState.SUCCEEDED:
                    error = "; ".join(f"{group}: " + ", ".join(f"{n} {state}" for state, n in c.items())
                                      for group, c in counts.items())
            store.set_run_state(conn, run.id, t.run_state, at, error=error)
            events.append(NewEvent("run.state", actor, at, run.id, None, {**moved, "error": error}))
        dispatch: list[tuple[str, str]] = []
        for cmd in t.commands:
            if isinstance(cmd, eng.RequestApproval):
                append_through(self._audit, conn, events)
                events = []
                votes.request_approval(self, conn, store.get_run(conn, run.id), cmd.step_id)
            else:
                dispatch.append((run.id, cmd.step_id))
                events.append(NewEvent("step.dispatched", actor, at, run.id, cmd.step_id, {}))
        append_through(self._audit, conn, events)
        return dispatch

    def carry_out(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Dispatch after commit only; a duplicate dispatch is harmless (execution records)."""
        for run_id, step_id in pairs:
            self.ctx.dispatcher.dispatch(run_id, step_id)

    # ------------------------------------------------------------------ templates and params

    def step_results(self, conn: Connection, run_id: str) -> dict[str, Any]:
        return {r.step_id: (r.result or {}) for r in store.get_steps(conn, run_id)
                if r.state == StepState.SUCCEEDED.value}

    def resolve_params(self, run: Any, step: Any, results: Mapping[str, Any]) -> dict[str, Any] | None:
        """The step's parameters fully resolved, or None if some depend on unfinished steps."""
        try:
            return dict(resolve(step.params or {}, _ctx(run, results)))
        except TemplateError:
            return None

    def bind_params(self, run: Any, step: Any, results: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters with every resolvable template resolved; the rest keep their template text."""
        ctx = _ctx(run, results)

        def bind(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {k: bind(v) for k, v in value.items()}
            if isinstance(value, list):
                return [bind(v) for v in value]
            try:
                return resolve(value, ctx)
            except TemplateError:
                return value

        bound: dict[str, Any] = bind(dict(step.params or {}))
        return bound

    # ------------------------------------------------------------------ approvals

    def approve(self, run_id: str, user: str, comment: str | None = None, *, signer: Any | None = None,
                signed: Any | None = None) -> str:
        """Record ``user``'s signed approval; when the quorum is reached the guarded steps run.

        The ``approve`` document is signed with ``signer`` (or, in the simulator, the person's
        demo key) unless ``signed`` is given. Returns the run state. Raises ApprovalRefused or
        DecisionRefused (audited) when the rules or the door refuse the vote.
        """
        return self._vote(run_id, user, "approve", comment, signer, signed)

    def reject(self, run_id: str, user: str, reason: str, *, signer: Any | None = None,
               signed: Any | None = None) -> str:
        """One signed rejection ends the run as REJECTED. Raises ApprovalRefused/DecisionRefused (audited)."""
        if not reason.strip():
            raise ParameterError("reason", "must say why the run is rejected")
        return self._vote(run_id, user, "reject", reason, signer, signed)

    def _vote(self, run_id: str, user: str, kind: str, text: str | None, signer: Any | None,
              signed: Any | None) -> str:
        if signed is None:
            try:
                doc = signing.vote_document(self, run_id, user, kind, text)
            except ApprovalRefused as exc:
                votes.refuse(self, run_id, None, user, kind, str(exc))
                raise
            signed = self._signed(user, doc, signer, kind=kind, run_id=run_id)
        return votes.vote(self, run_id, signed, kind)

    def expire_due(self) -> list[tuple[str, str]]:
        """Expire approvals whose time has passed (fails closed: the run becomes EXPIRED)."""
        return votes.expire_due(self)

    def cancel(self, run_id: str, user: str, *, signer: Any | None = None, signed: Any | None = None) -> str:
        """Cancel a run that has not finished (a signed ``cancel`` by its requester or an operator).

        Steps already sending finish and are recorded.
        """
        if signed is None:
            signed = self._signed(user, signing.run_document(self, "cancel", run_id, user), signer,
                                  kind="cancel", run_id=run_id)
        try:
            with self.engine.begin() as conn:
                run = store.lock_run(conn, run_id)
                if RunState(run.state).terminal:
                    raise RunStateError(f"run {run_id} is already {run.state}")
                person = str(signed.parsed().get("person"))
                requester = signing.requester_of(conn, self, run)
                operator = self.ctx.approvers.has_role(person, "operator")
                if person != requester and not operator:
                    raise ApprovalRefused(f"{person!r} may not cancel run {run_id}: not its requester or an operator")
                verified = signing.accept(self, conn, signed, kind="cancel", expect={
                    "run": run_id, "workflow_digest": decisions.digest_of(run.workflow_snapshot)},
                    role="operator" if operator else "requester")
                self.audit(conn, "run.cancel_requested", person, run_id=run_id,
                           payload=decisions.audit_payload(verified))
                self.apply_event(conn, run, eng.Cancel(), actor=person, error=f"cancelled by {person}")
        except DecisionRefused as exc:
            signing.refuse(self, signed, str(exc), kind="cancel", run_id=run_id)
            raise
        return self.state_of(run_id)

    # ------------------------------------------------------------------ executing steps

    def refresh_policy(self, conn: Connection | None = None) -> bool:
        """Enforce the policy file as it is now: reload it if it changed since the last look.

        A reload is audited (``policy.changed``, with the process that now enforces it);
        returns whether there was one. ``conn``: audit in the caller's transaction (a caller
        that holds locks must pass it: a second transaction could wait on them).

        Raises:
            ConfigError: the file is now invalid or gone (nothing may be sent until it is mended).
        """
        watch = self.ctx.policy_watch
        if watch is None:
            return False
        before = self.ctx.policy
        policy = watch.current()
        if policy is before:
            return False
        self.ctx.policy = policy
        if self.ctx.executor is not None:
            self.ctx.executor.policy = policy
        log.warning("policy reloaded from %s: digest %s", watch.path, getattr(policy, "digest", None))
        payload = {"from": getattr(before, "digest", None), "to": getattr(policy, "digest", None),
                   "file": str(watch.path), "reloaded_by": self.ctx.worker_actor}
        if conn is not None:
            self.audit(conn, "policy.changed", self.ctx.worker_actor, payload=payload)
        else:
            with self.engine.begin() as own:
                self.audit(own, "policy.changed", self.ctx.worker_actor, payload=payload)
        return True

    def refresh_policy_for(self, spec: Any, conn: Connection | None = None) -> bool:
        """``refresh_policy`` before starting a run of ``spec``: no money moves without a policy,
        but a run of reads only needs none.

        Raises:
            ConfigError: the policy file is invalid or gone and ``spec`` has a step that needs it.
        """
        try:
            return self.refresh_policy(conn)
        except ConfigError:
            if any(needs_policy(step.op) for step in spec.steps):
                raise
            return False

    def refresh_people(self) -> None:
        """Judge signatures by people.yaml as it is now (keys registered or revoked since start).

        Raises:
            ConfigError: the file is now invalid or gone (nothing may be sent until it is mended).
        """
        if self.ctx.people_watch is not None:
            self.ctx.approvers = self.ctx.people_watch.current()

    def execute_step(self, run_id: str, step_id: str) -> None:
        """Execute one operation step (the body of the Celery task, or the inline loop). Idempotent."""
        # every log line of the step carries its ids; what the step binds dies with the copy
        contextvars.copy_context().run(self._execute_step_bound, run_id, step_id)

    def _execute_step_bound(self, run_id: str, step_id: str) -> None:
        log_context.bind(run_id=run_id, step_id=step_id)
        StepRunner(self).run(run_id, step_id)

    def resolve(self, run_id: str, step_id: str, *, user: str, outcome: str, note: str,
                signer: Any | None = None, signed: Any | None = None) -> str:
        """A person settles a NEEDS_ATTENTION step as succeeded or failed (signed, audited).

        Four eyes: an operator who is not the run's requester (resolving releases policy
        reservations). Raises DecisionRefused (audited) when the door refuses it.
        """
        if outcome not in ("succeeded", "failed"):
            raise ParameterError("outcome", "must be 'succeeded' or 'failed'")
        if not note.strip():
            raise ParameterError("note", "must explain the decision")
        if user not in self.ctx.approvers.users:
            raise ApprovalRefused(f"{user!r} is not a known person in config/people.yaml")
        with self.engine.connect() as conn:
            row = store.get_step(conn, run_id, step_id)
            records = [r for r in store.records_for(conn, run_id) if r.step_id == step_id]
        if row.state != StepState.NEEDS_ATTENTION.value:
            raise RunStateError(f"step {step_id!r} of run {run_id} is {row.state}, not NEEDS_ATTENTION")
        _check_against_records(run_id, step_id, outcome, records)
        if signed is None:
            doc = signing.run_document(self, "resolve", run_id, user, step_id, outcome=outcome, note=note)
            signed = self._signed(user, doc, signer, kind="resolve", run_id=run_id, step_id=step_id)
        try:
            with self.engine.begin() as conn:
                run = store.lock_run(conn, run_id)
                verified = signing.accept(self, conn, signed, kind="resolve", expect={
                    "run": run_id, "step": step_id, "outcome": outcome, "note": note,
                    "workflow_digest": decisions.digest_of(run.workflow_snapshot)})
                if verified.person == signing.requester_of(conn, self, run):
                    raise DecisionRefused(
                        f"{verified.person!r} requested run {run_id} and cannot resolve its step (four eyes: "
                        "resolving releases policy reservations); ask another operator")
                user = verified.person
                self.audit(conn, "step.resolve_signed", user, run_id=run_id, step_id=step_id,
                           payload={"outcome": outcome, **decisions.audit_payload(verified)})
        except DecisionRefused as exc:
            signing.refuse(self, signed, str(exc), kind="resolve", run_id=run_id, step_id=step_id)
            raise
        settled_by_executor = False
        if records:
            try:
                # settles the execution records (and the policy reservation), audited with client ids
                self.ctx.executor.resolve(run_id=run_id, step_id=step_id, outcome=outcome, by=user, note=note)
                settled_by_executor = True
            except RunStateError:
                pass  # no record needs attention (e.g. parameters differed): only the step is settled
        with self.engine.begin() as conn:
            run = store.lock_run(conn, run_id)
            if not settled_by_executor:
                self.audit(conn, "step.resolved", user, run_id=run_id, step_id=step_id,
                           payload={"outcome": outcome, "note": note})
            state = StepState.SUCCEEDED if outcome == "succeeded" else StepState.FAILED
            dispatch = step_done(self, conn, run, step_id, state, actor=user,
                                 result=row.result, error=None if state == StepState.SUCCEEDED
                                 else f"settled as failed by {user}: {note}")
        self.carry_out(dispatch)
        self.finish_entry()
        return self.state_of(run_id)

    # ------------------------------------------------------------------ recovery

    def recover(
        self, *, older_than: timedelta = timedelta(seconds=60), steps: Iterable[tuple[str, str]] = (),
    ) -> dict[str, int]:
        """Re-drive work that lost its message or its worker.

        That is PENDING runs with no activity for ``older_than``, RUNNING operation steps with no
        activity for as long and no live lease on their records, and at once every one of
        ``steps`` (run id, step id) that is still RUNNING: the sweeper passes the steps whose
        records it has just taken over from a worker whose lease ran out.
        """
        now = self.now()
        before = now - older_than
        with self.engine.begin() as conn:
            pending = store.stale_runs(conn, RunState.PENDING, before)
            running = store.running_steps(conn, list(steps))
            running += [p for p in store.stale_running_steps(conn, before, now=now) if p not in running]
            for run_id, step_id in running:
                store.touch_step(conn, run_id, step_id, now)
        for run_id in pending:
            self.kick(run_id)
        for run_id, step_id in running:
            self.ctx.dispatcher.dispatch(run_id, step_id)
        self.finish_entry()
        return {"pending_runs": len(pending), "running_steps": len(running)}

    # ------------------------------------------------------------------ reading

    def plan(self, loaded: Any, raw_inputs: Mapping[str, Any], *, requested_by: str) -> dict[str, Any]:
        """What a run would do: resolved parameters and policy verdicts. Sends and stores nothing."""
        return views.plan_run(self, loaded, raw_inputs, requested_by=requested_by)

    def show(self, run_id: str, *, with_audit: bool = True) -> dict[str, Any]:
        """Everything about one run: steps with client ids, results, approvals, audit timeline."""
        return views.show_run(self, run_id, with_audit=with_audit)

    def list(self, *, state: str | None = None, workflow: str | None = None,
             limit: int = 100) -> list[views.RunListing]:
        """Runs, newest first."""
        return views.list_runs(self, state=state, workflow=workflow, limit=limit)

    def state_of(self, run_id: str) -> str:
        with self.engine.connect() as conn:
            return str(store.get_run(conn, run_id).state)


def _check_against_records(run_id: str, step_id: str, outcome: str, records: Sequence[Any]) -> None:
    """Refuse a person's verdict that the step's own execution records contradict.

    Records waiting for a person are theirs to settle. Otherwise: a leg still in flight is being
    reconciled by the sweeper; a leg the exchange shows as done cannot be settled as failed, nor
    a step none of whose legs the exchange shows done as succeeded.

    Raises:
        RunStateError: naming the client ids and what the records show.
    """
    if not records or any(r.state == ExecState.NEEDS_ATTENTION.value for r in records):
        return
    shown = ", ".join(f"{r.client_id}={r.state}" for r in records)
    if any(r.state in (ExecState.SENDING.value, ExecState.UNKNOWN.value) for r in records):
        raise RunStateError(
            f"step {step_id!r} of run {run_id} still has a request being reconciled ({shown}); wait "
            "for the sweeper's verdict (`treasury show` lists it) before settling the step")
    if outcome == "failed" and any(r.state == ExecState.SUCCEEDED.value for r in records):
        raise RunStateError(
            f"step {step_id!r} of run {run_id} cannot be settled as failed: the exchange shows it done "
            f"({shown}, order {', '.join(str(r.exchange_order_id) for r in records if r.exchange_order_id)})")
    if outcome == "succeeded" and not any(r.state == ExecState.SUCCEEDED.value for r in records):
        raise RunStateError(
            f"step {step_id!r} of run {run_id} cannot be settled as succeeded: none of its requests "
            f"was done by the exchange ({shown}; PREPARED means never sent)")


def _ctx(run: Any, results: Mapping[str, Any]) -> Any:
    return TemplateContext(inputs=run.inputs, steps=results,
                           run={"id": run.id, "requested_by": run.requested_by})



__all__ = ["Dispatcher", "InlineDispatcher", "RunContext", "RunService"]
