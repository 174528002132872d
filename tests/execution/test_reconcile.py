"""Pure verdicts from lookup answers, and the lookup plans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from treasury.errors import ExchangePermissionDenied, NotFound, OperationNotPermitted, OutcomeUnknown
from treasury.execution import reconcile as rc
from treasury.models import Permission
from treasury.operations.registry import get_operation

CID = "Tr000000000001abcdef12"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_order_found_adopts_exchange_order_id() -> None:
    v = rc.order_verdict(CID, {"clientOrderId": CID, "orderId": "1900", "status": "FILLED"})
    assert isinstance(v, rc.Found) and v.order_id == "1900" and not v.failed


def test_order_not_found_code_is_absent() -> None:
    assert isinstance(rc.order_verdict(CID, NotFound("not found", code="0211")), rc.Absent)


def test_order_with_another_client_id_is_inconclusive() -> None:
    v = rc.order_verdict(CID, {"clientOrderId": "other", "orderId": "1"})
    assert isinstance(v, rc.Inconclusive) and "other" in v.reason


def test_order_lookup_error_is_inconclusive_with_the_status() -> None:
    v = rc.order_verdict(CID, OutcomeUnknown("x", status=503))
    assert isinstance(v, rc.Inconclusive) and "HTTP 503" in v.reason


def test_transfer_matches_client_id_client_side() -> None:
    rows = [{"clientOrderId": "someone-else", "orderId": "1"}, {"clientOrderId": CID, "orderId": "2"}]
    v = rc.transfer_verdict(CID, rows)
    assert isinstance(v, rc.Found) and v.order_id == "2"
    assert isinstance(rc.transfer_verdict(CID, [{"clientOrderId": "someone-else"}]), rc.Absent)


def test_transfer_refused_fund_statement_is_inconclusive_and_says_why() -> None:
    v = rc.transfer_verdict(CID, ExchangePermissionDenied("no", status=400, code="-1005"))
    assert isinstance(v, rc.Inconclusive)
    assert "code -1005" in v.reason and "balance changes cannot prove" in v.reason


def test_withdraw_found_by_either_lookup() -> None:
    row = {"clientOrderId": CID, "id": "W1", "status": "processing"}
    assert isinstance(rc.withdraw_verdict(CID, [row], OutcomeUnknown("x", status=500)), rc.Found)
    flow = {"clientOrderId": CID, "orderId": "W1"}
    v = rc.withdraw_verdict(CID, NotFound("x"), [flow])
    assert isinstance(v, rc.Found) and v.order_id == "W1" and v.source == "balance_flow"


def test_withdraw_absent_only_when_both_lookups_say_so() -> None:
    v = rc.withdraw_verdict(CID, [], [])
    assert isinstance(v, rc.Absent) and v.sources == ("withdraw_orders", "balance_flow")
    half = rc.withdraw_verdict(CID, [], OutcomeUnknown("x", status=500))
    assert isinstance(half, rc.Inconclusive) and "balance_flow" in half.reason


def test_withdraw_failed_row_is_found_but_failed() -> None:
    v = rc.withdraw_verdict(CID, [{"clientOrderId": CID, "id": "W9", "status": "failed"}], [])
    assert isinstance(v, rc.Found) and v.failed


@pytest.mark.parametrize("status", ["under_review", "processing", "successful"])
def test_fiat_any_status_is_found(status: str) -> None:
    v = rc.fiat_verdict(CID, [{"clientOrderId": CID, "orderId": "FW1", "status": status}])
    assert isinstance(v, rc.Found) and not v.failed and v.order_id == "FW1"


def test_fiat_failed_row_is_a_definite_failure() -> None:
    v = rc.fiat_verdict(CID, [{"clientOrderId": CID, "orderId": "FW1", "status": "failed"}])
    assert isinstance(v, rc.Found) and v.failed


def test_rows_under_a_key_and_non_list_answers() -> None:
    assert isinstance(rc.fiat_verdict(CID, {"rows": [{"clientOrderId": CID}]}), rc.Found)
    assert isinstance(rc.fiat_verdict(CID, {"weird": 1}), rc.Inconclusive)


def test_plans_name_the_client_id_and_a_window_around_the_send() -> None:
    sent = datetime(2026, 1, 1, 11, 59, tzinfo=UTC)
    (order,) = rc.plan(get_operation("spot_order"), CID, {}, sent_at=sent, now=NOW)
    assert order.params == {"origClientOrderId": CID}
    orders, flow = rc.plan(get_operation("withdraw"), CID, {"coin": "USDT"}, sent_at=sent, now=NOW)
    assert orders.operation == "withdraw_orders" and orders.params["coin"] == "USDT"
    assert flow.params["type"] == "withdraw" and flow.params["clientOrderId"] == CID
    start_ms = int(sent.timestamp() * 1000) - 5 * 60 * 1000
    assert flow.params["startTime"] == start_ms
    assert flow.params["endTime"] > int(NOW.timestamp() * 1000)
    (fiat,) = rc.plan(get_operation("fiat_withdraw"), CID, {}, sent_at=sent, now=NOW)
    assert fiat.params["type"] == "withdraw"
    with pytest.raises(ValueError, match="no reconciliation lookup"):
        rc.plan(get_operation("balances"), CID, {}, sent_at=sent, now=NOW)


def test_run_lookups_without_read_permission_reads_nothing() -> None:
    calls: list[rc.Lookup] = []
    v = rc.run_lookups(get_operation("withdraw"), CID, {}, sent_at=NOW, now=NOW, read=calls.append,
                       permissions=[Permission.WITHDRAW])
    assert isinstance(v, rc.Inconclusive) and "read permission" in v.reason and calls == []


def test_run_lookups_turns_errors_into_answers_and_reports_each_lookup() -> None:
    seen: list[str] = []

    def read(lookup: rc.Lookup) -> object:
        if lookup.source == "balance_flow":
            raise OperationNotPermitted("balance_flow", "p", "read")
        return []

    v = rc.run_lookups(get_operation("withdraw"), CID, {}, sent_at=NOW, now=NOW, read=read,
                       permissions=[Permission.READ], on_lookup=lambda lookup, answer: seen.append(lookup.source))
    assert seen == ["withdraw_orders", "balance_flow"]
    assert isinstance(v, rc.Inconclusive) and "read permission" in v.reason
