"""What goes on the wire: signatures over exact bytes, where parameters live, headers, one
request shape per registry operation, and nothing at all when a check fails first."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.exchange.conftest import PROFILES, Recorder, profile
from treasury.clock import ManualClock
from treasury.errors import AuthenticationFailed, OperationNotPermitted, ParameterError, UnknownOperation
from treasury.exchange import HashKeyClient
from treasury.exchange.auth import totp
from treasury.models import Permission
from treasury.operations.registry import REGISTRY, get_operation
from treasury.settings import RateLimits
from treasury.simulator import Simulator
from treasury.simulator.funding import wallet_signature

T0_MS = 1_767_225_600_000  # ManualClock's default start
WHITELISTED = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
NEW_WALLET = "0x1111111111111111111111111111111111111111"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
_LEG = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "50000", "quantity": "0.001"}


def hmac_hex(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def split_signature(raw: str) -> tuple[str, str | None]:
    kept, sig = [], None
    for pair in raw.split("&") if raw else []:
        if pair.startswith("signature="):
            sig = pair.removeprefix("signature=")
        else:
            kept.append(pair)
    return "&".join(kept), sig


def raw_query(request: httpx.Request) -> str:
    return request.url.raw_path.decode().partition("?")[2]


# ------------------------------------------------------------------ signature vectors


def test_get_signature_covers_the_exact_query(client: HashKeyClient, recorder: Recorder) -> None:
    client.call("balances", PROFILES["ops-read"], {"accountId": "1001"})
    (req,) = recorder.requests
    signed = f"accountId=1001&timestamp={T0_MS}&recvWindow=5000"
    expected = hmac_hex("demo-read-secret", signed.encode())
    assert req.method == "GET"
    assert req.url.raw_path.decode() == f"/api/v1/account?{signed}&signature={expected}"
    assert req.content == b""
    assert req.headers["X-HK-APIKEY"] == "demo-read"


def test_post_form_signature_covers_the_exact_body(client: HashKeyClient, recorder: Recorder) -> None:
    client.call("asset_transfer", PROFILES["transfers"], {
        "fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "10.5",
        "remark": "pay vendor/ü & co", "clientOrderId": "t1",
    })
    (req,) = recorder.requests
    signed = (
        "fromAccountId=1001&toAccountId=1002&coin=USDT&quantity=10.5"
        f"&remark=pay%20vendor%2F%C3%BC%20%26%20co&clientOrderId=t1&timestamp={T0_MS}&recvWindow=5000"
    )
    expected = hmac_hex("demo-transfer-secret", signed.encode())
    assert req.url.raw_path == b"/api/v1/account/assetTransfer"  # nothing in the query
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.content == f"{signed}&signature={expected}".encode()


def test_batch_orders_sign_only_the_query(client: HashKeyClient, recorder: Recorder) -> None:
    legs = [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1000", "quantity": "0.01",
         "newClientOrderId": "b1"},
        {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "price": "90000", "quantity": "0.02",
         "newClientOrderId": "b2", "timeInForce": "GTC"},
    ]
    response = client.call("batch_orders", PROFILES["trading"], {"orders": legs})
    (req,) = recorder.requests
    signed = f"timestamp={T0_MS}&recvWindow=5000"
    expected = hmac_hex("demo-trade-secret", signed.encode())
    assert req.url.raw_path.decode() == f"/api/v1/spot/batchOrders?{signed}&signature={expected}"
    assert req.headers["content-type"] == "application/json"
    assert req.content == (
        b'[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"0.01","price":"1000",'
        b'"newClientOrderId":"b1"},{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","quantity":"0.02",'
        b'"price":"90000","timeInForce":"GTC","newClientOrderId":"b2"}]'
    )
    assert [item["code"] for item in response.data["result"]] == ["0000", "0000"]
    assert response.sent_params["timestamp"] == T0_MS and len(response.sent_params["orders"]) == 2


def test_response_carries_what_was_sent(client: HashKeyClient) -> None:
    response = client.call("balances", PROFILES["ops-read"], {"accountId": "1001"})
    assert response.status == 200 and response.method == "GET" and response.path == "/api/v1/account"
    assert response.sent_params == {"accountId": "1001", "timestamp": T0_MS, "recvWindow": 5000}
    assert "signature" not in response.sent_params
    assert {b["asset"] for b in response.data["balances"]} >= {"USDT", "BTC"}


def test_recv_window_is_configurable(make_client: Callable[..., HashKeyClient], recorder: Recorder) -> None:
    client = make_client(recorder, recv_window_ms=2500)
    client.call("check_api_key", PROFILES["ops-read"])
    assert dict(parse_qsl(raw_query(recorder.requests[0])))["recvWindow"] == "2500"


# ------------------------------------------------------------------ every operation's shape


def _setup_order(client: HashKeyClient) -> str:
    data = client.call("spot_order", PROFILES["admin"], {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1000", "quantity": "0.01",
        "newClientOrderId": "setup1",
    }).data
    return str(data["orderId"])


SAMPLES: dict[str, Callable[[HashKeyClient], dict[str, Any]]] = {
    "server_time": lambda c: {},
    "exchange_info": lambda c: {},
    "check_api_key": lambda c: {},
    "account_types": lambda c: {},
    "balances": lambda c: {"accountId": "1001"},
    "order": lambda c: {"orderId": _setup_order(c)},
    "open_orders": lambda c: {"symbol": "BTCUSDT", "limit": 10},
    "trade_orders": lambda c: {"symbol": "BTCUSDT", "limit": 10},
    "withdraw_orders": lambda c: {"coin": "USDT", "clientOrderId": "w1"},
    "deposit_orders": lambda c: {"coin": "USDT"},
    "fiat_history": lambda c: {"type": "withdraw", "startTime": T0_MS - 86_400_000, "endTime": T0_MS},
    "balance_flow": lambda c: {"type": "transfer", "clientOrderId": "t1",
                               "startTime": T0_MS - 86_400_000, "endTime": T0_MS},
    "deposit_address": lambda c: {"coin": "USDT", "chainType": "ETH"},
    "whitelist_verify": lambda c: {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED},
    "whitelist_wallet_signing": lambda c: {
        "coin": "USDT", "chainType": "ETH", "address": NEW_WALLET, "message": "I own this wallet",
        "walletSignature": wallet_signature(NEW_WALLET, "I own this wallet"),
    },
    "asset_transfer": lambda c: {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT",
                                 "quantity": "25", "clientOrderId": "t1"},
    "withdraw": lambda c: {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "10",
                           "clientOrderId": "w1"},
    "fiat_withdraw": lambda c: {"asset": "USD", "amount": "100", "bankAccount": "HSBC-001-234567-838",
                                "clientOrderId": "f1"},
    "spot_order": lambda c: {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1000",
                             "quantity": "0.01", "newClientOrderId": "o1"},
    "batch_orders": lambda c: {"orders": [
        {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "price": "100", "quantity": "1",
         "newClientOrderId": "b1"},
        {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "amount": "50", "newClientOrderId": "b2"},
    ]},
    "cancel_order": lambda c: (_setup_order(c), {"clientOrderId": "setup1"})[1],
    "cancel_orders_by_ids": lambda c: {"ids": [_setup_order(c)]},
    "cancel_open_orders": lambda c: (_setup_order(c), {"symbol": "BTCUSDT", "side": "BUY"})[1],
}


def test_every_registry_operation_has_a_sample() -> None:
    assert set(SAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_request_shape(name: str, make_client: Callable[..., HashKeyClient], recorder: Recorder) -> None:
    spec = get_operation(name)
    key = PROFILES["fiat"] if spec.permission is Permission.FIAT_WITHDRAW else PROFILES["admin"]
    key = key.model_copy(update={"totp_secret": profile("x", "x", secret="x", totp_secret=TOTP_SECRET).totp_secret})
    client = make_client(recorder)
    params = SAMPLES[name](client)
    response = client.call(spec, key, params)
    req = recorder.requests[-1]

    assert req.method == spec.method and req.url.path == spec.path
    assert response.status == 200, response.data
    query = raw_query(req)
    if not spec.signed:
        assert "X-HK-APIKEY" not in req.headers and "signature=" not in query and not req.content
        return
    assert req.headers["X-HK-APIKEY"] == key.api_key
    assert ("X-TWO-FA-TOKEN" in req.headers) is spec.two_fa
    if spec.two_fa:
        assert req.headers["X-TWO-FA-TOKEN"].isdigit() and len(req.headers["X-TWO-FA-TOKEN"]) == 6
    secret = key.secret.get_secret_value()
    wire = client._check_params(spec, params).to_wire()
    if spec.body == "json":
        unsigned, sig = split_signature(query)
        assert [k for k, _ in parse_qsl(unsigned)] == ["timestamp", "recvWindow"]
        assert req.headers["content-type"] == "application/json"
        assert json.loads(req.content) == wire["orders"]
    elif spec.method == "POST":
        assert query == "" and req.headers["content-type"] == "application/x-www-form-urlencoded"
        unsigned, sig = split_signature(req.content.decode())
    else:
        assert req.content == b"" and "content-type" not in req.headers
        unsigned, sig = split_signature(query)
    assert sig == hmac_hex(secret, unsigned.encode())
    if spec.body != "json":
        sent = dict(parse_qsl(unsigned, keep_blank_values=True))
        assert sent.pop("recvWindow") == "5000" and int(sent.pop("timestamp")) > 0
        assert sent == {k: str(v) for k, v in wire.items()}


# ------------------------------------------------------------------ refusals send nothing


def test_missing_permission_sends_nothing(client: HashKeyClient, recorder: Recorder) -> None:
    with pytest.raises(OperationNotPermitted) as info:
        client.call("withdraw", PROFILES["ops-read"], {
            "coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "10", "clientOrderId": "w1",
        })
    assert recorder.requests == []
    assert info.value.permission == "withdraw" and "nothing was sent" in str(info.value)


def test_permission_is_checked_before_parameters(client: HashKeyClient, recorder: Recorder) -> None:
    with pytest.raises(OperationNotPermitted):
        client.call("spot_order", PROFILES["transfers"], {"nonsense": "1"})
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("op", "params", "param"),
    [
        ("withdraw", {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": 1.5}, "quantity"),
        ("withdraw", {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "1e5"}, "quantity"),
        ("balances", {"accountId": "1001", "bogus": "x"}, "bogus"),
        ("order", {}, "(parameters)"),
        ("withdraw", {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "-1"}, "quantity"),
        ("withdraw", {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "NaN"}, "quantity"),
        ("batch_orders", {"orders": [_LEG] * 21}, "orders"),
        ("batch_orders", {"orders": [_LEG, {**_LEG, "symbol": "ETHUSDT"}]}, "orders"),
        ("cancel_orders_by_ids", {"ids": [str(i) for i in range(101)]}, "ids"),
    ],
)
def test_bad_parameters_send_nothing(client: HashKeyClient, recorder: Recorder, op: str,
                                     params: dict[str, Any], param: str) -> None:
    key = PROFILES["admin"]
    with pytest.raises(ParameterError) as info:
        client.call(op, key, params)
    assert info.value.param == param
    assert recorder.requests == []


def test_unknown_operation_and_missing_profile_send_nothing(client: HashKeyClient, recorder: Recorder) -> None:
    with pytest.raises(UnknownOperation):
        client.call("transfer_everything", PROFILES["admin"])
    with pytest.raises(ParameterError):
        client.call("balances", None)
    assert recorder.requests == []
    assert client.call("server_time", None).data["serverTime"] == T0_MS  # public: no key needed


def test_wrong_params_model_is_refused(client: HashKeyClient, recorder: Recorder) -> None:
    wrong = get_operation("balances").params_model.model_validate({"accountId": "1001"})
    with pytest.raises(ParameterError):
        client.call("check_api_key", PROFILES["admin"], wrong)
    assert recorder.requests == []


@pytest.fixture
def twofa_sim(sim_config: Any, clock: ManualClock) -> Simulator:
    """The demo world with 2FA switched on for demo-withdraw: each token is accepted once."""
    keys = [k.model_copy(update={"twofa": True}) if k.api_key == "demo-withdraw" else k for k in sim_config.keys]
    return Simulator(sim_config.model_copy(update={"keys": keys}), clock=clock, seed=1)


WITHDRAW = {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "10"}
TOTP_KEY = profile("withdrawals", "demo-withdraw", Permission.READ, Permission.WITHDRAW, totp_secret=TOTP_SECRET)


def test_totp_is_fresh_for_every_attempt(make_client: Callable[..., HashKeyClient], twofa_sim: Simulator,
                                         clock: ManualClock) -> None:
    recorder = Recorder(twofa_sim.handle)
    client = make_client(recorder)
    client.call("withdraw", TOTP_KEY, {**WITHDRAW, "clientOrderId": "w1"})
    clock.advance(31)
    client.call("withdraw", TOTP_KEY, {**WITHDRAW, "clientOrderId": "w2"})
    first, second = (r.headers["X-TWO-FA-TOKEN"] for r in recorder.requests)
    assert first != second
    assert second == totp(TOTP_SECRET, clock.time())  # what an authenticator app shows now
    assert len(twofa_sim.state()["withdrawals"]) == 2


def test_totp_never_reuses_a_token_within_its_step(make_client: Callable[..., HashKeyClient],
                                                    twofa_sim: Simulator, clock: ManualClock) -> None:
    recorder = Recorder(twofa_sim.handle)
    client = make_client(recorder, limits=RateLimits(order=100))
    client.call("withdraw", TOTP_KEY, {**WITHDRAW, "clientOrderId": "w1"})
    client.call("withdraw", TOTP_KEY, {**WITHDRAW, "clientOrderId": "w2"})  # same 30 s step: waits
    first, second = (r.headers["X-TWO-FA-TOKEN"] for r in recorder.requests)
    assert first != second
    assert clock.sleeps and 0 < clock.sleeps[-1] <= 30.05
    assert len(twofa_sim.state()["withdrawals"]) == 2


def test_missing_totp_is_refused_by_the_exchange(make_client: Callable[..., HashKeyClient],
                                                 twofa_sim: Simulator) -> None:
    client = make_client(Recorder(twofa_sim.handle))
    with pytest.raises(AuthenticationFailed) as info:
        client.call("withdraw", PROFILES["withdrawals"], {**WITHDRAW, "clientOrderId": "w1"})
    assert info.value.code == "-1002"
    assert twofa_sim.state()["withdrawals"] == []
