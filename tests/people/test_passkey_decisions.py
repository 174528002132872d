"""A passkey is a second credential of a signed decision: a WebAuthn assertion whose challenge
is the SHA-256 of the decision document. Approve a payout with passkeys end to end (quorum, the
withdrawal sent once, audit verify), and every way such an approval is refused, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from tests.runs.conftest import PAYOUT, load
from tests.webauthn_soft import SoftAuthenticator
from treasury.audit import append_event, query_events
from treasury.errors import ApprovalRefused, DecisionRefused
from treasury.people import passkeys as pk
from treasury.people.decisions import SignedDecision, document_text
from treasury.people.invites import create_invite
from treasury.people.tables import decisions, passkeys
from treasury.runs import signing as deciding
from treasury.runs.reverify import decisions_evidence, verify_decisions

WITHDRAW = "/api/v1/account/withdraw"
RP = pk.RelyingParty(rp_id="localhost", rp_name="treasury", origin="http://localhost:8700")


def _withdrawals(wire: Any) -> list[Any]:
    return [r for r in wire.writes() if r.url.path == WITHDRAW]


def _enrol(rt: Any, person: str) -> SoftAuthenticator:
    auth = SoftAuthenticator()
    now = rt.service.now()
    token = create_invite(rt.engine, person, by="erin", ttl=pk_ttl(), now=now, audit=append_event)
    _, challenge = pk.registration_options(RP, person, person.title(), exclude=[])
    with rt.engine.begin() as conn:
        pk.enrol(conn, RP, token, challenge, auth.create(challenge), now=now, audit=append_event)
    return auth


def pk_ttl() -> Any:
    from datetime import timedelta

    return timedelta(hours=1)


def _passkey_vote(rt: Any, run_id: str, person: str, auth: SoftAuthenticator, **get: Any) -> SignedDecision:
    """What the console does: the document, then an assertion over its SHA-256."""
    doc = document_text(deciding.vote_document(rt.service, run_id, person, "approve", None))
    return pk.webauthn_signed(doc, auth.get(hashlib.sha256(doc.encode()).digest(), **get), RP)


def _start(rt: Any) -> str:
    return str(rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin"))


@pytest.fixture
def setup(make_runtime: Any, engine: Engine) -> tuple[Any, Any, dict[str, SoftAuthenticator]]:
    rt, wire = make_runtime(engine=engine)
    return rt, wire, {"alice": _enrol(rt, "alice"), "carol": _enrol(rt, "carol")}


def test_two_passkey_approvals_send_the_payout_once_and_verify(setup: Any) -> None:
    rt, wire, auth = setup
    run_id = _start(rt)
    rt.service.ctx.clock.advance(5)
    assert rt.service.approve(run_id, "alice", signed=_passkey_vote(rt, run_id, "alice", auth["alice"])) \
        == "AWAITING_APPROVAL"
    assert _withdrawals(wire) == []
    assert rt.service.approve(run_id, "carol", signed=_passkey_vote(rt, run_id, "carol", auth["carol"])) \
        == "SUCCEEDED"
    assert len(_withdrawals(wire)) == 1
    granted = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "approval.granted"]
    assert [e.actor for e in granted] == ["alice", "carol"]
    assert granted[0].payload["decision"]["key"] == auth["alice"].credential_id
    assert granted[0].payload["decision"]["webauthn"]["credential_id"] == auth["alice"].credential_id
    with rt.engine.connect() as conn:
        rows = conn.execute(select(decisions.c.key_fp, decisions.c.signature)
                            .where(decisions.c.kind == "approve").order_by(decisions.c.person)).all()
    assert [r.key_fp for r in rows] == [auth["alice"].credential_id, auth["carol"].credential_id]
    assert all(r.signature.startswith('{"webauthn":') for r in rows)
    report = verify_decisions(rt.engine)
    assert report.ok, report.problems
    assert report.approval_rows == 2

    bundle = decisions_evidence(rt.engine, run_id)
    votes = [d for d in bundle["documents"] if d["kind"] == "approve"]
    assert sorted((d["person"], d["credential_id"]) for d in votes) == [
        ("alice", auth["alice"].credential_id), ("carol", auth["carol"].credential_id)]
    assert all(d["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----") and d["webauthn"] for d in votes)
    assert "webauthn" in bundle["how_to_verify_passkeys"]


def test_refused_passkey_approvals(setup: Any) -> None:
    rt, wire, auth = setup
    run_id = _start(rt)
    rt.service.ctx.clock.advance(5)
    alice = auth["alice"]
    doc = document_text(deciding.vote_document(rt.service, run_id, "alice", "approve", None))
    other = document_text(deciding.vote_document(rt.service, run_id, "alice", "approve", "other parameters"))
    refusals = [
        # an assertion over another document (other parameters) does not sign this one
        (pk.webauthn_signed(doc, alice.get(hashlib.sha256(other.encode()).digest())), "challenge"),
        (_passkey_vote(rt, run_id, "alice", alice, origin="http://evil.example"), "origin"),
        (_passkey_vote(rt, run_id, "alice", alice, rp_id="evil.example"), "RP ID"),
        (_passkey_vote(rt, run_id, "alice", alice, present=False), "not present"),
        # carol's credential on alice's document
        (pk.webauthn_signed(doc, auth["carol"].get(hashlib.sha256(doc.encode()).digest())), "enrolled to 'carol'"),
        (_passkey_vote(rt, run_id, "alice", SoftAuthenticator()), "not an enrolled passkey"),
    ]
    for signed, why in refusals:
        with pytest.raises(DecisionRefused, match=why):
            rt.service.approve(run_id, "alice", signed=signed)
    # a credential enrolled after the document was issued does not sign it
    early = document_text(deciding.vote_document(rt.service, run_id, "alice", "approve", None))
    rt.service.ctx.clock.advance(5)
    late = _enrol(rt, "alice")
    with pytest.raises(DecisionRefused, match="after the decision was issued"):
        rt.service.approve(run_id, "alice", signed=pk.webauthn_signed(
            early, late.get(hashlib.sha256(early.encode()).digest())))
    assert rt.service.show(run_id)["approvals"] == []
    refused = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "decision.refused"]
    assert len(refused) == len(refusals) + 1

    signed = _passkey_vote(rt, run_id, "alice", alice, count=10)
    rt.service.approve(run_id, "alice", signed=signed)
    with pytest.raises((DecisionRefused, ApprovalRefused)):  # the same decision again (a retried POST)
        rt.service.approve(run_id, "alice", signed=signed)
    assert len(rt.service.show(run_id)["approvals"]) == 1
    assert _withdrawals(wire) == []

    # a cloned authenticator: carol's count goes back on a second run
    rt.service.approve(run_id, "carol", signed=_passkey_vote(rt, run_id, "carol", auth["carol"], count=20))
    assert len(_withdrawals(wire)) == 1
    second = _start(rt)
    rt.service.ctx.clock.advance(5)
    with pytest.raises(DecisionRefused, match="cloned"):
        rt.service.approve(second, "carol", signed=_passkey_vote(rt, second, "carol", auth["carol"], count=19))
    assert rt.service.show(second)["approvals"] == []
    assert verify_decisions(rt.engine).ok


def _tamper(rt: Any, person: str, **values: Any) -> str:
    with rt.engine.begin() as conn:
        nonce = conn.execute(select(decisions.c.nonce).where(decisions.c.kind == "approve",
                                                             decisions.c.person == person)).scalar_one()
        conn.execute(update(decisions).where(decisions.c.nonce == nonce).values(**values))
    return str(nonce)


def _approved(setup: Any) -> tuple[Any, str]:
    rt, _, auth = setup
    run_id = _start(rt)
    rt.service.ctx.clock.advance(5)
    for person in ("alice", "carol"):
        rt.service.approve(run_id, person, signed=_passkey_vote(rt, run_id, person, auth[person]))
    assert verify_decisions(rt.engine).ok
    return rt, run_id


def test_a_tampered_stored_assertion_fails_verify_and_names_the_row(setup: Any) -> None:
    rt, _ = _approved(setup)
    with rt.engine.connect() as conn:
        envelope = json.loads(conn.execute(select(decisions.c.signature).where(
            decisions.c.kind == "approve", decisions.c.person == "alice")).scalar_one())
    body = envelope["webauthn"]
    body["signature"] = body["signature"][:-4] + ("AAAA" if body["signature"][-4:] != "AAAA" else "BBBB")
    nonce = _tamper(rt, "alice", signature=json.dumps(envelope, sort_keys=True, separators=(",", ":")))
    report = verify_decisions(rt.engine)
    assert not report.ok
    assert any(p.startswith(f"decision {nonce} (approve by alice") and "assertion" in p for p in report.problems)


def test_a_tampered_document_fails_verify_and_names_the_row(setup: Any) -> None:
    rt, _ = _approved(setup)
    with rt.engine.connect() as conn:
        document = conn.execute(select(decisions.c.document).where(
            decisions.c.kind == "approve", decisions.c.person == "carol")).scalar_one()
    nonce = _tamper(rt, "carol", document=document.replace('"issued_at":"', '"issued_at":"1'))
    report = verify_decisions(rt.engine)
    assert any(p.startswith(f"decision {nonce} (approve by carol") for p in report.problems), report.problems


def test_a_swapped_public_key_fails_verify(setup: Any) -> None:
    """A database owner who replaces a passkey's public key (and re-signs with their own) is caught:
    the key must be the one audited when the credential was enrolled."""
    rt, _ = _approved(setup)
    with rt.engine.connect() as conn:
        row = conn.execute(select(decisions.c.document, decisions.c.signature, decisions.c.key_fp).where(
            decisions.c.kind == "approve", decisions.c.person == "alice")).one()
    # the rogue key gets alice's credential id, and signs her document again
    rogue = SoftAuthenticator(credential=base64url_to_bytes(row.key_fp))
    _, challenge = pk.registration_options(RP, "alice", "Alice", exclude=[])
    rogue_key = pk.verify_registration(RP, "alice", challenge, rogue.create(challenge)).public_key
    forged = pk.webauthn_signed(row.document, rogue.get(hashlib.sha256(row.document.encode()).digest()), RP)
    with rt.engine.begin() as conn:
        original = conn.execute(select(passkeys.c.public_key).where(passkeys.c.person == "alice")).scalar_one()
        conn.execute(update(passkeys).where(passkeys.c.person == "alice")
                     .values(public_key=bytes_to_base64url(rogue_key)))
    nonce = _tamper(rt, "alice", signature=forged.signature)
    report = verify_decisions(rt.engine)
    assert any(p.startswith(f"decision {nonce} (approve by alice") and "not the one audited" in p
               for p in report.problems), report.problems
    # with the row put back, the forged assertion still fails against the audited key
    with rt.engine.begin() as conn:
        conn.execute(update(passkeys).where(passkeys.c.person == "alice").values(public_key=original))
    report = verify_decisions(rt.engine)
    assert any(p.startswith(f"decision {nonce} (approve by alice") and "Could not verify" in p
               for p in report.problems), report.problems
