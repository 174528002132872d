"""The ASGI app of the console: routes, security headers, and the error pages.

``create_app`` takes everything it needs (the desk, the passkey ceremony, the settings, the
clock); ``treasury web`` builds them from ``Settings`` and serves the app with uvicorn.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from treasury.clock import Clock
from treasury.web import decide, pages, signin
from treasury.web.ceremony import Passkeys
from treasury.web.config import WebSettings
from treasury.web.console import Console, Forbidden, NotSignedIn, problem, sign_in_redirect, signed_in
from treasury.web.desk import Desk
from treasury.web.render import STATIC
from treasury.web.security import SecurityHeaders


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    return sign_in_redirect(request)


async def _forbidden(request: Request, exc: Exception) -> Response:
    return problem(request, 403, "Not allowed", str(exc) or "your roles do not allow this",
                   signed_in(request) if request.cookies else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = {404: "Not found", 405: "Method not allowed"}.get(status, "Error")
    return problem(request, status, title, str(getattr(exc, "detail", "")) or title)


def routes() -> list[Route | Mount]:
    return [
        Route("/", pages.home),
        Route("/sign-in", signin.sign_in_page, methods=["GET"]),
        Route("/sign-in", signin.sign_in, methods=["POST"]),
        Route("/sign-out", signin.sign_out, methods=["POST"]),
        Route("/enrol/{token}", signin.enrol_page, methods=["GET"]),
        Route("/enrol/{token}", signin.enrol, methods=["POST"]),
        Route("/inbox", pages.inbox),
        Route("/runs", pages.runs),
        Route("/runs/{run_id}", pages.run),
        Route("/runs/{run_id}/{kind:str}", decide.vote, methods=["GET"]),
        Route("/runs/{run_id}/steps/{step_id}/resolve", decide.resolve, methods=["GET"]),
        Route("/decisions", decide.submit, methods=["POST"]),
        Route("/attention", pages.attention),
        Route("/schedules", pages.schedules),
        Route("/schedules/{name}/{action:str}", decide.schedule, methods=["GET"]),
        Route("/audit", pages.audit),
        Route("/audit/export.{fmt:str}", pages.audit_export),
        Route("/exchange", pages.exchange),
        Route("/exchange/lift", decide.lift, methods=["GET"]),
        Route("/healthz", pages.healthz),
        Route("/readyz", pages.readyz),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]


def create_app(desk: Desk, passkeys: Passkeys, settings: WebSettings, *, clock: Clock, origin: str,
               decision_max_age: float) -> Starlette:
    """The console as an ASGI app. Nothing here reads the environment: it is all passed in."""
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={NotSignedIn: _not_signed_in, Forbidden: _forbidden, HTTPException: _http_error},
    )
    app.state.console = Console(desk=desk, passkeys=passkeys, settings=settings, clock=clock,
                                decision_max_age=decision_max_age, origin=origin)
    return app
