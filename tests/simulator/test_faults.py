"""Fault injection in-process: each mode, whether the effect committed, counts, seeded draws,
the /_sim control endpoints and the never-a-stack-trace rule."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.simulator.conftest import HK, STATE_FILE, balance
from treasury.clock import ManualClock
from treasury.errors import ConfigError
from treasury.simulator import Simulator, load_state

TRANSFER = "/api/v1/account/assetTransfer"


def transfer(signer: HK, cid: str) -> httpx.Response:
    return signer.post(
        TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="10", clientOrderId=cid
    )


def committed(sim: Simulator) -> list[str]:
    return [t["clientOrderId"] for t in sim.state()["transfers"]]


def test_error_before_answers_without_effect(sim: Simulator, hk: Any) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "error_before"}])
    r = transfer(hk("demo-transfer"), "eb")
    assert (r.status_code, r.json()["code"]) == (500, "-1000")
    assert committed(sim) == [] and balance(sim, "1002", "USDT") == "0"


def test_error_after_commits_then_errors(sim: Simulator, hk: Any) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "error_after", "status": 503, "code": "-1006"}])
    r = transfer(hk("demo-transfer"), "ea")
    assert (r.status_code, r.json()["code"]) == (503, "-1006")
    assert committed(sim) == ["ea"] and balance(sim, "1002", "USDT") == "10"
    # the retry with the same client id is recognised as a duplicate: still one effect
    sim.set_faults([])
    assert transfer(hk("demo-transfer"), "ea").json()["code"] == "-1024"
    assert committed(sim) == ["ea"]


def test_timeout_after_commits_then_raises_read_timeout(sim: Simulator, hk: Any) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "timeout_after"}])
    with pytest.raises(httpx.ReadTimeout):
        transfer(hk("demo-transfer"), "to")
    assert committed(sim) == ["to"]


def test_reset_after_commits_then_drops_the_connection(sim: Simulator, hk: Any) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "reset_after"}])
    with pytest.raises(httpx.TransportError) as err:
        transfer(hk("demo-transfer"), "rs")
    assert not isinstance(err.value, httpx.TimeoutException)
    assert committed(sim) == ["rs"]


def test_latency_sleeps_through_the_clock(sim: Simulator, hk: Any, clock: ManualClock) -> None:
    sim.set_faults([{"method": "*", "path": "/api/v1/account*", "mode": "latency", "seconds": 2}])
    t0 = clock.time()
    r = transfer(hk("demo-transfer"), "lat")
    assert r.status_code == 200 and clock.sleeps == [2] and clock.time() == t0 + 2
    # a delay longer than recvWindow makes the request stale when it is finally processed
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "latency", "seconds": 6}])
    assert transfer(hk("demo-transfer"), "slow").json()["code"] == "-1021"
    assert committed(sim) == ["lat"]


def test_count_limits_firings(sim: Simulator, hk: Any) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "error_before", "count": 2}])
    codes = [transfer(hk("demo-transfer"), f"c{i}").status_code for i in range(4)]
    assert codes == [500, 500, 200, 200]
    assert committed(sim) == ["c2", "c3"]
    assert sim.faults.rules()[0]["fired"] == 2


def test_rules_match_method_and_path(sim: Simulator, hk: Any) -> None:
    sim.set_faults(
        [
            {"method": "GET", "path": TRANSFER, "mode": "error_before"},
            {"method": "POST", "path": "/api/v1*/spot/*", "mode": "error_before", "status": 502},
        ]
    )
    assert transfer(hk("demo-transfer"), "m1").status_code == 200
    r = hk("demo-trade").post("/api/v1.1/spot/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1")
    assert r.status_code == 502
    assert hk("demo-read").get("/api/v1/spot/openOrders").status_code == 200


def _pattern(seed: int, n: int = 40) -> list[int]:
    sim = Simulator(load_state(STATE_FILE).tuned(rate_limits=False), clock=ManualClock(), seed=seed)
    sim.set_faults([{"method": "GET", "path": "/api/v1/time", "mode": "error_before", "probability": 0.3}])
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://s") as c:
        return [c.get("/api/v1/time").status_code for _ in range(n)]


def test_seeded_probability_is_deterministic() -> None:
    first, again, other = _pattern(7), _pattern(7), _pattern(8)
    assert first == again
    assert first != other
    assert 0 < first.count(500) < 40


def test_probability_zero_and_one(sim: Simulator, client: httpx.Client) -> None:
    sim.set_faults([{"path": "/api/v1/time", "mode": "error_before", "probability": 0}])
    assert all(client.get("/api/v1/time").status_code == 200 for _ in range(20))
    sim.set_faults([{"path": "/api/v1/time", "mode": "error_before", "probability": 1}])
    assert all(client.get("/api/v1/time").status_code == 500 for _ in range(20))


def test_invalid_rules_are_refused_and_old_rules_stay(sim: Simulator) -> None:
    sim.set_faults([{"path": "/api/v1/time", "mode": "latency", "seconds": 1}])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"path": "/x", "mode": "boom"}, "[0].mode"),
        ({"path": "/x", "mode": "latency", "probability": 2}, "[0].probability"),
        ({"path": "/x", "mode": "latency", "colour": "red"}, "[0].colour"),
    ]
    for bad, field in cases:
        with pytest.raises(ConfigError) as err:
            sim.set_faults([bad])
        assert err.value.field == field
    assert len(sim.faults.rules()) == 1


def test_control_endpoints(sim: Simulator, client: httpx.Client, hk: Any, clock: ManualClock) -> None:
    rules = [{"method": "POST", "path": TRANSFER, "mode": "error_after", "status": 500, "probability": 0.3}]
    r = client.post("/_sim/faults", json=rules)
    assert r.status_code == 200 and r.json()[0]["mode"] == "error_after" and r.json()[0]["fired"] == 0
    assert client.get("/_sim/faults").json() == r.json()
    bad = client.post("/_sim/faults", json=[{"path": "/x", "mode": "nope"}])
    assert bad.status_code == 400 and bad.json()["code"] == "-1004" and "[0].mode" in bad.json()["msg"]
    assert client.post("/_sim/faults", content=b"{not json").json()["code"] == "-1004"
    assert client.delete("/_sim/faults").json() == [] and client.get("/_sim/faults").json() == []
    assert transfer(hk("demo-transfer"), "ctl").status_code == 200
    state = client.get("/_sim/state").json()
    assert state["transfers"][0]["clientOrderId"] == "ctl" and state["balances"]["1002"]["USDT"]["total"] == "10"
    for kind in ("orders", "transfers", "withdrawals", "fiat_withdrawals", "wallet_signings"):
        assert kind in state
    assert (
        client.post(
            "/_sim/deposit", json={"account": "1002", "coin": "USDT", "quantity": "5", "chainType": "ETH"}
        ).status_code
        == 200
    )
    assert balance(sim, "1002", "USDT") == "15"
    assert client.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "1"}).json()["filled"] == []
    t0 = clock.time()
    assert client.post("/_sim/advance", json={"seconds": 30}).status_code == 200 and clock.time() == t0 + 30
    assert client.post("/_sim/reset").json() == {"success": True}
    assert sim.state()["transfers"] == [] and balance(sim, "1002", "USDT") == "0"
    assert client.get("/_sim/nothing").status_code == 404


def test_unknown_path_and_internal_errors_never_leak_a_trace(
    sim: Simulator, client: httpx.Client, hk: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = client.get("/api/v1/nothing")
    assert (r.status_code, r.json()["code"]) == (404, "-1020")
    assert client.put("/api/v1/time").status_code == 404

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(sim.ledger, "transfer", broken)
    r = transfer(hk("demo-transfer"), "bug")
    assert r.status_code == 500 and r.json() == {
        "code": "-1000",
        "msg": "An unknown error occurred while processing the request",
    }
