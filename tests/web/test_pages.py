"""What the pages show: the inbox's approval (parameters, allowlist label, verdicts, balances,
quorum, digest), runs with filters, attention, schedules, audit with streamed exports, exchange."""

from __future__ import annotations

import csv
import io
import json

from tests.web.conftest import Console
from treasury.audit import query_events


def test_the_inbox_shows_what_the_digest_covers_and_the_projected_balance(console: Console) -> None:
    run_id = console.start_payout(requester="erin", amount="1200")
    console.runtime.service.approve(run_id, "bob")
    console.sign_in("alice")
    page = console.client.get("/inbox").text
    shown = console.runtime.service.show(run_id, with_audit=False)
    approval = next(s for s in shown["steps"] if s["kind"] == "approval")
    assert run_id in page and "vendor-payout" in page and "erin" in page
    assert '<span class="amount">1200 <span class=asset>USDT</span></span>' in page
    assert "allowlist: Vendor A" in page
    assert "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90" in page
    assert "Quorum 1 of 2" in page and "approved by bob" in page
    assert approval["digest"] in page
    assert "250000" in page and "248800" in page  # the trading account's USDT now, and after
    assert 'href="/runs/' + run_id + '/approve"' in page
    assert "<time" in page and "UTC" in page


def test_the_inbox_is_only_what_waits_for_me(console: Console) -> None:
    run_id = console.start_payout()
    console.runtime.service.approve(run_id, "bob")
    console.sign_in("bob")
    assert run_id not in console.client.get("/inbox").text  # bob voted already
    live = console.client.get("/inbox?part=live")
    assert live.status_code == 200 and "<html" not in live.text and "Nothing is waiting" in live.text


def test_a_live_region_carries_its_version_and_it_changes_only_with_its_content(console: Console) -> None:
    import re

    run_id = console.start_payout()
    console.sign_in("alice")
    page = console.client.get(f"/runs/{run_id}").text
    shown = re.search(r'data-version="([0-9a-f]+)"', page)
    assert shown is not None
    assert console.client.get(f"/runs/{run_id}?part=live").headers["x-live-version"] == shown.group(1)
    console.runtime.service.approve(run_id, "bob")
    changed = console.client.get(f"/runs/{run_id}?part=live")
    assert changed.headers["x-live-version"] != shown.group(1) and "approved by bob" in changed.text


def test_runs_filter_by_state_workflow_requester_and_date(console: Console) -> None:
    first = console.start_payout(requester="erin")
    second = console.start_payout(requester="frank")
    console.runtime.service.reject(second, "bob", "no")
    console.sign_in("ivy")
    assert {first, second} <= set(_ids(console.client.get("/runs").text))
    assert _ids(console.client.get("/runs?state=rejected").text) == [second]
    assert _ids(console.client.get("/runs?requester=erin").text) == [first]
    assert _ids(console.client.get("/runs?workflow=treasury-sweep").text) == []
    assert set(_ids(console.client.get("/runs?since=2026-06-01&until=2026-06-01").text)) == {first, second}
    assert _ids(console.client.get("/runs?until=2026-05-31").text) == []
    assert console.client.get("/runs?state=BOGUS").status_code == 400


def _ids(page: str) -> list[str]:
    import re

    return re.findall(r'<a href="/runs/([A-Za-z0-9]+)"><code>', page)


def test_a_run_page_shows_steps_client_ids_approvals_and_timeline(console: Console) -> None:
    run_id = console.start_payout()
    console.runtime.service.approve(run_id, "alice")
    console.runtime.service.approve(run_id, "bob")
    console.sign_in("ivy")
    page = console.client.get(f"/runs/{run_id}").text
    shown = console.runtime.service.show(run_id)
    pay = next(s for s in shown["steps"] if s["id"] == "pay")
    assert pay["client_order_id"] in page and pay["executions"][0]["exchange_order_id"] in page
    assert "approval.requested" in page and "request.sent" in page
    assert console.client.get("/runs/nope").status_code == 404


def test_free_text_is_escaped_and_control_characters_shown(console: Console) -> None:
    run_id = console.start_payout()
    console.runtime.service.reject(run_id, "bob", "<script>alert(1)</script> \u202eevil")
    console.sign_in("ivy")
    page = console.client.get(f"/runs/{run_id}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page and "\\u202e" in page


def test_schedules_list_next_fire_times_local_and_utc(console: Console) -> None:
    console.sign_in("olga")
    page = console.client.get("/schedules").text
    assert "treasury-sweep" in page and "HKT" in page and "/schedules/treasury-sweep/pause" in page


def test_audit_search_and_streamed_exports(console: Console) -> None:
    run_id = console.start_payout()
    console.sign_in("ivy")
    events = list(query_events(console.runtime.engine, run_id=run_id))
    page = console.client.get(f"/audit?run={run_id}").text
    assert all(f">{e.type}<" in page for e in events)
    rows = list(csv.DictReader(io.StringIO(console.client.get(f"/audit/export.csv?run={run_id}").text)))
    assert [int(r["seq"]) for r in rows] == [e.seq for e in events]
    exported = console.client.get(f"/audit/export.json?run={run_id}")
    assert exported.headers["content-type"].startswith("application/json")
    assert [e["hash"] for e in json.loads(exported.text)] == [e.hash for e in events]
    everything = json.loads(console.client.get("/audit/export.json").text)
    assert len(everything) == len(list(query_events(console.runtime.engine)))
    verified = console.client.get("/audit?verify=1").text
    assert "Chain verifies" in verified


def test_exchange_shows_keys_without_secrets_and_halts(console: Console) -> None:
    console.sign_in("olga")
    page = console.client.get("/exchange?check=1").text
    assert "withdrawals" in page and "ok: a signed read answered" in page
    assert "No key suspended, host not banned." in page and "Lift the ban" not in page


def test_attention_lists_steps_that_need_a_person(console: Console) -> None:
    from sqlalchemy import update

    from treasury.store.tables import steps

    run_id = console.start_payout()
    with console.runtime.engine.begin() as conn:  # as reconciliation leaves it when it cannot decide
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay")
                     .values(state="NEEDS_ATTENTION", error="lookup could not prove absence"))
    console.sign_in("olga")
    page = console.client.get("/attention").text
    assert run_id in page and "lookup could not prove absence" in page
    assert f"/runs/{run_id}/steps/pay/resolve" in page


def test_health_endpoints(console: Console) -> None:
    assert console.client.get("/healthz").text == "ok\n"
    ready = console.client.get("/readyz")
    assert ready.status_code == 200 and json.loads(ready.text)["healthy"] is True
