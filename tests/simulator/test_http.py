"""The simulator over real HTTP on loopback: reads, writes, faults as connection errors, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.simulator.conftest import HK, STATE_FILE, WHITE_USDT, balance
from treasury.clock import ManualClock
from treasury.simulator import Simulator, SimulatorServer, load_state, serve

TRANSFER = "/api/v1/account/assetTransfer"


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    srv = serve(sim, host="127.0.0.1", port=0)
    yield srv
    srv.shutdown()


@pytest.fixture
def http(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c


def test_server_address(server: SimulatorServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0


def test_balance_order_transfer_withdraw_over_http(sim: Simulator, http: httpx.Client, clock: ManualClock) -> None:
    assert http.get("/api/v1/time").json() == {"serverTime": int(clock.time() * 1000)}
    balances = HK(http, clock, "demo-read").get("/api/v1/account").json()["balances"]
    assert {b["asset"]: b["free"] for b in balances}["USDT"] == "250000"
    order = (
        HK(http, clock, "demo-trade")
        .post(
            "/api/v1.1/spot/order",
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity="0.1",
            price="55000",
            newClientOrderId="h-1",
        )
        .json()
    )
    assert order["status"] == "NEW" and order["clientOrderId"] == "h-1"
    r = HK(http, clock, "demo-transfer").post(
        TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="1000", clientOrderId="h-x"
    )
    assert r.status_code == 200 and r.json()["clientOrderId"] == "h-x"
    r = HK(http, clock, "demo-withdraw").post(
        "/api/v1/account/withdraw", coin="USDT", chainType="ETH", address=WHITE_USDT, quantity="50", clientOrderId="h-w"
    )
    assert r.status_code == 200 and r.json()["orderId"].startswith("W")
    state = http.get("/_sim/state").json()
    assert state["balances"]["1001"]["USDT"] == {"free": "243449", "locked": "5500", "total": "248949"}
    assert [w["clientOrderId"] for w in state["withdrawals"]] == ["h-w"]
    r = HK(http, clock, "demo-read").get("/api/v1/spot/order", orderId="999")
    assert (r.status_code, r.json()["code"]) == (400, "0211")
    assert r.headers["content-type"] == "application/json"


def test_batch_orders_over_http(http: httpx.Client, clock: ManualClock) -> None:
    r = HK(http, clock, "demo-trade").batch(
        [
            {
                "symbol": "ETHUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "price": "2000",
                "quantity": "1",
                "newClientOrderId": "hb-1",
            }
        ]
    )
    assert r.json()["result"][0]["code"] == "0000"


def test_reset_after_is_a_connection_error_over_http(sim: Simulator, http: httpx.Client, clock: ManualClock) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "reset_after", "count": 1}])
    signer = HK(http, clock, "demo-transfer")
    with pytest.raises(httpx.TransportError) as err:
        signer.post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="5", clientOrderId="rs")
    assert not isinstance(err.value, httpx.TimeoutException)
    assert [t["clientOrderId"] for t in sim.state()["transfers"]] == ["rs"]
    # the connection pool recovers and the retry is recognised as a duplicate
    r = signer.post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="5", clientOrderId="rs")
    assert r.json()["code"] == "-1024"


def test_timeout_after_is_a_read_timeout_over_http(sim: Simulator, server: SimulatorServer, clock: ManualClock) -> None:
    sim.set_faults([{"method": "POST", "path": TRANSFER, "mode": "timeout_after", "seconds": 3}])
    with httpx.Client(base_url=server.url, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            HK(c, clock, "demo-transfer").post(
                TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="5", clientOrderId="to"
            )
        assert time.monotonic() - started < 2
    assert [t["clientOrderId"] for t in sim.state()["transfers"]] == ["to"]


def test_timeout_after_closes_the_connection_after_seconds(sim: Simulator, server: SimulatorServer) -> None:
    sim.set_faults([{"method": "GET", "path": "/api/v1/time", "mode": "timeout_after", "seconds": 0.2}])
    with httpx.Client(base_url=server.url, timeout=5) as c, pytest.raises(httpx.RemoteProtocolError):
        c.get("/api/v1/time")


def test_error_after_and_latency_over_http(sim: Simulator, http: httpx.Client, clock: ManualClock) -> None:
    sim.set_faults(
        [
            {"method": "GET", "path": "/api/v1/ping", "mode": "latency", "seconds": 0.2},
            {"method": "POST", "path": TRANSFER, "mode": "error_after"},
        ]
    )
    started = time.monotonic()
    assert http.get("/api/v1/ping").status_code == 200
    assert time.monotonic() - started >= 0.2
    assert clock.sleeps == []  # over HTTP the wait is real, the simulated clock does not move
    r = HK(http, clock, "demo-transfer").post(
        TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="5", clientOrderId="ea"
    )
    assert r.status_code == 500 and r.json()["code"] == "-1000"
    assert balance(sim, "1002", "USDT") == "5"


def test_faults_via_http_control_endpoint(http: httpx.Client) -> None:
    assert http.post("/_sim/faults", json=[{"path": "/api/v1/time", "mode": "error_before", "status": 503}]).is_success
    assert http.get("/api/v1/time").status_code == 503
    assert http.delete("/_sim/faults").json() == []
    assert http.get("/api/v1/time").status_code == 200


def test_rate_limit_ban_over_http(clock: ManualClock) -> None:
    sim = Simulator(load_state(STATE_FILE).tuned(rate_limits={"ban_seconds": 5}), clock=clock)
    with serve(sim) as srv, httpx.Client(base_url=srv.url, timeout=5) as c:
        reader = HK(c, clock, "demo-read")
        codes = [reader.get("/api/v1/account/checkApiKey").status_code for _ in range(4)]
        assert codes == [200, 200, 429, 418]
        assert c.get("/api/v1/time").status_code == 418
        assert sim.state()["rate_limits"]["banned"] == {"127.0.0.1": int((clock.time() + 5) * 1000)}


def test_concurrent_http_clients_lose_no_update(sim: Simulator, server: SimulatorServer, clock: ManualClock) -> None:
    done: list[Decimal] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            signer = HK(c, clock, "demo-transfer")
            for i in range(10):
                r = signer.post(
                    TRANSFER,
                    fromAccountId="1001",
                    toAccountId="1002",
                    coin="USDT",
                    quantity=f"{n}.5",
                    clientOrderId=f"c{n}-{i}",
                )
                assert r.status_code == 200, r.text
                with lock:
                    done.append(Decimal(f"{n}.5"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 80
    assert Decimal(balance(sim, "1002", "USDT")) == sum(done, Decimal(0))
    assert Decimal(balance(sim, "1001", "USDT")) == Decimal(250000) - sum(done, Decimal(0))


def test_module_entry_point_reports_a_bad_state_file(capsys: pytest.CaptureFixture[str]) -> None:
    from treasury.simulator.__main__ import main

    assert main(["--state", "/nonexistent/simulator.yaml"]) == 2
    assert "cannot read the state file" in capsys.readouterr().err


def test_server_wait_returns_after_shutdown(sim: Simulator) -> None:
    srv = serve(sim)
    srv.wait(timeout=0.01)
    srv.shutdown()
    srv.wait(timeout=1)
