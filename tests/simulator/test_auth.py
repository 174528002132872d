"""Authentication as HashKey PRO does it: key header, HMAC over totalParams, timestamp window, 2FA."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.simulator.conftest import HK, effects, sign
from treasury.clock import ManualClock
from treasury.simulator import Simulator

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ts(clock: ManualClock) -> int:
    return int(clock.time() * 1000)


def transfer_params(clock: ManualClock, **extra: Any) -> dict[str, Any]:
    return {
        "fromAccountId": "1001",
        "toAccountId": "1002",
        "coin": "USDT",
        "quantity": "5",
        "timestamp": ts(clock),
        **extra,
    }


def test_public_endpoints_need_no_key(client: httpx.Client, clock: ManualClock) -> None:
    assert client.get("/api/v1/time").json() == {"serverTime": ts(clock)}
    assert client.get("/api/v1/ping").json() == {}


def test_missing_and_unknown_key(client: httpx.Client, clock: ManualClock) -> None:
    qs = urlencode({"timestamp": ts(clock)})
    r = client.get(f"/api/v1/account?{qs}&signature={sign('x', qs)}")
    assert r.status_code == 400 and r.json()["code"] == "0102"
    r = client.get(f"/api/v1/account?{qs}&signature={sign('x', qs)}", headers={"X-HK-APIKEY": "nobody"})
    assert r.status_code == 400 and r.json()["code"] == "0102"


def test_signature_in_body_or_query_is_accepted(client: httpx.Client, clock: ManualClock, sim: Simulator) -> None:
    secret, key = "demo-transfer-secret", {"X-HK-APIKEY": "demo-transfer"}
    body = urlencode(transfer_params(clock, clientOrderId="a"), quote_via=quote)
    r = client.post(
        "/api/v1/account/assetTransfer", content=f"{body}&signature={sign(secret, body)}", headers={**key, **FORM}
    )
    assert r.status_code == 200, r.text
    qs = urlencode(transfer_params(clock, clientOrderId="b"), quote_via=quote)
    r = client.post(f"/api/v1/account/assetTransfer?{qs}&signature={sign(secret, qs)}", headers=key)
    assert r.status_code == 200, r.text
    # the signature may come first, and hex is case-insensitive
    qs = urlencode(transfer_params(clock, clientOrderId="c"), quote_via=quote)
    r = client.post(f"/api/v1/account/assetTransfer?signature={sign(secret, qs).upper()}&{qs}", headers=key)
    assert r.status_code == 200, r.text
    assert len(sim.state()["transfers"]) == 3


def test_wrong_secret_and_tampered_body_are_refused_without_effect(
    client: httpx.Client, clock: ManualClock, sim: Simulator
) -> None:
    before = effects(sim)
    key = {"X-HK-APIKEY": "demo-transfer", **FORM}
    body = urlencode(transfer_params(clock), quote_via=quote)
    r = client.post("/api/v1/account/assetTransfer", content=f"{body}&signature={sign('wrong', body)}", headers=key)
    assert r.status_code == 400 and r.json()["code"] == "0002" and "signature" in r.json()["msg"].lower()
    good = sign("demo-transfer-secret", body)
    tampered = body.replace("quantity=5", "quantity=5000")
    r = client.post("/api/v1/account/assetTransfer", content=f"{tampered}&signature={good}", headers=key)
    assert r.json()["code"] == "0002"
    r = client.post("/api/v1/account/assetTransfer", content=body, headers=key)  # no signature at all
    assert r.json()["code"] == "0002" and "signature" in r.json()["msg"].lower()
    assert effects(sim) == before


def test_query_plus_body_signs_the_concatenation_without_ampersand(
    client: httpx.Client, clock: ManualClock, sim: Simulator
) -> None:
    """The documented mixed form: totalParams = query + body, no '&' between them."""
    query = "fromAccountId=1001&toAccountId=1002&coin=USDT"
    body = f"quantity=7&clientOrderId=mix1&timestamp={ts(clock)}"
    secret = "demo-transfer-secret"
    headers = {"X-HK-APIKEY": "demo-transfer", **FORM}
    r = client.post(
        f"/api/v1/account/assetTransfer?{query}",
        content=f"{body}&signature={sign(secret, query + body)}",
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert sim.state()["transfers"][-1]["quantity"] == "7"
    # signing with an '&' between the two parts is a different string: refused
    body2 = f"quantity=7&clientOrderId=mix2&timestamp={ts(clock)}"
    r = client.post(
        f"/api/v1/account/assetTransfer?{query}",
        content=f"{body2}&signature={sign(secret, query + '&' + body2)}",
        headers=headers,
    )
    assert r.json()["code"] == "0002"


def test_parameter_in_both_places_takes_the_query_value(
    client: httpx.Client, clock: ManualClock, sim: Simulator
) -> None:
    query = f"fromAccountId=1001&toAccountId=1002&coin=USDT&quantity=3&timestamp={ts(clock)}"
    body = "quantity=900&clientOrderId=both"
    r = client.post(
        f"/api/v1/account/assetTransfer?{query}",
        content=f"{body}&signature={sign('demo-transfer-secret', query + body)}",
        headers={"X-HK-APIKEY": "demo-transfer", **FORM},
    )
    assert r.status_code == 200, r.text
    assert sim.state()["transfers"][-1]["quantity"] == "3"


def test_values_with_spaces_sign_as_sent(hk: Any, sim: Simulator) -> None:
    r = hk("demo-transfer").post(
        "/api/v1/account/assetTransfer",
        fromAccountId="1001",
        toAccountId="1002",
        coin="USDT",
        quantity="1",
        remark="rent for May & June",
        clientOrderId="sp",
    )
    assert r.status_code == 200, r.text
    assert sim.state()["transfers"][-1]["remark"] == "rent for May & June"


@pytest.mark.parametrize(
    ("offset_ms", "ok"), [(999, True), (1000, False), (5000, False), (-5000, True), (-5001, False)]
)
def test_timestamp_window(hk: Any, clock: ManualClock, offset_ms: int, ok: bool) -> None:
    r = hk("demo-read").get("/api/v1/account", timestamp=ts(clock) + offset_ms)
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and r.json()["code"] == "-1021"


def test_recv_window_widens_and_is_bounded(hk: Any, clock: ManualClock) -> None:
    signer: HK = hk("demo-read")
    r = signer.get("/api/v1/account", timestamp=ts(clock) - 9000, recvWindow=10000)
    assert r.status_code == 200
    r = signer.get("/api/v1/account", timestamp=ts(clock) - 9000, recvWindow=8000)
    assert r.json()["code"] == "-1021"
    r = signer.get("/api/v1/account", recvWindow=600000)
    assert r.json()["code"] == "0001"


def test_stale_request_replayed_later_is_refused(client: httpx.Client, clock: ManualClock, sim: Simulator) -> None:
    body = urlencode(transfer_params(clock, clientOrderId="late"), quote_via=quote)
    content = f"{body}&signature={sign('demo-transfer-secret', body)}"
    clock.advance(6)
    r = client.post("/api/v1/account/assetTransfer", content=content, headers={"X-HK-APIKEY": "demo-transfer", **FORM})
    assert r.json()["code"] == "-1021"
    assert sim.state()["transfers"] == []


def test_missing_or_malformed_timestamp(client: httpx.Client) -> None:
    for qs in ("", "timestamp=soon"):
        r = client.get(
            f"/api/v1/account?{qs}&signature={sign('demo-read-secret', qs)}", headers={"X-HK-APIKEY": "demo-read"}
        )
        assert r.status_code == 400 and r.json()["code"] in ("-100012", "0001")


def test_ip_restriction(sim: Simulator, client: httpx.Client, clock: ManualClock) -> None:
    sim.keys["demo-read"] = sim.keys["demo-read"].model_copy(update={"ips": ["10.0.0.1"]})
    r = HK(client, clock, "demo-read").get("/api/v1/account")
    assert r.status_code == 400 and r.json()["code"] == "0202"


def test_two_factor_token_required_once(sim: Simulator, hk: Any, clock: ManualClock) -> None:
    sim.keys["demo-withdraw"] = sim.keys["demo-withdraw"].model_copy(update={"twofa": True})
    signer: HK = hk("demo-withdraw")
    params = {
        "coin": "USDT",
        "chainType": "ETH",
        "address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90",
        "quantity": "10",
    }
    r = signer.post("/api/v1/account/withdraw", clientOrderId="f1", **params)
    assert r.json()["code"] == "-1002" and "2FA" in r.json()["msg"]
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "12ab56"}, clientOrderId="f1", **params)
    assert r.json()["code"] == "-1002"
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "123456"}, clientOrderId="f1", **params)
    assert r.status_code == 200, r.text
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "123456"}, clientOrderId="f2", **params)
    assert r.json()["code"] == "-1002" and "used" in r.json()["msg"]
    assert len(sim.state()["withdrawals"]) == 1
    clock.advance(31)
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "123456"}, clientOrderId="f2", **params)
    assert r.status_code == 200
    sim.cfg.settings.twofa_codes = ["654321"]
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "111111"}, clientOrderId="f3", **params)
    assert r.json()["code"] == "-1002"
    r = signer.post("/api/v1/account/withdraw", headers={"X-TWO-FA-TOKEN": "654321"}, clientOrderId="f3", **params)
    assert r.status_code == 200


def test_keys_without_twofa_ignore_the_token(hk: Any) -> None:
    r = hk("demo-read").get("/api/v1/account", headers={"X-TWO-FA-TOKEN": "nonsense"})
    assert r.status_code == 200


def test_json_body_only_for_batch(client: httpx.Client, clock: ManualClock) -> None:
    qs = f"timestamp={ts(clock)}"
    r = client.post(
        f"/api/v1/account/assetTransfer?{qs}&signature={sign('demo-transfer-secret', qs)}",
        content=b'{"coin": "USDT"}',
        headers={"X-HK-APIKEY": "demo-transfer", "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "-1004"


def test_undecodable_body_is_a_bad_request(client: httpx.Client) -> None:
    r = client.post(
        "/api/v1/account/assetTransfer", content=b"\xff\xfe=1", headers={"X-HK-APIKEY": "demo-transfer", **FORM}
    )
    assert r.status_code == 400 and r.json()["code"] == "-1004"
