"""``treasury web``: serve the web console (where approvers approve with a passkey).

This is where the console is wired: the runtime from ``Settings``, the desk over it, the
passkey ceremony for ``TREASURY_WEB_RP_ID``/``TREASURY_WEB_ORIGIN``, and uvicorn.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from treasury.cli.context import AppContext, pass_app


def build_console(app: AppContext, web: Any) -> Any:
    """The console's ASGI app over this invocation's runtime."""
    from treasury.audit import append_event
    from treasury.people.passkeys import RelyingParty
    from treasury.schedules.beat import ScheduleLoader
    from treasury.web.app import create_app
    from treasury.web.ceremony import PasskeyCeremony
    from treasury.web.desk import RuntimeDesk

    settings = app.settings
    runtime = app.runtime()
    loader = ScheduleLoader(settings.workflows_dir, runtime.service)  # keeps unchanged files validated once
    desk = RuntimeDesk(runtime, load_schedules=loader.load)
    rp = RelyingParty(rp_id=settings.web_rp_id, rp_name="treasury", origin=settings.web_origin)
    ceremony = PasskeyCeremony(runtime.engine, rp, app.clock, append_event)
    return create_app(desk, ceremony, web, clock=app.clock, origin=settings.web_origin,
                      decision_max_age=settings.decision_max_age)


def invite_links(app: AppContext, *, ttl: timedelta = timedelta(hours=24)) -> dict[str, str]:
    """Simulator only: an enrolment link for every person, each invitation signed by a demo operator."""
    from treasury.audit import append_event
    from treasury.cli.identity import decision_service
    from treasury.people.invites import create_invite, enrol_url
    from treasury.runs.signing import standalone

    svc = decision_service(app, require_credentials=False)
    people = svc.ctx.approvers
    operators = sorted(p for p in people.persons if people.has_role(p, "operator"))
    links = {}
    for name in sorted(people.persons):
        by = next((o for o in operators if o != name), None)
        if by is None:
            continue
        now = app.clock.now()
        expires = (now + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        verified = standalone(svc, "credential.enrol", by, None, invitee=name, expires_at=expires)
        token = create_invite(app.engine(), name, by=verified.person, ttl=ttl, now=now, audit=append_event,
                              decision=verified.signed.doc_id)
        links[name] = enrol_url(app.settings.web_origin, token)
    return links


def serve_console(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the console until Ctrl-C or SIGTERM."""
    import uvicorn

    from treasury.web.config import WebSettings

    web = WebSettings()
    asgi = build_console(app, web)
    host = host or web.host
    port = port or web.port
    click.echo(f"treasury web console on http://{host}:{port} (passkeys for {app.settings.web_origin}); "
               "Ctrl-C stops", err=True)
    uvicorn.run(asgi, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


@click.command("web")
@click.option("--host", default=None, help="address to listen on (default: TREASURY_WEB_HOST, else 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default: TREASURY_WEB_PORT, else 8700)")
@pass_app
def web_cmd(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the web console: inbox, runs, attention, schedules, audit, exchange; decisions signed with passkeys.

    Passkeys are bound to TREASURY_WEB_RP_ID (default localhost) and TREASURY_WEB_ORIGIN
    (default http://localhost:8700): open the console at exactly that origin. A person
    enrols with a link from `treasury people invite NAME`.
    """
    app.require_config()
    serve_console(app, host, port)


def register(cli: click.Group) -> None:
    cli.add_command(web_cmd)
