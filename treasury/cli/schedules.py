"""``treasury schedules`` and ``treasury schedule pause|resume NAME`` (a signed decision by an operator)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from treasury.cli.context import AppContext, pass_app
from treasury.cli.identity import identity_option
from treasury.errors import ApprovalRefused


class _Schedules:
    """The schedules in the workflow files and the scheduler that knows their state."""

    def __init__(self, app: AppContext) -> None:
        from treasury.cli.identity import decision_service
        from treasury.schedules.beat import Beat

        # Listing, pausing and resuming validate workflow files and read the database; they never
        # execute a step, so no exchange client is built (and none is needed to be reachable).
        self.service = decision_service(app)
        self.beat = Beat(app.engine(), self.service, app.settings.workflows_dir, clock=app.clock)
        self.specs, self.invalid = self.beat.loader.load()

    def warn_invalid(self) -> None:
        for file, message in self.invalid:
            lines = message.splitlines() or [""]
            more = f" (and {len(lines) - 1} more problems; `treasury validate {file}`)" if len(lines) > 1 else ""
            click.echo(f"warning: {file} is skipped by the scheduler: {lines[0]}{more}", err=True)

    def decide(self, app: AppContext, action: str, name: str, user: str | None, identity: str | None) -> str:
        """Pausing stops money from moving and resuming starts it again: a signed decision by an operator.

        Returns the person who signed.
        """
        from treasury.cli.identity import who_signs
        from treasury.runs.signing import standalone

        person, signer = who_signs(app, self.service.ctx.approvers, user, identity)
        if person not in self.service.ctx.approvers.users:
            raise ApprovalRefused(f"{person!r} is not a known person in config/people.yaml")
        return standalone(self.service, f"schedule.{action}", person, signer, schedule=name).person


def _status_rows(s: _Schedules) -> list[dict[str, Any]]:
    out = []
    for st in s.beat.scheduler.status(s.specs, s.invalid):
        last_state = s.service.state_of(st.last_run_id) if st.last_run_id else None
        out.append({
            "name": st.name, "workflow_file": st.workflow_file, "cron": st.cron, "timezone": st.timezone,
            "catchup": st.catchup, "paused": st.paused, "paused_by": st.paused_by,
            "next_fire_local": st.next_fire_local, "next_fire_utc": st.next_fire_utc,
            "last_due_at": st.last_due_at, "last_run_id": st.last_run_id, "last_run_state": last_state,
            "last_run_due_at": st.last_run_due_at,
            "held": st.problem is not None, "problem": st.problem,
            "missed": [{"due_at_utc": m.due_at, "due_at_local": m.due_local, "status": m.status, "why": m.why}
                       for m in st.missed],
            "missed_total": st.missed_total,
        })
    return out


MISSED_LINES = 5  # per schedule under the table; --json lists more


def _missed_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``sweep: 2026-03-02 09:00 HKT missed: workflow file broken (line 3: ...)``, newest first."""
    lines = []
    for r in rows:
        for m in r["missed"][:MISSED_LINES]:
            what = "held until the file is mended, then catch-up decides" if m["status"] == "held" else "missed"
            lines.append(f"{r['name']}: {_when(m['due_at_local'])} {what}: {m['why']}")
        more = r["missed_total"] - min(len(r["missed"]), MISSED_LINES)
        if more > 0:
            lines.append(f"{r['name']}: and {more} earlier (`treasury schedules --json` lists {len(r['missed'])})")
    return lines


def _local(value: datetime | None, timezone: str) -> datetime | None:
    return value.astimezone(ZoneInfo(timezone)) if value is not None else None


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M %Z") if value is not None else "-"


@click.command("schedules")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def schedules_cmd(app: AppContext, as_json: bool) -> None:
    """List schedules: next fire time (local and UTC), last run, paused state, missed times.

    A schedule whose workflow file no longer validates is listed as held (it does not fire
    until the file is mended; its catch-up policy then decides the times it held), and every
    invalid file is named on standard error. A paused schedule has no next fire time. Due
    times that did not fire are listed under the table with why.
    """
    s = _Schedules(app)
    rows = _status_rows(s)
    s.warn_invalid()
    if as_json:
        app.print_json(rows)
        return
    app.print_table(
        ["name", "cron", "timezone", "next (local)", "next (UTC)", "last run", "paused"],
        [(r["name"], r["cron"], r["timezone"],
          "HELD" if r["held"] else "PAUSED" if r["paused"] else _when(r["next_fire_local"]),
          _when(r["next_fire_utc"]),
          f"{r['last_run_id']} {r['last_run_state']} (due {_when(_local(r['last_run_due_at'], r['timezone']))})"
          if r["last_run_id"] else "-",
          f"yes, by {r['paused_by']}" if r["paused"] else "no")
         for r in rows],
    )
    lines = _missed_lines(rows)
    if lines:
        click.echo("\ndue times that did not fire (newest first):")
        for line in lines:
            click.echo(f"  {line}")


@click.group("schedule")
def schedule_group() -> None:
    """Pause or resume one schedule."""


def _decide(action: str) -> Any:
    @click.command(action, help=f"{action.capitalize()} the schedule NAME (audited).")
    @click.argument("name")
    @click.option("--as", "user", default=None, help="who decides (checked against --identity)")
    @identity_option
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def cmd(app: AppContext, name: str, user: str | None, identity: str | None, as_json: bool) -> None:
        s = _Schedules(app)
        user = s.decide(app, action, name, user, identity)
        if action == "pause":
            s.beat.scheduler.pause(name, by=user, specs=s.specs)
        else:
            s.beat.scheduler.resume(name, by=user, specs=s.specs)
        row = next((r for r in _status_rows(s) if r["name"] == name), None)
        if as_json:
            app.print_json(row if row is not None else {"name": name, "paused": action == "pause"})
        else:
            click.echo(f"schedule {name}: {'paused' if action == 'pause' else 'running'}")

    return cmd


schedule_group.add_command(_decide("pause"))
schedule_group.add_command(_decide("resume"))


def register(cli: click.Group) -> None:
    cli.add_command(schedules_cmd)
    cli.add_command(schedule_group)
