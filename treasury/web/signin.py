"""Sign-in with a passkey, sign-out, and enrolment of a passkey from an invitation link.

Before there is a session, the ceremony's challenge and a CSRF token live in a short-lived
signed cookie (``treasury_ceremony``, five minutes, HttpOnly, SameSite=Strict); the form
must carry the same CSRF token. A successful sign-in opens a server-side session.
"""

from __future__ import annotations

import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from treasury.errors import DecisionRefused
from treasury.web import sessions
from treasury.web.console import Console, console_of, problem, render, signed_in
from treasury.web.roles import first_page
from treasury.web.security import csrf_ok

CEREMONY_COOKIE = "treasury_ceremony"
CEREMONY_SECONDS = 300


def _b64(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _serializer(console: Console) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(console.cookie_key, salt="treasury.web.ceremony")


def _set_cookie(console: Console, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=console.secure_cookies, path="/")


def _ceremony_cookie(console: Console, challenge: bytes, purpose: str) -> tuple[str, str]:
    """(the form's CSRF token, the cookie that holds it with the challenge)."""
    csrf = secrets.token_urlsafe(24)
    return csrf, _serializer(console).dumps({"c": _b64(challenge), "t": csrf, "p": purpose})


def _ceremony(request: Request, purpose: str, csrf: str) -> bytes | None:
    """The challenge of this browser's ceremony, when its cookie is fresh and the form's CSRF matches."""
    raw = request.cookies.get(CEREMONY_COOKIE)
    if not raw:
        return None
    try:
        data: dict[str, Any] = _serializer(console_of(request)).loads(raw, max_age=CEREMONY_SECONDS)
    except BadSignature:
        return None
    if data.get("p") != purpose or not csrf_ok(str(data.get("t")), csrf):
        return None
    return _unb64(str(data["c"]))


def _safe_next(value: str | None) -> str | None:
    """A relative path on this site only (no //host, no scheme)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def sign_in_page(request: Request) -> Response:
    console = console_of(request)
    found = signed_in(request)
    if found is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")) or first_page(found.roles), 303)
    challenge = secrets.token_bytes(32)
    csrf, cookie = _ceremony_cookie(console, challenge, "sign-in")
    response = render(request, "sign_in.html", options=console.passkeys.sign_in_options(challenge), csrf=csrf,
                      next=_safe_next(request.query_params.get("next")) or "")
    _set_cookie(console, response, CEREMONY_COOKIE, cookie, CEREMONY_SECONDS)
    return response


async def sign_in(request: Request) -> Response:
    form = await request.form()
    fields = {k: str(form.get(k) or "") for k in ("credential", "csrf", "next")}
    return await run_in_threadpool(_sign_in, request, fields)


def _sign_in(request: Request, fields: dict[str, str]) -> Response:
    console = console_of(request)
    challenge = _ceremony(request, "sign-in", fields["csrf"])
    if challenge is None:
        return problem(request, 403, "Sign-in refused", "the sign-in form is stale or was not made for this browser; "
                       "reload the sign-in page")
    try:
        person = console.passkeys.sign_in(challenge, fields["credential"])
    except DecisionRefused as exc:
        console.desk.record("web.sign_in_refused", "unknown", {"reason": str(exc)})
        return problem(request, 403, "Sign-in refused", str(exc))
    found = console.desk.people().persons.get(person)
    if found is None:
        return problem(request, 403, "Sign-in refused", f"{person!r} is no longer in people.yaml")
    with console.desk.engine.begin() as conn:
        token, _ = sessions.open_session(conn, person, now=console.clock.now())
    console.desk.record("web.signed_in", person, {})
    response = RedirectResponse(_safe_next(fields["next"]) or first_page(found.roles), status_code=303)
    _set_cookie(console, response, sessions.COOKIE, token, None)
    response.delete_cookie(CEREMONY_COOKIE, path="/")
    return response


async def sign_out(request: Request) -> Response:
    form = await request.form()
    csrf = str(form.get("csrf") or "")
    return await run_in_threadpool(_sign_out, request, csrf)


def _sign_out(request: Request, csrf: str) -> Response:
    console = console_of(request)
    found = signed_in(request)
    if found is None:
        return RedirectResponse("/sign-in", status_code=303)
    if not csrf_ok(found.session.csrf, csrf):
        return problem(request, 403, "Refused", "the form's CSRF token is missing or wrong; reload the page", found)
    with console.desk.engine.begin() as conn:
        sessions.end_session(conn, request.cookies.get(sessions.COOKIE), now=console.clock.now())
    console.desk.record("web.signed_out", found.person, {})
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def enrol_page(request: Request) -> Response:
    console = console_of(request)
    token = request.path_params["token"]
    try:
        person = console.passkeys.invited(token)
    except DecisionRefused as exc:
        return problem(request, 404, "Invitation not valid", str(exc))
    found = console.desk.people().persons.get(person)
    name = (found.name if found else None) or person
    options, challenge = console.passkeys.enrol_options(person, name)
    csrf, cookie = _ceremony_cookie(console, challenge, f"enrol:{token}")
    response = render(request, "enrol.html", person=person, name=name, options=options, token=token, csrf=csrf)
    _set_cookie(console, response, CEREMONY_COOKIE, cookie, CEREMONY_SECONDS)
    return response


async def enrol(request: Request) -> Response:
    form = await request.form()
    fields = {k: str(form.get(k) or "") for k in ("credential", "csrf")}
    return await run_in_threadpool(_enrol, request, fields)


def _enrol(request: Request, fields: dict[str, str]) -> Response:
    console = console_of(request)
    token = request.path_params["token"]
    challenge = _ceremony(request, f"enrol:{token}", fields["csrf"])
    if challenge is None:
        return problem(request, 403, "Enrolment refused", "the enrolment form is stale or was not made for this "
                       "browser; open the invitation link again")
    try:
        person = console.passkeys.enrol(token, challenge, fields["credential"])
    except DecisionRefused as exc:
        return problem(request, 409, "Enrolment refused", str(exc))
    response = render(request, "enrolled.html", person=person)
    response.delete_cookie(CEREMONY_COOKIE, path="/")
    return response

