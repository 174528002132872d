"""``treasury audit``: list, verify and export the audit history.

Listing streams: events are read a page at a time and written as they come, in every
format, so memory stays flat over millions of events.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from treasury.audit import (
    AuditRecord,
    VerifyResult,
    check_bundle_against_db,
    export_run,
    query_events,
    verify_bundle,
)
from treasury.audit.canonical import canonical_json
from treasury.cli import filters
from treasury.cli.context import AppContext, dumps, pass_app
from treasury.display import escape_lines, escape_text, json_safe
from treasury.durations import read_duration
from treasury.errors import ConfigError, ParameterError

CSV_COLUMNS = ("seq", "at", "actor", "run_id", "step_id", "type", "payload", "prev_hash", "hash")
_TABLE = (("seq", 7), ("at", 20), ("actor", 16), ("run", 16), ("step", 14), ("type", 26), ("payload", 0))
PAYLOAD_WIDTH = 70


def parse_time(value: str, option: str, now: datetime) -> datetime:
    """An ISO 8601 time (naive means UTC), a date, or a duration ago such as ``90m``/``24h``/``7d``.

    Raises click.BadParameter naming the option.
    """
    text = value.strip()
    ago = read_duration(text)
    if ago is not None:
        try:
            return now - ago
        except OverflowError:
            raise click.BadParameter(f"{value!r} is further back than any time", param_hint=option) from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (2025-01-31T09:00:00Z) or a duration (24h, 7d)",
            param_hint=option,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _short(value: str | None, width: int) -> str:
    text = escape_text(value or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_table(records: Iterable[AuditRecord], out: Any) -> int:
    """A fixed-width table written row by row (a rich table would hold every row)."""

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if w else c for c, (_, w) in zip(cells, _TABLE, strict=True)).rstrip()

    out.write(line([name for name, _ in _TABLE]) + "\n")
    count = 0
    for r in records:
        cells = [
            str(r.seq),
            r.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            _short(r.actor, 16),
            _short(r.run_id, 16),
            _short(r.step_id, 14),
            _short(r.type, 26),
            _short(canonical_json(r.payload), PAYLOAD_WIDTH),
        ]
        out.write(line(cells) + "\n")
        count += 1
    return count


def _write_json_array(records: Iterable[AuditRecord], out: Any) -> int:
    out.write("[")
    count = 0
    for r in records:
        out.write((",\n" if count else "\n") + json_safe(json.dumps(r.to_dict(), ensure_ascii=False)))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _write_jsonl(records: Iterable[AuditRecord], out: Any) -> int:
    count = 0
    for r in records:
        out.write(json_safe(json.dumps(r.to_dict(), ensure_ascii=False)) + "\n")
        count += 1
    return count


def _write_csv(records: Iterable[AuditRecord], out: Any) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for r in records:
        d = r.to_dict()
        d["payload"] = canonical_json(r.payload)
        writer.writerow([d[c] for c in CSV_COLUMNS])
        count += 1
    return count


def _print_verify(app: AppContext, result: VerifyResult, as_json: bool, what: str,
                  extra: dict[str, Any] | None = None) -> None:
    if as_json:
        app.print_json(result.to_dict() | (extra or {}))
    elif result.ok:
        click.echo(f"OK: {result.count} {what}, head seq {result.head_seq} hash {result.head_hash}")
        click.echo(f"anchor: {result.anchor}  (keep it outside the database; re-check with --expect-head)")
    else:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        click.echo(f"BROKEN{where}: {escape_lines(str(result.reason))}")
        click.echo(f"verified before the break: {result.count} {what}, up to seq {result.head_seq}")
    if extra and not as_json:
        _print_checkpoints(extra["checkpoints"])
    if not result.ok:
        sys.exit(1)


@click.group("audit", invoke_without_command=True)
@click.option("--run", "run_id", metavar="RUN", help="Only events of this run.")
@click.option("--workflow", metavar="W", help="Only events of runs of this workflow.")
@click.option("--actor", metavar="A", help="Only events by this actor (user, scheduler, worker:<host>, system).")
@click.option("--type", "types", metavar="E", multiple=True, help="Only this event type (repeatable).")
@click.option("--since", metavar="T", help="From this time (ISO 8601, or a duration ago: 24h, 7d).")
@click.option("--until", metavar="T", help="Before this time (ISO 8601, or a duration ago).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most this many events.")
@click.option("--json", "fmt", flag_value="json", help="A JSON array (streamed).")
@click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object per line.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")
@click.pass_context
def audit(
    ctx: click.Context,
    run_id: str | None,
    workflow: str | None,
    actor: str | None,
    types: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    fmt: str | None,
) -> None:
    """List audit events (a table by default), oldest first; or verify and export them."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext)
    assert app is not None
    now = app.clock.now()
    engine = app.engine()
    run_id = filters.existing_run(engine, run_id)
    workflow = filters.workflow_name(engine, workflow)
    types = tuple(filters.event_types(engine, types))
    records = query_events(
        engine,
        run_id=run_id,
        workflow=workflow,
        actor=actor,
        type=list(types) or None,
        since=parse_time(since, "--since", now) if since else None,
        until=parse_time(until, "--until", now) if until else None,
        limit=limit,
    )
    writer = {"json": _write_json_array, "jsonl": _write_jsonl, "csv": _write_csv}.get(fmt or "", _write_table)
    try:
        count = writer(records, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``treasury audit | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if writer is _write_table and count == 0:
        click.echo("(no events match)", err=True)


@audit.command("verify")
@click.option(
    "--expect-head",
    metavar="HASH",
    help="An anchor saved earlier (HASH or SEQ:HASH, as printed by verify); fail if it is gone.",
)
@click.option("--checkpoints", "checkpoint_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The signed checkpoints to check against (default: TREASURY_CHECKPOINT_DIR, or beside "
                   "a SQLite file).")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The server's public key (PEM), pinned; default: the one stored beside the checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON object.")
@pass_app
def verify_cmd(app: AppContext, expect_head: str | None, checkpoint_dir: Path | None, public_key: Path | None,
               as_json: bool) -> None:
    """Recompute the hash chain, check it against every signed checkpoint and re-verify every
    signed decision; exit 1 and say what differs (the first bad seq, the checkpoint the chain no
    longer matches, or the decision, approval row or run that its signatures do not back)."""
    from treasury.monitoring.marks import audit_verified
    from treasury.runs.reverify import verify_decisions

    result, report = _verify_checkpointed(app, expect_head, checkpoint_dir, public_key)
    decisions = verify_decisions(app.engine())
    audit_verified(app.engine(), result, at=app.clock.now())  # for metrics and alerts
    if as_json:
        ok = result.ok and decisions.ok
        app.print_json(result.to_dict() | {"checkpoints": report.to_dict(), "decisions": decisions.to_dict(),
                                           "ok": ok})
        sys.exit(0 if ok else 1)
    try:
        _print_verify(app, result, as_json, "events", {"checkpoints": report.to_dict()})
    finally:
        for problem in decisions.problems:
            click.echo(f"BROKEN: {problem}")
        if decisions.ok:
            click.echo(f"decisions: {decisions.decisions} signatures verify; {decisions.approval_rows} approval "
                       f"rows are backed by them; {decisions.runs} runs match their signed requests")
        if decisions.legacy_runs:
            click.echo(f"note: {decisions.legacy_runs} runs predate signed decisions and are not checked")
    if not decisions.ok:
        sys.exit(1)


def _verify_checkpointed(
    app: AppContext, expect_head: str | None, checkpoint_dir: Path | None, public_key: Path | None
) -> tuple[VerifyResult, Any]:
    from treasury.audit.checkpoint_verify import verify_with_checkpoints
    from treasury.audit.checkpoints import CheckpointStore
    from treasury.audit.server_key import load_public_key
    from treasury.runtime import checkpoint_dir as default_dir

    engine = app.engine()
    folder = checkpoint_dir if checkpoint_dir is not None else default_dir(app.settings, engine)
    try:
        pinned = load_public_key(public_key) if public_key is not None else None
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from None
    try:
        return verify_with_checkpoints(engine, None if folder is None else CheckpointStore(folder),
                                       expect_head=expect_head, public_key=pinned,
                                       every_events=app.settings.checkpoint_every_events)
    except ParameterError as exc:
        raise click.BadParameter(exc.reason, param_hint="--expect-head") from None


def _print_checkpoints(report: dict[str, Any]) -> None:
    if report["latest_seq"] is not None:
        click.echo(f"checkpoints: {report['count']} in {report['dir']}, latest seq {report['latest_seq']} "
                   f"({report['latest_at']}), signed by {report['key_id']}")
    for note in report["notes"]:
        click.echo(f"checkpoints: {note}")


@audit.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as a JSON object.")
@pass_app
def checkpoint_cmd(app: AppContext, as_json: bool) -> None:
    """Sign and store a checkpoint of the chain head now (if it moved since the latest one).

    Workers do this by themselves; run it from cron where events are written by short CLI
    commands only, so a quiet log is anchored too.
    """
    from treasury.audit.anchoring import installed

    checkpointer = installed(app.engine())
    if checkpointer is None:
        app.fail("no checkpoint directory is configured for this database (set TREASURY_CHECKPOINT_DIR)")
        return
    written = checkpointer.tick(app.engine(), force=True)
    latest = written or checkpointer.store.latest()
    data = {"written": written is not None, "dir": str(checkpointer.store.path),
            "seq": latest.seq if latest else 0, "hash": latest.hash if latest else None}
    if as_json:
        app.print_json(data)
    elif written is not None:
        click.echo(f"wrote {checkpointer.store.path / written.name}: seq {written.seq} hash {written.hash}")
    else:
        click.echo(f"nothing new to checkpoint: the latest checkpoint is seq {data['seq']}")


@audit.command("export")
@click.argument("run_id", metavar="RUN")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write here.")
@click.option("--json", "as_json", is_flag=True, help="With --out, print a JSON summary.")
@pass_app
def export_cmd(app: AppContext, run_id: str, out: Path | None, as_json: bool) -> None:
    """Write the evidence bundle of RUN (JSON, to stdout unless --out)."""
    filters.existing_run(app.engine(), run_id)  # an unknown run is a usage error (exit 2)
    bundle = export_run(app.engine(), run_id, clock=app.clock)
    _add_decisions(app, bundle, run_id)
    text = dumps(bundle) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    chain = bundle["chain"]
    summary = {
        "run_id": run_id,
        "file": str(out),
        "events": len(bundle["events"]),
        "from_seq": chain["from_seq"],
        "to_seq": chain["to_seq"],
    }
    if as_json:
        app.print_json(summary)
    else:
        click.echo(
            f"wrote {out}: run {run_id}, {summary['events']} events, "
            f"chain seq {summary['from_seq']}..{summary['to_seq']}"
        )


def _add_decisions(app: AppContext, bundle: dict[str, Any], run_id: str) -> None:
    """The run's signed documents, signatures and public keys, for offline ``ssh-keygen -Y verify``."""
    from treasury.audit.bundle import _bundle_digest
    from treasury.runs.reverify import decisions_evidence

    bundle["decisions"] = decisions_evidence(app.engine(), run_id)
    bundle["bundle_digest"] = _bundle_digest(bundle)


@audit.command("verify-bundle")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--against-db", is_flag=True, help="Also require every hash to match this database's log.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON object.")
@pass_app
def verify_bundle_cmd(app: AppContext, file: Path, against_db: bool, as_json: bool) -> None:
    """Check an evidence bundle on its own; exit 1 if it does not verify."""
    try:
        bundle = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{file}: not a readable JSON file ({exc})", param_hint="FILE") from None
    if not isinstance(bundle, dict):
        raise click.BadParameter(f"{file}: expected a JSON object", param_hint="FILE")
    result = check_bundle_against_db(app.engine(), bundle) if against_db else verify_bundle(bundle)
    _print_verify(app, result, as_json, "chain entries")


def register(cli: click.Group) -> None:
    """Add ``treasury audit`` and its subcommands."""
    cli.add_command(audit)
