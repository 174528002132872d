"""The one response mapping, table-driven by transport error, HTTP status and exchange code."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from treasury.errors import (
    AuthenticationFailed,
    Banned,
    ClockSkew,
    DuplicateClientId,
    ExchangeError,
    ExchangePermissionDenied,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    Rejected,
)
from treasury.exchange.responses import interpret, was_sent


def body(code: Any, msg: str = "x") -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()


REQ = httpx.Request("POST", "http://x/api/v1/account/withdraw")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused", request=REQ), NotSent),
        (httpx.ConnectTimeout("slow connect", request=REQ), NotSent),
        (httpx.PoolTimeout("no slot", request=REQ), NotSent),
        (httpx.ReadTimeout("no answer", request=REQ), OutcomeUnknown),
        (httpx.WriteTimeout("half written", request=REQ), OutcomeUnknown),
        (httpx.ReadError("connection reset by peer", request=REQ), OutcomeUnknown),
        (httpx.RemoteProtocolError("server disconnected", request=REQ), OutcomeUnknown),
    ],
)
def test_transport_errors(exc: Exception, expected: type[ExchangeError]) -> None:
    with pytest.raises(expected) as info:
        interpret(sent=was_sent(exc), status=None, body=None, error=exc, operation="withdraw", client_id="c1")
    err = info.value
    assert type(err) is expected
    assert err.retry_safe is (expected is NotSent)
    assert err.outcome_unknown is (expected is OutcomeUnknown)
    assert err.operation == "withdraw" and err.client_id == "c1"
    assert "operation=withdraw" in str(err) and "client_id=c1" in str(err)


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        # by HTTP status
        (500, b"", OutcomeUnknown),
        (502, b"<html>bad gateway</html>", OutcomeUnknown),
        (503, body("-1000"), OutcomeUnknown),
        (504, None, OutcomeUnknown),
        (408, b"", OutcomeUnknown),
        (429, body("0003"), RateLimited),
        (429, b"", RateLimited),
        (418, body("0003"), Banned),
        (418, b"", Banned),
        (401, b"", AuthenticationFailed),
        (403, b"", ExchangePermissionDenied),
        (404, b"", Rejected),
        (400, b"not json", Rejected),
        (302, b"", OutcomeUnknown),
        # by code, with the PRO page's HTTP 400
        (400, body("0003"), RateLimited),
        (400, body("-3145"), RateLimited),
        (400, body("-1000"), OutcomeUnknown),
        (400, body("-1001"), OutcomeUnknown),
        (400, body("-1006"), OutcomeUnknown),
        (400, body(-1007), OutcomeUnknown),
        (400, body(-1146), OutcomeUnknown),
        (400, body("-1147"), OutcomeUnknown),
        (400, body("-2040"), OutcomeUnknown),
        (400, body(-1141), DuplicateClientId),
        (400, body("-1024"), DuplicateClientId),
        (400, body("-4013"), DuplicateClientId),
        (400, body("-1005"), ExchangePermissionDenied),
        (400, body("-3117"), ExchangePermissionDenied),
        (400, body("0202"), ExchangePermissionDenied),
        (400, body("-1171", "address not in whitelist"), Rejected),
        (400, body("0001", "Incorrect signature"), AuthenticationFailed),
        (400, body("0002", "signature missing"), AuthenticationFailed),
        (400, body("0001", "Required field quantity missing"), Rejected),
        (400, body("0102"), AuthenticationFailed),
        (400, body("0103"), AuthenticationFailed),
        (400, body("-1002"), AuthenticationFailed),
        (400, body(-1021), ClockSkew),
        (400, body("0211", "Order not found"), NotFound),
        (400, body("0401", "insufficient asset"), Rejected),
        (400, body(-100012, "Parameter symbol missing"), Rejected),
        # 2xx with an error code in the body
        (200, body("-1006"), OutcomeUnknown),
        (200, body("-1141"), DuplicateClientId),
        (200, body("-2022", "batch too large"), Rejected),
        (200, b"{truncated", OutcomeUnknown),
    ],
)
def test_status_and_code_mapping(status: int, payload: bytes | None, expected: type[ExchangeError]) -> None:
    with pytest.raises(ExchangeError) as info:
        interpret(sent=True, status=status, body=payload, operation="spot_order", client_id="r1s1")
    err = info.value
    assert type(err) is expected, f"{status} {payload!r} -> {type(err).__name__}"
    assert err.status == status
    if payload and payload.startswith(b"{\"code\""):
        assert err.code == str(json.loads(payload)["code"])  # codes compare as strings
    assert err.operation == "spot_order"


def test_class_properties_follow_the_tree() -> None:
    assert issubclass(ClockSkew, AuthenticationFailed) and issubclass(AuthenticationFailed, Rejected)
    assert RateLimited.retry_safe and NotSent.retry_safe
    assert OutcomeUnknown.outcome_unknown and not Rejected.outcome_unknown


@pytest.mark.parametrize(
    "payload",
    [
        {"balances": [], "userId": "1"},
        [{"accountId": "1001"}],
        {"code": 0, "result": [{"code": "0000"}, {"code": "-1149", "msg": "Create order failed"}]},
        {"code": "0000", "result": []},
        {"code": "0", "success": True},
        {},
    ],
)
def test_success_bodies_are_returned_parsed(payload: Any) -> None:
    assert interpret(sent=True, status=200, body=json.dumps(payload).encode()) == payload


def test_message_never_carries_a_signature() -> None:
    leaky = body("-1004", "bad request /api?timestamp=1&signature=deadbeefcafe")
    with pytest.raises(Rejected) as info:
        interpret(sent=True, status=400, body=leaky)
    assert "deadbeefcafe" not in str(info.value)
    assert "signature=<redacted>" in str(info.value)
