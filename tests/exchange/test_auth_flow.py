"""``HashKeyAuth`` alone: it signs exactly the bytes that reach the transport."""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from treasury.clock import ManualClock
from treasury.exchange.auth import API_KEY_HEADER, FORM, SIGNED_EXTENSION, TWO_FA_HEADER, HashKeyAuth

SECRET = "auth-flow-secret-canary"
BASE = "https://exchange.test"


def _capture() -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json={})

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def _auth(clock: ManualClock, **kwargs: object) -> HashKeyAuth:
    return HashKeyAuth("key-1", SecretStr(SECRET), clock=clock, recv_window_ms=5000, **kwargs)  # type: ignore[arg-type]


def _check_signature(payload: bytes) -> dict[str, str]:
    """The payload's last pair is the signature over every byte before ``&signature=``."""
    signed, _, signature = payload.rpartition(b"&signature=")
    assert signature.decode() == hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return dict(parse_qsl(signed.decode()))


def test_a_query_is_signed_over_the_exact_bytes_sent() -> None:
    clock = ManualClock(1_700_000_000.25)
    http, seen = _capture()
    request = http.build_request("GET", f"{BASE}/api/v1/account?symbol=BTC%20USDT&x=1")
    http.send(request, auth=_auth(clock, offset_ms=-250))
    [sent] = seen
    params = _check_signature(sent.url.query)
    assert sent.url.query.startswith(b"symbol=BTC%20USDT&x=1&timestamp=")
    assert params["timestamp"] == "1700000000000" and params["recvWindow"] == "5000"
    assert sent.headers[API_KEY_HEADER] == "key-1"
    assert request.extensions[SIGNED_EXTENSION] == {"timestamp": 1_700_000_000_000, "recvWindow": 5000}


def test_a_form_body_is_signed_and_the_query_left_alone() -> None:
    clock = ManualClock()
    http, seen = _capture()
    request = http.build_request("POST", f"{BASE}/api/v1/account/withdraw",
                                 content=b"coin=USDT&quantity=10.5", headers={"Content-Type": FORM})
    http.send(request, auth=_auth(clock))
    [sent] = seen
    assert sent.url.query == b""
    assert _check_signature(sent.content)["quantity"] == "10.5"
    assert int(sent.headers["Content-Length"]) == len(sent.content)


def test_a_json_body_is_sent_unchanged_and_only_the_query_signed() -> None:
    clock = ManualClock()
    http, seen = _capture()
    body = b'[{"symbol":"BTCUSDT"}]'
    request = http.build_request("POST", f"{BASE}/api/v1/spot/batchOrders", content=body,
                                 headers={"Content-Type": "application/json"})
    http.send(request, auth=_auth(clock))
    [sent] = seen
    assert sent.content == body
    assert set(_check_signature(sent.url.query)) == {"timestamp", "recvWindow"}


def test_before_sign_gets_the_timestamp_time_and_its_refusal_sends_nothing() -> None:
    clock = ManualClock(1_700_000_000.0)
    http, seen = _capture()
    times: list[float] = []

    def refuse(at: float) -> None:
        times.append(at)
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        http.send(http.build_request("GET", f"{BASE}/q"), auth=_auth(clock, before_sign=refuse))
    assert times == [1_700_000_000.0] and seen == []


def test_the_2fa_token_comes_before_the_timestamp() -> None:
    clock = ManualClock(1_700_000_000.0)
    http, seen = _capture()

    def token() -> str:
        clock.advance(3.0)  # a fresh token may wait for the next time step
        return "123456"

    http.send(http.build_request("GET", f"{BASE}/q"), auth=_auth(clock, two_fa=token))
    [sent] = seen
    assert sent.headers[TWO_FA_HEADER] == "123456"
    assert _check_signature(sent.url.query)["timestamp"] == "1700000003000"


def test_the_secret_is_in_no_repr_log_or_header(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = _auth(ManualClock())
    http, seen = _capture()
    http.send(http.build_request("GET", f"{BASE}/q"), auth=auth)
    assert SECRET not in repr(auth) and SECRET not in str(vars(auth))
    assert SECRET not in caplog.text
    assert all(SECRET not in value for value in seen[0].headers.values())
    assert SECRET.encode() not in seen[0].url.raw_path
