"""Decisions in the console, end to end over HTTP: enrol, sign in, approve with a passkey, and
the withdrawal reaches the exchange once; double submits, changed runs and forged posts."""

from __future__ import annotations

import hashlib

import pytest

from tests.web.conftest import Console
from tests.web.passkey_pages import decision_form, enrol, invite, sign_in
from treasury.audit import verify_chain
from treasury.errors import ApprovalRefused
from treasury.people.decisions import document_text
from treasury.people.passkeys import webauthn_signed
from treasury.runs.reverify import verify_decisions

WITHDRAW = "/api/v1/account/withdraw"


def withdrawals(console: Console) -> int:
    return sum(1 for r in console.wire.writes() if r.url.path == WITHDRAW)


def test_two_approvers_approve_with_passkeys_and_the_withdrawal_is_sent_once(console: Console) -> None:
    alice, bob = enrol(console, "alice"), enrol(console, "bob")
    run_id = console.start_payout(requester="erin")
    for auth in (alice, bob):
        signed_in = sign_in(console, auth)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/inbox"
        inbox = console.client.get("/inbox")
        assert run_id in inbox.text
        response = console.client.post("/decisions", data=decision_form(console, f"/runs/{run_id}/approve", auth))
        assert response.status_code == 200 and "Recorded" in response.text, response.text
    assert console.runtime.service.state_of(run_id) == "SUCCEEDED"
    assert withdrawals(console) == 1
    shown = console.runtime.service.show(run_id, with_audit=False)
    assert sorted(v["approver"] for v in shown["approvals"]) == ["alice", "bob"]
    assert verify_chain(console.runtime.engine).ok
    report = verify_decisions(console.runtime.engine)
    assert report.ok, report.problems
    page = console.client.get(f"/runs/{run_id}")
    assert "SUCCEEDED" in page.text and shown["steps"][1]["client_order_id"] in page.text


def test_a_decision_sent_twice_is_recorded_once(console: Console) -> None:
    alice = enrol(console, "alice")
    run_id = console.start_payout()
    sign_in(console, alice)
    form = decision_form(console, f"/runs/{run_id}/approve", alice)
    first = console.client.post("/decisions", data=form)
    again = console.client.post("/decisions", data=form)
    assert first.status_code == 200 and "Recorded" in first.text
    assert again.status_code == 200 and "already recorded" in again.text
    votes = console.runtime.service.show(run_id, with_audit=False)["approvals"]
    assert [v["approver"] for v in votes] == ["alice"]


def test_a_run_that_changed_since_the_page_loaded_is_refused_with_what_changed(console: Console) -> None:
    alice = enrol(console, "alice")
    run_id = console.start_payout()
    sign_in(console, alice)
    form = decision_form(console, f"/runs/{run_id}/approve", alice)
    console.runtime.service.reject(run_id, "bob", "wrong invoice")  # meanwhile, with bob's key
    response = console.client.post("/decisions", data=form)
    assert response.status_code == 409
    assert "the run is now REJECTED" in response.text and "Nothing was recorded" in response.text
    assert withdrawals(console) == 0


def test_a_reject_needs_a_reason_and_signs_it(console: Console) -> None:
    bob = enrol(console, "bob")
    run_id = console.start_payout()
    sign_in(console, bob)
    ask = console.client.get(f"/runs/{run_id}/reject")
    assert ask.status_code == 200 and 'name="reason"' in ask.text and 'name="document"' not in ask.text
    form = decision_form(console, f"/runs/{run_id}/reject?reason=not+on+the+invoice", bob)
    assert '"reason":"not on the invoice"' in form["document"]
    response = console.client.post("/decisions", data=form)
    assert response.status_code == 200 and "REJECTED" in response.text
    assert console.runtime.service.state_of(run_id) == "REJECTED"


def test_the_requester_sees_no_approve_button_and_a_forged_post_is_refused(console: Console) -> None:
    alice = enrol(console, "alice")  # alice may approve, but not her own run
    run_id = console.start_payout(requester="alice")
    sign_in(console, alice)
    page = console.client.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "Approve" not in page.text and "four eyes" in page.text
    assert run_id not in console.client.get("/inbox").text
    assert console.client.get(f"/runs/{run_id}/approve").status_code == 403
    # a forged POST: a document the server never issued (no seal), signed with her passkey
    doc = console.desk.document("approve", "alice", run=run_id)
    text = document_text(doc)
    credential = alice.get(hashlib.sha256(text.encode()).digest())
    forged = console.client.post("/decisions", data={"csrf": console_csrf(console), "document": text, "seal": "x",
                                                     "credential": credential})
    assert forged.status_code == 403 and "not issued to your session" in forged.text
    # and the service refuses her signed vote even without the console
    with pytest.raises(ApprovalRefused):
        console.desk.submit(webauthn_signed(text, credential))
    assert console.runtime.service.show(run_id, with_audit=False)["approvals"] == []


def console_csrf(console: Console) -> str:
    from tests.web.passkey_pages import field

    return field(console.client.get("/runs").text, "csrf")


def test_an_invitation_works_once(console: Console) -> None:
    enrol(console, "carol")
    token = invite(console, "dave")
    assert console.client.get(f"/enrol/{token}").status_code == 200
    assert console.client.get(f"/enrol/{token}").status_code == 200  # looking does not use it up
    assert console.client.get("/enrol/not-a-token").status_code == 404


def test_a_passkey_nobody_enrolled_cannot_sign_in(console: Console) -> None:
    from tests.webauthn_soft import SoftAuthenticator

    response = sign_in(console, SoftAuthenticator())
    assert response.status_code == 403 and "not an enrolled passkey" in response.text
    assert console.client.get("/inbox").status_code == 303


def test_an_operator_pauses_and_resumes_a_schedule_with_a_signed_decision(console: Console) -> None:
    from sqlalchemy import select

    from treasury.people.tables import decisions

    olga = enrol(console, "olga")
    sign_in(console, olga)
    response = console.client.post("/decisions", data=decision_form(console, "/schedules/treasury-sweep/pause", olga))
    assert response.status_code == 200 and "schedule treasury-sweep paused" in response.text, response.text
    page = console.client.get("/schedules").text
    assert "PAUSED" in page and "by olga" in page and "/schedules/treasury-sweep/resume" in page
    response = console.client.post("/decisions", data=decision_form(console, "/schedules/treasury-sweep/resume", olga))
    assert "schedule treasury-sweep resumed" in response.text
    with console.runtime.engine.connect() as conn:
        kinds = conn.execute(select(decisions.c.kind).where(decisions.c.person == "olga")).scalars().all()
    assert sorted(kinds) == ["schedule.pause", "schedule.resume"]
    assert verify_decisions(console.runtime.engine).ok


def test_a_schedule_decision_of_an_approver_without_the_operator_role_is_403(console: Console) -> None:
    console.sign_in("abe")
    assert console.client.get("/schedules/treasury-sweep/pause").status_code == 403


def test_an_operator_lifts_an_exchange_ban_with_a_signed_decision(console: Console) -> None:
    from treasury.exchange.halts import BANNED, HOST_SCOPE, record_halt

    with console.runtime.engine.begin() as conn:
        record_halt(conn, scope=HOST_SCOPE, kind=BANNED, reason="HTTP 418 on withdraw", at=console.clock.now())
    olga = enrol(console, "olga")
    sign_in(console, olga)
    page = console.client.get("/exchange").text
    assert "host banned since" in page and 'href="/exchange/lift"' in page
    response = console.client.post("/decisions", data=decision_form(console, "/exchange/lift", olga))
    assert response.status_code == 200 and "1 ban(s) lifted" in response.text, response.text
    assert "No key suspended, host not banned." in console.client.get("/exchange").text


def test_an_operator_resolves_a_step_that_needs_attention_with_a_signed_decision(console: Console) -> None:
    lost = [{"method": "POST", "path": WITHDRAW, "mode": "error_after", "status": 500},
            {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503},
            {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503}]
    console.runtime.simulator.set_faults(lost)
    run_id = console.start_payout()
    console.runtime.service.approve(run_id, "alice")
    console.runtime.service.approve(run_id, "bob")
    console.runtime.simulator.set_faults([])
    assert console.runtime.service.state_of(run_id) == "NEEDS_ATTENTION"
    olga = enrol(console, "olga")
    sign_in(console, olga)
    attention = console.client.get("/attention").text
    assert run_id in attention and "Reconciliation for" in attention
    ask = console.client.get(f"/runs/{run_id}/steps/pay/resolve")
    assert ask.status_code == 200 and 'name="outcome"' in ask.text
    form = decision_form(console, f"/runs/{run_id}/steps/pay/resolve?outcome=succeeded&note=W-order+in+the+history",
                         olga)
    assert '"outcome":"succeeded"' in form["document"]
    response = console.client.post("/decisions", data=form)
    assert response.status_code == 200 and "SUCCEEDED" in response.text, response.text
    assert withdrawals(console) == 1  # settled by a person: nothing sent again
    assert "No step needs attention." in console.client.get("/attention").text
