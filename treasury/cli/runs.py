"""Run commands: run, runs, show, approve, reject, cancel, resolve, recover."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Any

import click

from treasury.cli import filters
from treasury.cli.context import AppContext, pass_app
from treasury.cli.identity import identity_option, who_signs
from treasury.cli.liveness import worker_status
from treasury.display import check_name, escape_lines, escape_text
from treasury.errors import ParameterError
from treasury.language.loader import read_workflow_text
from treasury.models import RunState
from treasury.observe import context as log_context

MAX_INPUT_FILE = 5_000_000  # bytes: a list input file (-i name=@FILE) of a few thousand items


def _log_fields(**fields: str | None) -> None:
    """Bind log fields (the person, the run) until this command ends."""
    click.get_current_context().with_resource(log_context.bound(**fields))


BAD_END = {RunState.FAILED, RunState.REJECTED, RunState.EXPIRED, RunState.CANCELLED, RunState.NEEDS_ATTENTION}


def _runtime(app: AppContext) -> Any:
    return app.runtime()


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "operator"


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-i name=value`` pairs as a dict. Raises ParameterError naming the bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParameterError(pair, "must be written name=value")
        check_name(name, "-i")
        if name in out:
            raise ParameterError(name, "is given twice")
        out[name.strip()] = value
    return out


def _exit_for(state: str) -> None:
    if RunState(state) in BAD_END:
        raise SystemExit(1)


def _print_run_summary(app: AppContext, data: dict[str, Any]) -> None:
    click.echo(escape_text(f"run {data['id']}  workflow {data['workflow']}  state {data['state']}"))
    if data.get("error"):
        click.echo(f"  error: {escape_lines(str(data['error']))}")
    rows = []
    for s in data["steps"]:
        detail = s.get("error") or ""
        if s["kind"] == "approval" and s["state"] == "AWAITING_APPROVAL":
            detail = f"digest {str(s.get('digest'))[:16]}…, quorum {s.get('quorum')}, eligible {s.get('eligible')}"
        elif s.get("result") and not detail:
            r = s["result"]
            detail = f"orderId {r.get('orderId')}" if isinstance(r, dict) and r.get("orderId") else ""
        rows.append((s["id"], s["kind"], s["state"], s.get("client_order_id") or "", detail))
    app.print_table(["step", "kind", "state", "client id", "detail"], rows)
    for fan in data.get("fan_out") or []:
        click.echo(escape_text(fan_out_line(fan)))


def fan_out_line(fan: dict[str, Any]) -> str:
    """``pay: 200 items, 10 at a time; SUCCEEDED 199, FAILED 1; total 2434.5 USDT``."""
    states = ", ".join(f"{k} {v}" for k, v in (fan.get("states") or {}).items())
    totals = ", ".join(f"{v} {k}" for k, v in fan["totals"].items()) or "nothing measured"
    return (f"{fan['step']}: {fan['items']} items, {fan['concurrency']} at a time"
            f"{'; ' + states if states else ''}; total {totals}")


def read_list_inputs(spec: Any, raw: dict[str, str]) -> dict[str, Any]:
    """``-i payouts=@FILE`` for a list or object input: the file's JSON text is the value.

    Raises:
        ParameterError: the file cannot be read, or is too large.
    """
    out: dict[str, Any] = dict(raw)
    for name, value in raw.items():
        declared = spec.inputs.get(name)
        if declared is None or declared.type not in ("list", "object") or not value.startswith("@"):
            continue
        path = Path(value[1:]).expanduser()
        try:
            if path.stat().st_size > MAX_INPUT_FILE:
                raise ParameterError(name, f"file {path} is larger than {MAX_INPUT_FILE} bytes")
            out[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ParameterError(name, f"cannot read {path}: {exc}") from None
    return out


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=VALUE", help="workflow input")
@click.option("--as", "user", default=None, help="who requests the run (checked against --identity)")
@identity_option
@click.option("--dry-run", is_flag=True, help="print the plan with policy verdicts; send nothing")
@click.option("--wait", is_flag=True, help="wait until the run finishes or waits for a person")
@click.option("--timeout", default=300.0, show_default=True, help="seconds to wait with --wait")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def run_cmd(app: AppContext, file: Path, inputs: tuple[str, ...], user: str | None, identity: str | None,
            dry_run: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Start a run of the workflow FILE (a signed request) and print its id and state."""
    rt = _runtime(app)
    signer = None
    if not dry_run:
        user, signer = who_signs(app, rt.service.ctx.approvers, user or (
            None if identity or app.settings.identity else _default_user()), identity)
    user = check_name(user or _default_user(), "--as")
    _log_fields(person=user)
    raw = parse_inputs(inputs)
    rt = _runtime(app)
    # bounded read and UTF-8 check: the same refusals, located, as `treasury validate`
    loaded = rt.service.load_and_check(read_workflow_text(file), source=str(file))
    raw = read_list_inputs(loaded.spec, raw)
    if dry_run:
        plan = rt.service.plan(loaded, raw, requested_by=user)
        if as_json:
            app.print_json(plan)
        else:
            click.echo(escape_text(f"dry run of {plan['workflow']} ({file}) as {user}: nothing is sent"))
            for s in plan["steps"]:
                if s["kind"] == "approval":
                    click.echo(escape_text(f"  {s['id']}: approval, quorum {s['quorum']} of {s['eligible']}, "
                                           f"expires in {s['expires_in']}"))
                else:
                    click.echo(escape_text(f"  {s['id']}: {s['op']} with key {s['key']} {app_dumps(s['params'])}"))
                    for v in s.get("policy", []):
                        mark = "allow" if v["allowed"] else "DENY"
                        click.echo(escape_text(f"      policy {mark}: {v['message']}"))
            for fan in plan.get("fan_out") or []:
                click.echo(escape_text(f"  {fan_out_line(fan)}"))
        if not plan["allowed"]:
            raise SystemExit(1)
        return
    run_id = rt.service.start(loaded, raw, requested_by=user, signer=signer)
    state = rt.service.state_of(run_id)
    if wait:
        _wait_for(app, rt, run_id, state, timeout)
    data = rt.service.show(run_id, with_audit=False)
    if as_json:
        app.print_json(data)
    else:
        _print_run_summary(app, data)
    _exit_for(data["state"])


def _wait_for(app: AppContext, rt: Any, run_id: str, state: str, timeout: float) -> None:
    """Wait while the run is PENDING or RUNNING (on workers), showing what it waits for."""
    from treasury.execution.progress import Wait

    progress = app.progress()
    deadline = time.monotonic() + timeout
    until = app.clock.time() + timeout
    checked = 0.0
    while RunState(state) in (RunState.PENDING, RunState.RUNNING) and time.monotonic() < deadline:
        if time.monotonic() - checked >= 2:  # the database and the broker, every 2 s
            checked = time.monotonic()
            data = rt.service.show(run_id, with_audit=False)
            running = [s["id"] for s in data["steps"] if s["state"] == "RUNNING"]
            workers = worker_status(app.settings, data, app.clock.now())
            detail = _waiting_detail(workers) if workers else (
                f"step {', '.join(running)} running" if running else f"the run is {state}")
            progress.waiting(Wait(f"waiting for the run to finish ({state})", detail, until=until, run_id=run_id))
        time.sleep(0.2)
        state = rt.service.state_of(run_id)
    progress.finished()


def _waiting_detail(workers: dict[str, Any]) -> str:
    """What a run on workers waits for, in words that change only when the situation does."""
    parts = []
    for step in workers["steps"]:
        if step["lease_owner"] is None:
            parts.append(f"step {step['id']} waits for a worker")
        elif step["lease_live"]:
            parts.append(f"step {step['id']} running on {step['lease_owner']}")
        else:
            parts.append(f"step {step['id']}: {step['lease_owner']} stopped renewing its lease "
                         f"(ran out at {step['lease_until']:%H:%M:%S} UTC); the sweeper takes it over")
    consumers = workers["consumers"]
    if consumers is None:
        parts.append("the broker does not answer")
    elif not consumers:
        parts.append(f"no worker is consuming queue {workers['queue']!r}")
    else:
        parts.append(f"{len(consumers)} worker(s) consuming queue {workers['queue']!r}")
    return "; ".join(parts)


def app_dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


@click.command("runs")
@click.option("--state", default=None, help="only runs in this state")
@click.option("--workflow", default=None, help="only runs of this workflow")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_cmd(app: AppContext, state: str | None, workflow: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first. --state and --workflow match any case; an unknown one is exit 2."""
    state = filters.run_state(state)
    rt = _runtime(app)
    workflow = filters.workflow_name(rt.engine, workflow)
    rt.service.expire_due()
    items = rt.service.list(state=state, workflow=workflow, limit=limit)
    if as_json:
        app.print_json(items)
        return
    app.print_table(["id", "workflow", "state", "requested by", "created", "due"],
                    [(r["id"], r["workflow"], r["state"], r["requested_by"], r["created_at"], r.get("due_at"))
                     for r in items])


@click.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show_cmd(app: AppContext, run_id: str, as_json: bool) -> None:
    """Show one run: steps, client ids, results, approvals, errors and its audit timeline."""
    rt = _runtime(app)
    rt.service.expire_due()
    data = rt.service.show(run_id)
    workers = worker_status(app.settings, data, app.clock.now())  # None unless RUNNING on a broker
    if workers is not None:
        data["workers"] = workers
    if as_json:
        app.print_json(data)
        return
    _print_run_summary(app, data)
    for message in (workers or {}).get("messages", []):
        click.echo(f"  {message}")
    for s in data["steps"]:
        if s["kind"] == "approval" and s.get("waiting_for"):
            click.echo(escape_text(f"approval {s['id']}: digest {s['digest']}"))
            for step_id, g in s["waiting_for"].items():
                click.echo(escape_text(f"  guards {step_id}: {g['op']} with key {g['key']} {app_dumps(g['params'])}"))
            for fan in data.get("fan_out") or []:
                click.echo(escape_text(f"  guards {fan_out_line(fan)}"))
    policy_rows = [(s["id"], d.get("stage", ""), "allow" if v.get("allowed") else "DENY", v.get("message", ""))
                   for s in data["steps"] if s["kind"] == "operation"
                   for d in s.get("policy") or [] for v in d.get("verdicts", [])]
    if policy_rows:
        app.print_table(["step", "stage", "verdict", "rule and numbers"], policy_rows, title="policy")
    if data["approvals"]:
        app.print_table(["step", "approver", "decision", "at", "comment"],
                        [(a["step_id"], a["approver"], a["decision"], a["at"], a["comment"] or "")
                         for a in data["approvals"]], title="approvals")
    app.print_table(["seq", "at", "actor", "step", "type"],
                    [(e["seq"], e["at"], e["actor"], e["step_id"] or "", e["type"]) for e in data["audit"]],
                    title="audit timeline")


def _decision(name: str, help_text: str) -> Any:
    @click.command(name, help=help_text)
    @click.argument("run_id")
    @click.option("--as", "user", default=None, help="who decides (checked against --identity)")
    @identity_option
    @click.option("--comment", default=None, help="a comment recorded with the approval")
    @click.option("--reason", default=None, help="why (required to reject)")
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def cmd(app: AppContext, run_id: str, user: str | None, identity: str | None, comment: str | None,
            reason: str | None, as_json: bool) -> None:
        rt = _runtime(app)
        if name == "reject" and not reason:
            raise click.UsageError("reject needs --reason")
        user, signer = who_signs(app, rt.service.ctx.approvers, user, identity)
        _log_fields(person=user, run_id=run_id)
        if name == "approve":
            state = rt.service.approve(run_id, user, comment, signer=signer)
        elif name == "reject":
            assert reason is not None
            state = rt.service.reject(run_id, user, reason, signer=signer)
        else:
            state = rt.service.cancel(run_id, user, signer=signer)
        data = rt.service.show(run_id, with_audit=False)
        if as_json:
            app.print_json(data)
        else:
            click.echo(f"run {run_id}: {state}")
        if name == "approve":
            _exit_for(state)

    return cmd


@click.command("resolve")
@click.argument("run_id")
@click.argument("step_id")
@click.option("--as", "user", default=None, help="who decides (checked against --identity)")
@identity_option
@click.option("--outcome", type=click.Choice(["succeeded", "failed"]), required=True)
@click.option("--note", required=True, help="what the person checked and decided")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def resolve_cmd(app: AppContext, run_id: str, step_id: str, user: str | None, identity: str | None, outcome: str,
                note: str, as_json: bool) -> None:
    """An operator who did not request the run settles its NEEDS_ATTENTION step (signed)."""
    rt = _runtime(app)
    user, signer = who_signs(app, rt.service.ctx.approvers, user, identity)
    _log_fields(person=user, run_id=run_id, step_id=step_id)
    state = rt.service.resolve(run_id, step_id, user=user, outcome=outcome, note=note, signer=signer)
    if as_json:
        app.print_json(rt.service.show(run_id, with_audit=False))
    else:
        click.echo(f"run {run_id}: {state}")


@click.command("recover")
@click.option("--older-than", default=60.0, show_default=True, help="seconds without activity")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def recover_cmd(app: AppContext, older_than: float, as_json: bool) -> None:
    """Reconcile stale execution records and re-drive runs whose message was lost."""
    from datetime import timedelta

    from treasury.execution import sweep_records

    rt = _runtime(app)
    swept = sweep_records(rt.executor, older_than_seconds=older_than)
    expired = rt.service.expire_due()
    counts = rt.service.recover(older_than=timedelta(seconds=older_than),
                                steps=[(s.run_id, s.step_id) for s in swept])
    out = {"records": [{"client_id": s.client_id, "state": str(s.state)} for s in swept],
           "expired": len(expired), **counts}
    if as_json:
        app.print_json(out)
    else:
        click.echo(f"reconciled {len(swept)} records, expired {len(expired)} approvals, "
                   f"kicked {counts['pending_runs']} runs, re-dispatched {counts['running_steps']} steps")


def register(cli: click.Group) -> None:
    for cmd in (run_cmd, runs_cmd, show_cmd, resolve_cmd, recover_cmd):
        cli.add_command(cmd)
    cli.add_command(_decision("approve", "Approve the step RUN_ID is waiting for."))
    cli.add_command(_decision("reject", "Reject a run (one rejection ends it); needs --reason."))
    cli.add_command(_decision("cancel", "Cancel a run that has not finished."))
