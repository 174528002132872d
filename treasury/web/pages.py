"""The read pages: inbox, runs, a run's timeline, attention, schedules, audit (with export), exchange.

Handlers are plain functions (Starlette runs them in its thread pool: the desk is synchronous).
The inbox and a run's page poll ``?part=live`` for their changing region.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from treasury.audit import AuditRecord
from treasury.audit.canonical import canonical_json
from treasury.display import json_safe
from treasury.errors import RunStateError
from treasury.models import RunState
from treasury.monitoring.health import check_database, check_migrations, run_checks
from treasury.schema import status
from treasury.web.console import console_of, problem, render, render_live, signed_in, viewer
from treasury.web.desk import AuditFilter, RunFilter
from treasury.web.roles import first_page

CSV_COLUMNS = ("seq", "at", "actor", "run_id", "step_id", "type", "payload", "prev_hash", "hash")
AUDIT_PAGE = 200


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _time(request: Request, name: str, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """A date or date-time from a filter field, read in the desk's zone (a date alone: its midnight)."""
    value = _text(request, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date (2026-12-08) or a time (2026-12-08T09:00)") from None
    if len(value) == 10 and end:  # "until 2026-12-08" includes that day
        parsed = datetime.combine(parsed.date(), time.max)
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def home(request: Request) -> Response:
    found = signed_in(request)
    if found is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse(first_page(found.roles), status_code=303)


def inbox(request: Request) -> Response:
    who = viewer(request, "inbox")
    items = console_of(request).desk.inbox(who.person)
    return render_live(request, "inbox.html", "inbox_live.html", viewer=who, items=items)


def runs(request: Request) -> Response:
    who = viewer(request, "runs")
    console = console_of(request)
    zone = console.settings.zone
    state = _text(request, "state")
    try:
        if state is not None and state.upper() not in RunState.__members__:
            raise ValueError(f"state: {state!r} is not a run state")
        flt = RunFilter(state=state.upper() if state else None, workflow=_text(request, "workflow"),
                        requester=_text(request, "requester"), since=_time(request, "since", zone),
                        until=_time(request, "until", zone, end=True))
    except ValueError as exc:
        return problem(request, 400, "Bad filter", str(exc), who)
    rows = console.desk.runs(flt)
    return render(request, "runs.html", viewer=who, rows=rows, states=list(RunState.__members__),
                  query=dict(request.query_params))


def run(request: Request) -> Response:
    who = viewer(request, "run")
    desk = console_of(request).desk
    run_id = request.path_params["run_id"]
    try:
        data = desk.run(run_id)
    except RunStateError as exc:
        return problem(request, 404, "No such run", str(exc), who)
    waiting = next((s for s in data["steps"] if s["state"] == "AWAITING_APPROVAL"), None)
    approval = desk.approval(data, waiting) if waiting is not None else None
    may_vote = (waiting is not None and who.may("approve") and who.person in (waiting.get("eligible") or [])
                and who.person != data["requested_by"]
                and not any(v["approver"] == who.person for v in waiting["votes"]))
    return render_live(request, "run.html", "run_live.html", viewer=who, run=data, waiting=waiting, approval=approval,
                       may_vote=may_vote)


def attention(request: Request) -> Response:
    who = viewer(request, "attention")
    return render(request, "attention.html", viewer=who, items=console_of(request).desk.attention())


def schedules(request: Request) -> Response:
    who = viewer(request, "schedules")
    return render(request, "schedules.html", viewer=who, rows=console_of(request).desk.schedules())


def _audit_filter(request: Request, zone: ZoneInfo, limit: int | None) -> AuditFilter:
    types = tuple(t.strip() for t in request.query_params.getlist("type") if t.strip())
    return AuditFilter(run_id=_text(request, "run"), actor=_text(request, "person"), types=types,
                       since=_time(request, "since", zone), until=_time(request, "until", zone, end=True),
                       limit=limit)


def audit(request: Request) -> Response:
    who = viewer(request, "audit")
    console = console_of(request)
    try:
        flt = _audit_filter(request, console.settings.zone, AUDIT_PAGE)
    except ValueError as exc:
        return problem(request, 400, "Bad filter", str(exc), who)
    events = list(console.desk.audit_events(flt))
    status = console.desk.audit_status() if request.query_params.get("verify") else None
    return render(request, "audit.html", viewer=who, events=events, status=status, query=dict(request.query_params),
                  export_query=str(request.url.query).replace("verify=1", "").strip("&"), page=AUDIT_PAGE)


def _csv_rows(records: Iterable[AuditRecord]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        d = r.to_dict()
        d["payload"] = canonical_json(r.payload)
        writer.writerow([d[c] for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _json_rows(records: Iterable[AuditRecord]) -> Iterator[str]:
    yield "["
    first = True
    for r in records:
        yield ("\n" if first else ",\n") + json_safe(json.dumps(r.to_dict(), ensure_ascii=False))
        first = False
    yield "]\n" if first else "\n]\n"


def audit_export(request: Request) -> Response:
    """The matching events as CSV or JSON, streamed a page of events at a time (flat memory)."""
    who = viewer(request, "audit")
    console = console_of(request)
    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        raise HTTPException(404)
    try:
        flt = _audit_filter(request, console.settings.zone, None)
    except ValueError as exc:
        return problem(request, 400, "Bad filter", str(exc), who)
    records = console.desk.audit_events(flt)
    if fmt == "csv":
        return StreamingResponse(_csv_rows(records), media_type="text/csv; charset=utf-8",
                                 headers={"content-disposition": 'attachment; filename="audit.csv"'})
    return StreamingResponse(_json_rows(records), media_type="application/json",
                             headers={"content-disposition": 'attachment; filename="audit.json"'})


def exchange(request: Request) -> Response:
    who = viewer(request, "exchange")
    data = console_of(request).desk.exchange(check_keys=bool(request.query_params.get("check")))
    return render(request, "exchange.html", viewer=who, data=data)


def healthz(request: Request) -> Response:
    """Liveness: 200 while the process serves (the database is checked by /readyz)."""
    return Response("ok\n", media_type="text/plain")


def readyz(request: Request) -> Response:
    """Readiness: the database answers and its schema is this release's."""
    engine = console_of(request).desk.engine
    report = run_checks([lambda: check_database(engine), lambda: check_migrations(engine, status)])
    body: dict[str, Any] = report.to_dict()
    return Response(json.dumps(body, default=str), status_code=200 if report.healthy else 503,
                    media_type="application/json")
