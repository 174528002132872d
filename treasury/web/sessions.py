"""Server-side sessions of the console (table ``web_sessions``): open, look up, end.

The cookie holds a random token; the row holds its SHA-256, the person, the CSRF token of
the session, and when it was opened and last used. A session ends (for good) when it has
been idle for ``idle``, when ``absolute`` has passed since sign-in, or at sign-out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from treasury.clock import as_utc
from treasury.store.sessions import web_sessions

COOKIE = "treasury_session"
IDLE = "idle"
ABSOLUTE = "absolute"
SIGNED_OUT = "signed_out"


@dataclass(frozen=True)
class WebSession:
    """A live session: whose it is and the CSRF token every form of it carries."""

    person: str
    csrf: str
    created_at: datetime
    token_hash: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: Connection, person: str, *, now: datetime) -> tuple[str, WebSession]:
    """Start a session for ``person``; returns (the cookie's token, the session)."""
    token = secrets.token_urlsafe(32)
    session = WebSession(person=person, csrf=secrets.token_urlsafe(32), created_at=now, token_hash=_hash(token))
    conn.execute(insert(web_sessions).values(token_hash=session.token_hash, person=person, csrf=session.csrf,
                                             created_at=now, seen_at=now))
    return token, session


def current_session(conn: Connection, token: str | None, *, now: datetime, idle: timedelta,
                    absolute: timedelta, touch: bool = True) -> WebSession | None:
    """The live session of ``token``, marked as used now (unless not ``touch``); None (and the row
    ended) when timed out."""
    if not token:
        return None
    c = web_sessions.c
    row = conn.execute(select(web_sessions).where(c.token_hash == _hash(token))).first()
    if row is None or row.ended_at is not None:
        return None
    reason = None
    if now - as_utc(row.created_at) >= absolute:
        reason = ABSOLUTE
    elif now - as_utc(row.seen_at) >= idle:
        reason = IDLE
    if reason is not None:
        conn.execute(update(web_sessions).where(c.token_hash == row.token_hash, c.ended_at.is_(None))
                     .values(ended_at=now, end_reason=reason))
        return None
    if touch:
        conn.execute(update(web_sessions).where(c.token_hash == row.token_hash).values(seen_at=now))
    return WebSession(person=row.person, csrf=row.csrf, created_at=as_utc(row.created_at),
                      token_hash=row.token_hash)


def end_session(conn: Connection, token: str | None, *, now: datetime, reason: str = SIGNED_OUT) -> str | None:
    """End the session of ``token``; returns its person (None when there was no live one)."""
    if not token:
        return None
    c = web_sessions.c
    row = conn.execute(select(web_sessions.c.person).where(c.token_hash == _hash(token), c.ended_at.is_(None))).first()
    if row is None:
        return None
    conn.execute(update(web_sessions).where(c.token_hash == _hash(token)).values(ended_at=now, end_reason=reason))
    return str(row.person)
