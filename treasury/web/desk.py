"""The console's one way into the desk: runs, approvals, schedules, audit and the exchange.

Every call the web pages make into the run service, the scheduler, the audit log and the
exchange goes through ``Desk`` (a Protocol), implemented over a ``Runtime`` by
``RuntimeDesk``. Pages and tests depend on the Protocol only; when those services move, this
module is the one place whose imports change.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from treasury.audit import AuditRecord, append_event, query_events
from treasury.audit.checkpoint_verify import verify_with_checkpoints
from treasury.audit.checkpoints import CheckpointStore
from treasury.errors import ApprovalRefused, DecisionRefused, TreasuryError
from treasury.exchange.halts import BANNED, HaltGuard, active_halts, describe_halt
from treasury.language.fanout import split_instance
from treasury.language.timing import ScheduleSpec
from treasury.models import RunState, StepState, parse_amount
from treasury.monitoring.marks import audit_verified
from treasury.people import decisions as dec
from treasury.people.decisions import SignedDecision
from treasury.people.registry import People
from treasury.policy.movements import movements
from treasury.runs import runstore, signing
from treasury.runs.reverify import verify_decisions
from treasury.runs.service import RunService
from treasury.runs.votes import current_digest
from treasury.runtime import Runtime, checkpoint_dir
from treasury.runtime.exchange import load_profile
from treasury.schedules.tick import Scheduler
from treasury.store.tables import runs as runs_table
from treasury.store.tables import steps as steps_table

# (schedules, [(file, message)] skipped): what the scheduler's loader reads from the workflows folder
LoadSchedules = Callable[[], tuple[list[ScheduleSpec], list[tuple[str, str]]]]
# operations whose movement comes out of the paying account (the projected balance)
DEBITS = ("withdraw", "fiat_withdraw", "asset_transfer")
BALANCE_SECONDS = 10.0  # a key's balances are read from the exchange at most this often


@dataclass(frozen=True)
class RunFilter:
    state: str | None = None
    workflow: str | None = None
    requester: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class AuditFilter:
    run_id: str | None = None
    actor: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Decided:
    """What became of a submitted decision: ``recorded`` (with the run's state, if any) or ``duplicate``."""

    outcome: str
    state: str | None = None
    message: str = ""


@dataclass
class Projection:
    """One account's balance of one asset, now and after the movement waiting for approval."""

    asset: str
    account: str | None
    now: Decimal | None
    after: Decimal | None
    error: str | None = None


class Desk(Protocol):
    """What the console reads and does. Raises TreasuryError subclasses as the services do."""

    @property
    def engine(self) -> Engine: ...

    def people(self) -> People: ...

    def approval(self, run: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]: ...

    def digest_holds(self, run_id: str, step_id: str) -> bool: ...

    def recorded(self, nonce: str) -> bool: ...

    def inbox(self, person: str) -> list[dict[str, Any]]: ...

    def runs(self, flt: RunFilter) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any]: ...

    def attention(self) -> list[dict[str, Any]]: ...

    def schedules(self) -> list[dict[str, Any]]: ...

    def audit_events(self, flt: AuditFilter) -> Iterator[AuditRecord]: ...

    def audit_status(self) -> dict[str, Any]: ...

    def exchange(self, *, check_keys: bool = False) -> dict[str, Any]: ...

    def document(self, kind: str, person: str, **fields: Any) -> dict[str, Any]: ...

    def changes(self, doc: Mapping[str, Any]) -> list[str]: ...

    def submit(self, signed: SignedDecision) -> Decided: ...

    def record(self, type: str, actor: str, payload: Mapping[str, Any]) -> None: ...


@dataclass
class RuntimeDesk:
    """``Desk`` over a built ``Runtime`` (the composition root's run service, client and engine)."""

    runtime: Runtime
    load_schedules: LoadSchedules
    _balances: dict[str, tuple[float, dict[str, Decimal] | str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def service(self) -> RunService:
        return self.runtime.service

    def people(self) -> People:
        self.service.refresh_people()
        people: People = self.service.ctx.approvers
        return people

    # ------------------------------------------------------------------ runs and approvals

    def inbox(self, person: str) -> list[dict[str, Any]]:
        """Approvals waiting for ``person``: eligible, not the requester, not voted yet."""
        self.service.expire_due()
        out = []
        for item in self.service.list(state=RunState.AWAITING_APPROVAL.value, limit=500):
            run = self.service.show(item["id"], with_audit=False)
            step = next((s for s in run["steps"] if s["state"] == StepState.AWAITING_APPROVAL.value), None)
            if step is None or person not in (step.get("eligible") or []):
                continue
            if any(v["approver"] == person for v in step["votes"]):
                continue
            out.append(self.approval(run, step))
        return out

    def approval(self, run: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
        """What an approver must see of a waiting approval step: everything its digest covers and more.

        A fan-out's instances (``pay[0000]``…) come back as one entry of ``fan_outs`` (the step, its
        items, the total per asset and the balances after that total), never one entry each.
        """
        guarded = []
        fans: dict[str, dict[str, Any]] = {}
        summaries = {f["step"]: f for f in run.get("fan_out") or []}
        for step_id, g in (step.get("waiting_for") or {}).items():
            verdicts = (step.get("policy") or {}).get(step_id, [])
            entry = {"step_id": step_id, "op": g["op"], "key": g["key"], "account": g.get("account"),
                     "params": g["params"], "verdicts": verdicts, "label": _label(verdicts)}
            parent, index = split_instance(step_id)
            if index is None:
                guarded.append({**entry, "projected": self.projected(g["op"], g["key"], g["params"])})
                continue
            fan = fans.setdefault(parent, {"step": parent, "op": g["op"], "instances": [], "totals": {},
                                           "concurrency": (summaries.get(parent) or {}).get("concurrency")})
            fan["instances"].append(entry)
        fan_outs = [self._fan_out(f) for f in fans.values()]
        approved = [v["approver"] for v in step["votes"] if v["decision"] == "approve"]
        return {"run": run, "step": step, "guarded": guarded, "fan_outs": fan_outs, "approved": approved,
                "quorum": step.get("quorum"), "expires_at": step.get("expires_at"), "digest": step.get("digest")}

    def _fan_out(self, fan: dict[str, Any]) -> dict[str, Any]:
        """A fan-out's block: its totals per asset, the parameter names its items carry, and the
        balances of each paying key after the whole list."""
        totals: dict[str, Decimal] = {}
        per_key: dict[str, dict[str, Decimal]] = {}
        names: set[str] = set()
        for item in fan["instances"]:
            names.update(item["params"])
            for m in movements(item["op"], item["params"]):
                if m.asset is None or m.amount is None:
                    continue
                totals[m.asset] = totals.get(m.asset, Decimal(0)) + m.amount
                if item["op"] in DEBITS and item["key"] is not None:
                    moved = per_key.setdefault(item["key"], {})
                    moved[m.asset] = moved.get(m.asset, Decimal(0)) + m.amount
        projected = [p for key, moved in sorted(per_key.items()) for p in self._projected_total(key, moved)]
        keys = sorted({str(i["key"]) for i in fan["instances"]})
        # the paying account each key profile is bound to (the digest covers it per instance)
        accounts = {(str(i["key"]), json.dumps(i["account"], sort_keys=True)): i["account"]
                    for i in fan["instances"] if i.get("account")}
        return {**fan, "totals": dict(sorted(totals.items())), "param_names": sorted(names), "key_profiles": keys,
                "accounts": [{"key": k, **a} for (k, _), a in sorted(accounts.items())],
                "denied": sum(1 for i in fan["instances"] if any(not v["allowed"] for v in i["verdicts"])),
                "projected": projected}

    def _projected_total(self, key: str, moved: Mapping[str, Decimal]) -> list[Projection]:
        balances = self._balances_of(key)
        out = []
        for asset, total in sorted(moved.items()):
            if isinstance(balances, str):
                out.append(Projection(asset, None, None, None, balances))
                continue
            now = balances.get(asset, Decimal(0))
            out.append(Projection(asset, None, now, now - total))
        return out

    def projected(self, op: str, key: str | None, params: Mapping[str, Any]) -> list[Projection]:
        """The paying account's balance of each asset the step moves, now and after it."""
        if op not in DEBITS or key is None:
            return []
        out = []
        for m in movements(op, params):
            if m.asset is None:
                continue
            balances = self._balances_of(key)
            if isinstance(balances, str):
                out.append(Projection(m.asset, m.account, None, None, balances))
                continue
            now = balances.get(m.asset, Decimal(0))
            out.append(Projection(m.asset, m.account, now, now - m.amount if m.amount is not None else None))
        return out

    def _balances_of(self, key: str) -> dict[str, Decimal] | str:
        with self._lock:
            cached = self._balances.get(key)
            if cached is not None and time.monotonic() - cached[0] < BALANCE_SECONDS:
                return cached[1]
        value: dict[str, Decimal] | str
        try:
            answer = self.runtime.client.call("balances", load_profile(self.runtime.settings, key))
            value = {b["asset"]: parse_amount(b["free"], field="free") for b in answer.data.get("balances", [])}
        except TreasuryError as exc:
            value = f"balance not available ({type(exc).__name__})"
        with self._lock:
            self._balances[key] = (time.monotonic(), value)
        return value

    def runs(self, flt: RunFilter) -> list[dict[str, Any]]:
        c = runs_table.c
        q = select(c.id, c.workflow, c.state, c.requested_by, c.created_at, c.schedule, c.due_at)
        if flt.state:
            q = q.where(c.state == flt.state)
        if flt.workflow:
            q = q.where(c.workflow == flt.workflow)
        if flt.requester:
            q = q.where(c.requested_by == flt.requester)
        if flt.since is not None:
            q = q.where(c.created_at >= flt.since)
        if flt.until is not None:
            q = q.where(c.created_at < flt.until)
        self.service.expire_due()
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.created_at.desc(), c.id).limit(flt.limit)).mappings().all()
        return [dict(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any]:
        """One run in full (steps, client ids, executions, approvals, audit timeline).

        Raises:
            RunStateError: no such run.
        """
        self.service.expire_due()
        data: dict[str, Any] = self.service.show(run_id)
        return data

    def attention(self) -> list[dict[str, Any]]:
        """Every NEEDS_ATTENTION step, with its run and what reconciliation found."""
        s = steps_table.c
        with self.engine.connect() as conn:
            pairs = conn.execute(select(s.run_id, s.step_id).where(s.state == StepState.NEEDS_ATTENTION.value)
                                 .order_by(s.run_id, s.step_id)).all()
        out = []
        shown: dict[str, dict[str, Any]] = {}
        for run_id, step_id in pairs:
            run = shown.setdefault(run_id, self.service.show(run_id, with_audit=False))
            step = next(x for x in run["steps"] if x["id"] == step_id)
            found = [e for e in step.get("executions") or [] if e.get("reason")]
            out.append({"run": run, "step": step, "found": found})
        return out

    # ------------------------------------------------------------------ schedules, audit, exchange

    def _scheduler(self) -> Scheduler:
        def never(conn: Connection, spec: ScheduleSpec, due_at: datetime) -> str:
            # the console lists, pauses and resumes schedules; it never fires one
            raise ApprovalRefused("the web console does not fire schedules")

        return Scheduler(self.engine, start_run=never, clock=self.runtime.clock, audit=append_event)

    def schedules(self) -> list[dict[str, Any]]:
        specs, invalid = self.load_schedules()
        out = []
        for st in self._scheduler().status(specs, invalid):
            out.append({
                "name": st.name, "cron": st.cron, "timezone": st.timezone, "paused": st.paused,
                "paused_by": st.paused_by, "next_fire_utc": st.next_fire_utc, "next_fire_local": st.next_fire_local,
                "last_run_id": st.last_run_id, "last_run_due_at": st.last_run_due_at,
                "last_run_state": self.service.state_of(st.last_run_id) if st.last_run_id else None,
                "problem": st.problem, "missed_total": st.missed_total,
            })
        return out

    def audit_events(self, flt: AuditFilter) -> Iterator[AuditRecord]:
        return query_events(self.engine, run_id=flt.run_id or None, actor=flt.actor or None,
                            type=list(flt.types) or None, since=flt.since, until=flt.until, limit=flt.limit)

    def audit_status(self) -> dict[str, Any]:
        """The chain's verify result, checkpoints and re-verified decisions (as ``treasury audit verify``)."""
        folder = checkpoint_dir(self.runtime.settings, self.engine)
        result, report = verify_with_checkpoints(
            self.engine, None if folder is None else CheckpointStore(folder),
            every_events=self.runtime.settings.checkpoint_every_events)
        decided = verify_decisions(self.engine)
        audit_verified(self.engine, result, at=self.runtime.clock.now())
        return {"chain": result.to_dict(), "checkpoints": report.to_dict(), "decisions": decided.to_dict(),
                "ok": result.ok and decided.ok}

    def exchange(self, *, check_keys: bool = False) -> dict[str, Any]:
        """Key profiles (with a signed read when ``check_keys``), rate-limit state and halts."""
        now = self.runtime.clock.now()
        with self.engine.connect() as conn:
            halts = active_halts(conn, now)
        limiter = getattr(self.runtime.client, "limiter", None)
        keys = []
        for name, spec in sorted(self.service.ctx.keys.items()):
            api_key = str(getattr(spec, "api_key", ""))
            entry: dict[str, Any] = {
                "profile": name, "api_key": api_key[:4] + "…" if len(api_key) > 4 else api_key,
                "permissions": sorted(str(getattr(p, "value", p)) for p in getattr(spec, "permissions", ())),
                "halted": limiter.halted(api_key) if limiter is not None else None, "check": None,
            }
            if check_keys:
                try:
                    self.runtime.client.call("balances", load_profile(self.runtime.settings, name))
                    entry["check"] = "ok: a signed read answered"
                except TreasuryError as exc:
                    entry["check"] = f"FAILED: {type(exc).__name__}: {exc}"
            keys.append(entry)
        return {"keys": keys, "halts": [{**h, "text": describe_halt(h)} for h in halts],
                "banned": any(h["kind"] == BANNED for h in halts), "url": self.runtime.settings.exchange_url()}

    # ------------------------------------------------------------------ signed decisions

    def document(self, kind: str, person: str, **fields: Any) -> dict[str, Any]:
        """The decision document ``person`` is asked to sign, built from the current state.

        ``approve``/``reject`` (``run``, ``text``), ``resolve`` (``run``, ``step``, ``outcome``,
        ``note``), ``schedule.pause``/``schedule.resume`` (``schedule``), ``exchange.resume``.

        Raises:
            ApprovalRefused: the run is not waiting for approval.
            RunStateError: no such run.
        """
        svc = self.service
        if kind in ("approve", "reject"):
            return signing.vote_document(svc, fields["run"], person, kind, fields.get("text"))
        if kind == "resolve":
            return signing.run_document(svc, "resolve", fields["run"], person, fields["step"],
                                         outcome=fields["outcome"], note=fields["note"])
        if kind in ("schedule.pause", "schedule.resume"):
            return dec.new_document(kind, person, at=svc.now(), schedule=fields["schedule"])
        if kind == "exchange.resume":
            return dec.new_document(kind, person, at=svc.now(), halt="banned")
        raise DecisionRefused(f"the console cannot make a {kind!r} decision")

    def digest_holds(self, run_id: str, step_id: str) -> bool:
        """Whether the parameters shown for a waiting approval still hash to the digest it binds to."""
        with self.engine.connect() as conn:
            run = runstore.get_run(conn, run_id)
            row = runstore.get_step(conn, run_id, step_id)
        return bool(row.digest) and current_digest(self.service, run, row) == row.digest

    def recorded(self, nonce: str) -> bool:
        """Whether a decision with this nonce is already recorded (it counts once)."""
        with self.engine.connect() as conn:
            return dec.nonce_used(conn, nonce)

    def changes(self, doc: Mapping[str, Any]) -> list[str]:
        """What changed since ``doc`` was built, in words (empty: it still fits what waits now)."""
        kind = doc.get("kind")
        if kind not in ("approve", "reject", "resolve"):
            return []
        run_id = str(doc.get("run"))
        with self.engine.connect() as conn:
            run = runstore.get_run(conn, run_id)
            rows = runstore.get_steps(conn, run_id)
        out = []
        if doc.get("workflow_digest") != dec.digest_of(run.workflow_snapshot):
            out.append("the workflow's stored text changed")
        if kind == "resolve":
            row = next((r for r in rows if r.step_id == doc.get("step")), None)
            if row is None or row.state != StepState.NEEDS_ATTENTION.value:
                out.append(f"step {doc.get('step')} is now {row.state if row else 'gone'}, not NEEDS_ATTENTION")
            return out
        waiting = next((r for r in rows if r.state == StepState.AWAITING_APPROVAL.value), None)
        if waiting is None:
            out.append(f"the run is now {run.state}: it no longer waits for approval")
            return out
        now = signing.vote_expect(run, waiting)
        if doc.get("step") != now["step"]:
            out.append(f"the run now waits on step {now['step']}, not {doc.get('step')}")
        if doc.get("params_digest") != now["params_digest"]:
            out.append(f"the parameters changed (digest {str(doc.get('params_digest'))[:19]}… is now "
                       f"{now['params_digest'][:19]}…)")
        if doc.get("policy_digest") != now["policy_digest"]:
            out.append("the policy verdicts changed")
        return out

    def submit(self, signed: SignedDecision) -> Decided:
        """Hand a signed decision to the service that owns its kind.

        A decision whose nonce is already recorded (a double click, a retried POST) comes back
        ``duplicate`` and is not submitted again.

        Raises:
            DecisionRefused, ApprovalRefused: the door or the rules refuse it (audited).
        """
        doc = signed.parsed()
        with self.engine.connect() as conn:
            if dec.nonce_used(conn, doc["nonce"]):
                return Decided("duplicate", message="this decision is already recorded")
        svc = self.service
        kind, person, run_id = doc["kind"], str(doc["person"]), str(doc.get("run") or "")
        try:
            if kind == "approve":
                return Decided("recorded", svc.approve(run_id, person, signed=signed))
            if kind == "reject":
                return Decided("recorded", svc.reject(run_id, person, str(doc.get("reason") or ""), signed=signed))
            if kind == "resolve":
                return Decided("recorded", svc.resolve(run_id, str(doc.get("step")), user=person,
                                                       outcome=str(doc.get("outcome")),
                                                       note=str(doc.get("note") or ""), signed=signed))
            if kind in ("schedule.pause", "schedule.resume"):
                return self._schedule(signed, doc)
            if kind == "exchange.resume":
                return self._lift(signed, doc)
        except DecisionRefused as exc:
            if "already used" in str(exc):  # the same decision, recorded by a concurrent request
                return Decided("duplicate", message="this decision is already recorded")
            raise
        raise DecisionRefused(f"the console cannot submit a {kind!r} decision")

    def _standalone(self, signed: SignedDecision, kind: str, fields: Mapping[str, Any]) -> str:
        """Accept a signed decision about no run at the door (recorded, audited); returns the signer."""
        svc = self.service
        try:
            with self.engine.begin() as conn:
                verified = signing.accept(svc, conn, signed, kind=kind, expect=fields)
                svc.audit(conn, "decision.accepted", verified.person,
                          payload={"kind": kind, **fields, **dec.audit_payload(verified)})
        except (DecisionRefused, ApprovalRefused) as exc:
            signing.refuse(svc, signed, str(exc), kind=kind)
            raise
        return verified.person

    def _schedule(self, signed: SignedDecision, doc: Mapping[str, Any]) -> Decided:
        name = str(doc.get("schedule"))
        specs, _ = self.load_schedules()
        person = self._standalone(signed, str(doc["kind"]), {"schedule": name})
        scheduler = self._scheduler()
        if doc["kind"] == "schedule.pause":
            scheduler.pause(name, by=person, specs=specs)
            return Decided("recorded", "paused", f"schedule {name} paused")
        scheduler.resume(name, by=person, specs=specs)
        return Decided("recorded", "running", f"schedule {name} resumed")

    def _lift(self, signed: SignedDecision, doc: Mapping[str, Any]) -> Decided:
        person = self._standalone(signed, "exchange.resume", {"halt": "banned"})
        limiter = getattr(self.runtime.client, "limiter", None)
        lifted = limiter.resume_count(person) if isinstance(limiter, HaltGuard) else 0
        return Decided("recorded", "resumed", f"exchange traffic resumed by {person}; {lifted} ban(s) lifted")

    def record(self, type: str, actor: str, payload: Mapping[str, Any]) -> None:
        """Append one audit event of the console's own (sign-in, sign-out, enrolment)."""
        with self.engine.begin() as conn:
            append_event(conn, type=type, actor=actor, at=self.runtime.clock.now(), payload=dict(payload))


def _label(verdicts: Sequence[Mapping[str, Any]]) -> str | None:
    """The allowlist label of the destination, from the policy's verdicts."""
    for v in verdicts:
        label = (v.get("details") or {}).get("label")
        if label:
            return str(label)
    return None
