"""Headers on every answer, the CSRF check, and the seal on documents the console issues.

- Every response carries a Content-Security-Policy with no inline script (the page scripts
  are static files), ``frame-ancestors 'none'``, ``Referrer-Policy: no-referrer`` and
  ``nosniff``; pages are not cached.
- Every form carries the session's CSRF token; a POST without the right one is refused.
- A decision document the console builds is sealed to the session that asked for it, so a
  POST can only submit a document this server issued to this session, recently.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """ASGI middleware: adds ``HEADERS`` (and ``no-store`` outside /static) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in names]
                if not static and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def csrf_ok(expected: str, given: object) -> bool:
    """Whether a form's CSRF token is the session's (compared in constant time)."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class Seal:
    """Seals a document text to a session: a POST may only submit what this server issued to it.

    The key is made at start-up: a restart voids documents in flight, which are minutes old
    at most (they expire at the door after ``TREASURY_DECISION_MAX_AGE`` anyway).
    """

    def __init__(self, max_age: float, key: bytes | None = None) -> None:
        self._signer = TimestampSigner(key or secrets.token_bytes(32), salt="treasury.web.document")
        self.max_age = max_age

    @staticmethod
    def _subject(session_hash: str, text: str) -> str:
        return f"{session_hash}.{hashlib.sha256(text.encode()).hexdigest()}"

    def seal(self, session_hash: str, text: str) -> str:
        return self._signer.sign(self._subject(session_hash, text)).decode()

    def holds(self, session_hash: str, text: str, seal: object) -> bool:
        """Whether ``seal`` was issued for exactly ``text`` in this session, within ``max_age``."""
        if not isinstance(seal, str) or not seal:
            return False
        try:
            subject = self._signer.unsign(seal, max_age=int(self.max_age)).decode()
        except (BadSignature, SignatureExpired):
            return False
        return hmac.compare_digest(subject, self._subject(session_hash, text))
