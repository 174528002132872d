"""``treasury people invite``: an operator's signed invitation, printed once, audited without
the token; in production a person whose only credential is a passkey counts as having one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.people.test_cli_signing import ADDRESS, PAYOUT_FILE, SSH_KEYGEN, Desk, pytestmark
from tests.webauthn_soft import SoftAuthenticator
from treasury.audit import append_event, query_events
from treasury.people import passkeys as pk
from treasury.settings import Environment
from treasury.store.db import make_engine

__all__ = ["SSH_KEYGEN", "pytestmark"]
RP = pk.RelyingParty(rp_id="localhost", rp_name="treasury", origin="http://localhost:8700")


def _enrol_from_link(desk: Desk, link: str, person: str) -> None:
    token = link.rsplit("/enrol/", 1)[1]
    engine = make_engine(f"sqlite:///{desk.tmp / 'cli.db'}")
    auth = SoftAuthenticator()
    _, challenge = pk.registration_options(RP, person, person, exclude=[])
    with engine.begin() as conn:
        pk.enrol(conn, RP, token, challenge, auth.create(challenge), now=desk.clock.now(), audit=append_event)
    engine.dispose()


def test_an_invitation_is_signed_printed_once_and_audited_without_its_token(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    erin = str(desk.keygen("erin"))
    code, out = desk.cli("people", "invite", "alice", "--identity", erin, "--ttl", "2h")
    assert code == 0, out
    link = out.strip().splitlines()[-1]
    assert link.startswith("http://localhost:8700/enrol/") and "valid until" in out
    token = link.rsplit("/", 1)[1]
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    events = query_events(engine)
    accepted = next(e for e in events if e.type == "decision.accepted")
    invited = next(e for e in events if e.type == "person.invited")
    assert accepted.payload["kind"] == "credential.enrol" and accepted.payload["invitee"] == "alice"
    assert invited.actor == "erin" and invited.payload["decision"] == accepted.payload["decision"]["id"]
    assert token not in json.dumps([e.payload for e in events])
    engine.dispose()
    code, out = desk.cli("people", "invite", "mallory", "--identity", erin)
    assert code == 2 and "'mallory' is not in the people registry" in out
    code, out = desk.cli("people", "invite", "alice", "--identity", erin, "--ttl", "0s")
    assert code == 2 and "--ttl" in out


def test_production_counts_a_passkey_as_a_credential(tmp_path: Path) -> None:
    desk = Desk(tmp_path, env=Environment.PRODUCTION)
    erin = desk.keygen("erin")
    run = ("run", PAYOUT_FILE, "-i", f"address={ADDRESS}", "-i", "amount=1", "--identity", str(erin))
    code, out = desk.cli(*run)
    assert code == 2 and "no key for alice, bob, carol, dave, frank" in out
    # production can still invite someone who has no credential yet, signed with the operator's key
    code, out = desk.cli("people", "invite", "alice", "--identity", str(erin))
    assert code == 0, out
    _enrol_from_link(desk, out.strip().splitlines()[-1], "alice")
    code, out = desk.cli(*run)
    assert code == 2 and "no key for bob, carol, dave, frank" in out
