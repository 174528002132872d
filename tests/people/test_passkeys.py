"""Passkeys: enrolment by one-time invitation, sign-in, and the refusals of each ceremony,
on SQLite and PostgreSQL, with a software authenticator that answers as a browser does.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text

from tests.webauthn_soft import SoftAuthenticator
from treasury.audit import append_event, query_events
from treasury.errors import DecisionRefused
from treasury.people import passkeys as pk
from treasury.people.invites import create_invite, redeem_invite
from treasury.people.tables import invites

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
RP = pk.RelyingParty(rp_id="localhost", rp_name="treasury", origin="http://localhost:8700")


def _invite(engine: Engine, person: str = "alice", ttl: timedelta = timedelta(hours=24)) -> str:
    return create_invite(engine, person, by="erin", ttl=ttl, now=NOW, audit=append_event)


def _enrol(engine: Engine, token: str, auth: SoftAuthenticator, at: datetime = NOW) -> pk.Passkey:
    options, challenge = pk.registration_options(RP, "alice", "Alice", exclude=[])
    assert json.loads(options)["challenge"]
    with engine.begin() as conn:
        return pk.enrol(conn, RP, token, challenge, auth.create(challenge), now=at, audit=append_event)


def test_an_invited_person_enrols_once_and_signs_in(engine: Engine) -> None:
    auth = SoftAuthenticator()
    token = _invite(engine)
    passkey = _enrol(engine, token, auth)
    assert (passkey.person, passkey.credential_id, passkey.sign_count) == ("alice", auth.credential_id, 0)
    with engine.connect() as conn:
        assert [p.credential_id for p in pk.passkeys_of(conn, "alice")] == [auth.credential_id]
        stored = pk.passkey_by_id(conn, auth.credential_id)
        assert stored is not None and stored.public_key == passkey.public_key and stored.created_at == NOW
        hashes = [r.token_hash for r in conn.execute(select(invites))]
    assert hashes == ["sha256:" + hashlib.sha256(token.encode()).hexdigest()]  # never the token itself

    challenge = b"sign-in challenge 0123456789abcdef"
    options = json.loads(pk.authentication_options(RP, challenge, allow=[auth.credential_id]))
    assert options["rpId"] == "localhost" and options["allowCredentials"][0]["id"] == auth.credential_id
    with engine.begin() as conn:
        assert pk.verify_sign_in(RP, conn, challenge, auth.get(challenge), now=NOW) == "alice"
        assert pk.passkey_by_id(conn, auth.credential_id).sign_count == 1  # type: ignore[union-attr]

    events = [e for e in query_events(engine) if e.type in ("person.invited", "credential.enrolled")]
    assert [(e.type, e.actor) for e in events] == [("person.invited", "erin"), ("credential.enrolled", "alice")]
    assert events[1].payload["credential_id"] == auth.credential_id
    everything = json.dumps([e.payload for e in query_events(engine)])
    assert token not in everything and hashlib.sha256(token.encode()).hexdigest() not in everything

    with pytest.raises(DecisionRefused, match="already used"):
        _enrol(engine, token, SoftAuthenticator())


def test_expired_unknown_and_refused_invitations(engine: Engine) -> None:
    short = _invite(engine, ttl=timedelta(minutes=5))
    with pytest.raises(DecisionRefused, match="expired"):
        _enrol(engine, short, SoftAuthenticator(), at=NOW + timedelta(minutes=6))
    with pytest.raises(DecisionRefused, match="unknown invitation"):
        _enrol(engine, "not-a-token", SoftAuthenticator())
    token = _invite(engine)
    with pytest.raises(DecisionRefused, match="origin"):
        _enrol(engine, token, SoftAuthenticator(origin="http://evil.example"))
    with pytest.raises(DecisionRefused, match="RP ID"):
        _enrol(engine, token, SoftAuthenticator(rp_id="evil.example"))
    # a refused registration rolled back with its transaction: the invitation is still good
    assert _enrol(engine, token, SoftAuthenticator()).person == "alice"
    with engine.connect() as conn, pytest.raises(DecisionRefused, match="already used"):
        redeem_invite(conn, token, now=NOW)


def test_sign_in_refusals(engine: Engine) -> None:
    auth = SoftAuthenticator()
    _enrol(engine, _invite(engine), auth)
    challenge = b"the challenge the server issued!"
    for answer, why in [
        (auth.get(b"another challenge entirely......"), "challenge"),
        (auth.get(challenge, origin="http://localhost:9999"), "origin"),
        (auth.get(challenge, rp_id="example.com"), "RP ID"),
        (auth.get(challenge, present=False), "not present"),
        (auth.get(challenge, kind="webauthn.create"), "client data type"),
        (SoftAuthenticator().get(challenge), "not an enrolled passkey"),
    ]:
        with engine.begin() as conn, pytest.raises(DecisionRefused, match=why):
            pk.verify_sign_in(RP, conn, challenge, answer, now=NOW)
    with engine.begin() as conn:
        assert pk.verify_sign_in(RP, conn, challenge, auth.get(challenge, count=7), now=NOW) == "alice"
    with engine.begin() as conn, pytest.raises(DecisionRefused, match="cloned"):
        pk.verify_sign_in(RP, conn, challenge, auth.get(challenge, count=7), now=NOW)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sign_count FROM passkeys")).scalar_one() == 7
