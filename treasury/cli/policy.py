"""``treasury policy check``: validate config/policy.yaml and show its rules and headroom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from treasury.cli.context import AppContext, pass_app
from treasury.policy import Policy, headroom, load_policy
from treasury.policy.model import check_environment
from treasury.policy.rules import in_window


def register(cli: click.Group) -> None:
    cli.add_command(policy)


@click.group("policy")
def policy() -> None:
    """Policy guardrails: limits, velocity caps, allowlists, windows, approval tiers."""


@policy.command("check")
@click.option("--file", "path", type=click.Path(path_type=Path, dir_okay=False),
              help="policy file (default: TREASURY_CONFIG_DIR/policy.yaml)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_app
def check(app: AppContext, path: Path | None, as_json: bool) -> None:
    """Validate the policy file; print its rules, open windows and remaining headroom.

    Exits 2 with FILE:LINE:COL for each problem when the file is invalid, and 2 when it is
    missing (then no money-moving operation runs) or says ``policy: none`` outside the simulator.
    """
    if path is None:
        app.require_config()
    loaded = check_environment(load_policy(path or app.settings.policy_file), app.settings.env.value)
    now = app.clock.now()
    report: dict[str, Any] = loaded.to_dict()
    report["empty"] = loaded.is_empty()
    report["checked_at"] = now.isoformat()
    for entry, window in zip(report["windows"], loaded.windows, strict=True):
        entry["open_now"] = in_window(window, now)
    try:
        with app.engine().begin() as conn:
            report["headroom"] = [h.to_dict() for h in headroom(conn, loaded, at=now)]
    except SQLAlchemyError as exc:
        # The file is valid either way; say why totals are missing without echoing the URL.
        report["headroom"] = None
        report["headroom_error"] = f"database unavailable ({type(exc).__name__})"
    if as_json:
        app.print_json(report)
        return
    _print(app, loaded, report)


def _print(app: AppContext, loaded: Policy, report: dict[str, Any]) -> None:
    click.echo(f"policy {loaded.source}: valid, sha256 {loaded.digest}")
    if loaded.opt_out:
        click.echo("`policy: none`: no rules, every operation is allowed (accepted only with "
                   "TREASURY_ENV=simulator; every decision is audited as made without a policy)")
        return
    if loaded.is_empty():
        click.echo("no rules: every operation is allowed")
        return
    if loaded.limits:
        # Scope columns only when some limit is scoped, to keep the table readable.
        scoped = any(r.account or r.destination for r in loaded.limits)
        extra = ["account", "destination"] if scoped else []
        app.print_table(
            ["rule", "op", "asset", "max per tx", "max per window", "window", *extra],
            [(f"limits[{i}]", r.op, r.target, r.max_per_tx, r.max_per_window, r.window,
              *((r.account, r.destination) if scoped else ())) for i, r in enumerate(loaded.limits)],
            title="limits",
        )
    rows = []
    for op in loaded.destinations.ops():
        for i, entry in enumerate(loaded.destinations.for_op(op) or ()):
            rows.append((f"destinations.{op}[{i}]", entry.label,
                         ", ".join(f"{k}={v}" for k, v in entry.model_dump(exclude_none=True).items()
                                   if k != "label")))
        if loaded.destinations.for_op(op) == []:
            rows.append((f"destinations.{op}", "(empty)", "every such operation is refused"))
    if rows:
        app.print_table(["rule", "label", "destination"], rows, title="destinations (allowlists)")
    if loaded.windows:
        app.print_table(
            ["rule", "op", "days", "hours", "timezone", "open now"],
            [(f"windows[{i}]", w.op, ",".join(w.days), w.hours, w.timezone, "yes" if entry["open_now"] else "no")
             for i, (w, entry) in enumerate(zip(loaded.windows, report["windows"], strict=True))],
            title="windows",
        )
    if loaded.approval_tiers:
        app.print_table(
            ["rule", "op", "asset", "above", "quorum", "group"],
            [(f"approval_tiers[{i}]", t.op, t.target, t.above, t.quorum or 1, t.group)
             for i, t in enumerate(loaded.approval_tiers)],
            title="approval tiers",
        )
    if report["headroom"] is None:
        click.echo(f"headroom: {report['headroom_error']}")
    elif report["headroom"]:
        app.print_table(
            ["rule", "op", "asset", "window", "limit", "used", "remaining"],
            [(h["rule"], h["op"], h["asset"], h["window"], h["limit"], h["used"], h["remaining"])
             for h in report["headroom"]],
            title=f"headroom at {report['checked_at']}",
        )
