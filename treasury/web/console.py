"""What every page handler shares: the desk, the settings, the clock, the signed-in viewer, rendering.

``viewer(request, page)`` is the guard every page and action goes through: no live session
sends the browser to the sign-in page, a role that the page does not allow is a 403.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from treasury.clock import Clock
from treasury.display import escape_text
from treasury.web import roles, sessions
from treasury.web.ceremony import Passkeys
from treasury.web.config import WebSettings
from treasury.web.desk import Desk
from treasury.web.render import environment
from treasury.web.security import Seal


class NotSignedIn(Exception):
    """No live session: the browser goes to the sign-in page."""


class Forbidden(Exception):
    """The person's roles do not allow this page or action (403)."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person looking at a page."""

    person: str
    name: str
    roles: frozenset[str]
    session: sessions.WebSession

    def may(self, what: str) -> bool:
        return roles.allowed(self.roles, what)


@dataclass
class Console:
    desk: Desk
    passkeys: Passkeys
    settings: WebSettings
    clock: Clock
    decision_max_age: float
    origin: str  # the console's origin (TREASURY_WEB_ORIGIN): cookies are Secure over https
    env: Environment = field(init=False)
    seal: Seal = field(init=False)
    # signs the pre-session ceremony cookie; made at start-up (a restart voids ceremonies in flight)
    cookie_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.env = environment(self.settings.zone)
        self.seal = Seal(max_age=self.decision_max_age)
        self.cookie_key = secrets.token_bytes(32)

    @property
    def secure_cookies(self) -> bool:
        return self.origin.startswith("https://")

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings.idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.settings.absolute_hours)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def viewer(request: Request, what: str) -> Viewer:
    """The signed-in person, allowed ``what`` (a page or an action of ``roles``).

    Raises:
        NotSignedIn: no live session (time-outs end it for good).
        Forbidden: the person's roles do not allow ``what``, or they left people.yaml.
    """
    found = signed_in(request)
    if found is None:
        raise NotSignedIn()
    if not found.may(what):
        raise Forbidden(f"{found.person} ({', '.join(sorted(found.roles)) or 'no role'}) may not open {what}")
    return found


def signed_in(request: Request) -> Viewer | None:
    """The viewer of a live session, or None."""
    console = console_of(request)
    with console.desk.engine.begin() as conn:
        # a page's own polling for changes is not the person using it: it does not reset the idle time
        session = sessions.current_session(conn, request.cookies.get(sessions.COOKIE), now=console.clock.now(),
                                           idle=console.idle, absolute=console.absolute,
                                           touch=request.query_params.get("part") != "live")
    if session is None:
        return None
    person = console.desk.people().persons.get(session.person)
    if person is None:
        return None  # removed from people.yaml: the session holds no more rights
    return Viewer(session.person, person.name or session.person, frozenset(person.roles), session)


def render(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    context.setdefault("viewer", None)
    context.setdefault("poll", console.settings.poll_seconds)
    html = console.env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=code)


LIVE_HEADER = "x-live-version"


def render_live(request: Request, page: str, region: str, **context: Any) -> HTMLResponse:
    """A page with a live region: the whole page, or (``?part=live``) the region alone.

    Both carry the region's version (a digest of its HTML: ``data-version`` on the page, a
    header on the region), so the page's script replaces the region only when it changed.
    """
    console = console_of(request)
    context.setdefault("poll", console.settings.poll_seconds)
    html = console.env.get_template(region).render(request=request, **context)
    version = hashlib.sha256(html.encode()).hexdigest()[:16]
    if request.query_params.get("part") == "live":
        return HTMLResponse(html, headers={LIVE_HEADER: version})
    return render(request, page, live_html=Markup(html), live_version=version, **context)


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(status_code=303, headers={"location": f"/sign-in?next={quote(target, safe='')}"})


def problem(request: Request, status: int, title: str, message: str, viewer: Viewer | None = None,
            **extra: Any) -> HTMLResponse:
    """An error page: what went wrong, in words (escaped)."""
    return render(request, "problem.html", code=status, title=title, message=escape_text(message),
                  viewer=viewer, **extra)
