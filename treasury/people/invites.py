"""One-time enrolment invitations: a link an operator creates for one person (design §9).

The token is shown once (``{origin}/enrol/{token}``); only its SHA-256 is stored, and neither
the token nor its hash is written to the audit history or to logs. An invitation expires and
is redeemed at most once (a conditional UPDATE, so two redemptions racing cannot both win).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from treasury.errors import DecisionRefused
from treasury.people.tables import invites

PERSON_INVITED = "person.invited"


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def enrol_url(origin: str, token: str) -> str:
    return f"{origin.rstrip('/')}/enrol/{token}"


def create_invite(engine: Engine, person: str, *, by: str, ttl: timedelta, now: datetime, audit: Any,
                  decision: str | None = None) -> str:
    """Create an invitation for ``person`` (audited ``person.invited``); the token, shown once.

    ``decision`` is the id of the operator's signed ``credential.enrol`` decision, when there is one.
    ``audit`` is ``append_event``-shaped.
    """
    if ttl <= timedelta(0):
        raise DecisionRefused("an invitation needs a positive time to live")
    token = secrets.token_urlsafe(32)
    invite_id = secrets.token_hex(8)
    expires = now + ttl
    with engine.begin() as conn:
        conn.execute(insert(invites).values(id=invite_id, token_hash=token_hash(token), person=person,
                                            created_by=by, decision=decision, created_at=now, expires_at=expires))
        audit(conn, type=PERSON_INVITED, actor=by, at=now, run_id=None, step_id=None,
              payload={"person": person, "invite": invite_id, "expires_at": expires.isoformat(),
                       "decision": decision})
    return token


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def redeem_invite(conn: Connection, token: str, *, now: datetime) -> tuple[str, str]:
    """(person, invite id) of a valid invitation, which is marked used in ``conn``'s transaction.

    Raises:
        DecisionRefused: the invitation is unknown, already used, or expired.
    """
    h = token_hash(token)
    done = conn.execute(update(invites).where(invites.c.token_hash == h, invites.c.used_at.is_(None),
                                              invites.c.expires_at > now).values(used_at=now))
    row = conn.execute(select(invites.c.id, invites.c.person, invites.c.used_at, invites.c.expires_at)
                       .where(invites.c.token_hash == h)).first()
    if row is None:
        raise DecisionRefused("unknown invitation: ask an operator for a new link (`treasury people invite NAME`)")
    if done.rowcount != 1:
        if row.used_at is not None:
            raise DecisionRefused(f"this invitation for {row.person!r} was already used; ask an operator for a new one")
        raise DecisionRefused(f"this invitation for {row.person!r} expired at {_aware(row.expires_at).isoformat()}; "
                              "ask an operator for a new one")
    return str(row.person), str(row.id)
