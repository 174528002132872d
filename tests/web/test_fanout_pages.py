"""A fan-out in the console: one block with the list and its total, one passkey decision for the
whole list, and every withdrawal reaches the exchange once."""

from __future__ import annotations

import re
from decimal import Decimal

from tests.runs.test_fanout import VENDORS, payouts
from tests.web.conftest import ROOT, Console
from tests.web.passkey_pages import decision_form, enrol, sign_in
from treasury.execution.ids import client_id_for
from treasury.language.fanout import instance_id

ITEMS = 50
WITHDRAW = "/api/v1/account/withdraw"


def start_batch(console: Console, n: int) -> str:
    path = ROOT / "workflows" / "batch-payout.yaml"
    loaded = console.runtime.service.load_and_check(path.read_text(), source=str(path))
    run_id: str = console.runtime.service.start(loaded, {"payouts": payouts(n)}, requested_by="erin")
    return run_id


def block_of(page: str) -> str:
    found = re.search(r'<section class="guarded fan-out" id="fan-out-pay">(.*?)</section>', page, re.S)
    assert found is not None, "no fan-out block in the page"
    return found.group(1)


def test_a_fifty_item_payout_is_one_block_with_its_total_and_every_item(console: Console) -> None:
    run_id = start_batch(console, ITEMS)
    total = sum(Decimal(p["amount"]) for p in payouts(ITEMS))
    console.sign_in("alice")
    for path in ("/inbox", f"/runs/{run_id}/approve"):
        page = console.client.get(path)
        assert page.status_code == 200, page.text
        assert page.text.count('class="guarded fan-out"') == 1 and 'class="guarded"' not in page.text
        block = block_of(page.text)
        assert f'<strong class="items">{ITEMS}</strong> items' in block and "10 at a time" in block
        assert f'<td class="num total"><span class="amount">{total} <span class=asset>USDT</span>' in block
        # the paying account the digest binds each instance to
        bound = console.runtime.service.show(run_id, with_audit=False)
        account = next(s for s in bound["steps"] if s["id"] == "approve")["waiting_for"]["pay[0000]"]["account"]
        assert account and f"API key fingerprint <code>{account['key_fingerprint']}</code>" in block
        rows = re.findall(r'<tr id="item-([^"]+)">(.*?)</tr>', block, re.S)
        assert [r[0] for r in rows] == [instance_id("pay", i) for i in range(ITEMS)]
        for i, (_, row) in enumerate(rows):
            item = payouts(ITEMS)[i]
            assert item["address"] in row and f'{item["amount"]} <span class=asset>USDT</span>' in row
            assert "allowlist: " in row and "<code>withdrawals</code>" in row and "ETH" in row
        balances = re.search(r"after the whole list.*?<td>USDT</td>\s*<td class=\"num\"><span class=\"amount\">([^<]+)"
                             r".*?<span class=\"amount\">([^<]+)", block, re.S)
        assert balances is not None
        assert Decimal(balances.group(1)) - Decimal(balances.group(2)) == total


def test_one_passkey_decision_per_approver_sends_every_withdrawal_once(console: Console) -> None:
    alice, bob = enrol(console, "alice"), enrol(console, "bob")
    run_id = start_batch(console, ITEMS)
    for auth in (alice, bob):
        assert sign_in(console, auth).status_code == 303
        response = console.client.post("/decisions", data=decision_form(console, f"/runs/{run_id}/approve", auth))
        assert response.status_code == 200 and "Recorded" in response.text, response.text
    assert console.runtime.service.state_of(run_id) == "SUCCEEDED"
    sent = console.runtime.simulator.state()["withdrawals"]
    assert len(sent) == ITEMS
    expected = {client_id_for(run_id, instance_id("pay", i)) for i in range(ITEMS)}
    assert sorted(w["clientOrderId"] for w in sent) == sorted(expected)  # each exactly once
    assert sum(1 for r in console.wire.writes() if r.url.path == WITHDRAW) == ITEMS  # no request sent twice
    assert sorted(Decimal(p["amount"]) for p in payouts(ITEMS)) == sorted(Decimal(str(w["quantity"])) for w in sent)
    assert {w["address"] for w in sent} == set(VENDORS)
    page = console.client.get(f"/runs/{run_id}")
    states = re.search(r'<section class="fan-out-states" id="fan-states-pay">(.*?)</section>', page.text, re.S)
    assert states is not None and f"{ITEMS} items" in states.group(1)
    assert re.search(rf'succeeded">SUCCEEDED</span></td><td class="num">{ITEMS}</td>', states.group(1))
