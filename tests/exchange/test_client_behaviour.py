"""The client's behaviour around one attempt: clock offset and -1021, 429/418 halts, and no
retries of its own for anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.exchange.conftest import BASE_URL, PROFILES, Recorder
from treasury.clock import ManualClock
from treasury.errors import (
    Banned,
    ClockSkew,
    ExchangeHalted,
    NotSent,
    OutcomeUnknown,
    RateLimited,
)
from treasury.exchange import HashKeyClient, LocalRateLimiter
from treasury.settings import RateLimits
from treasury.simulator import Simulator

WITHDRAW = {"coin": "USDT", "chainType": "ETH", "address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90",
            "quantity": "10", "clientOrderId": "w1"}


def timestamp_of(request: httpx.Request) -> int:
    return int(dict(parse_qsl(request.url.query.decode()))["timestamp"])


# ------------------------------------------------------------------ clock


class OffsetClock:
    """The exchange's clock: ours plus a fixed skew, moving whenever ours moves."""

    def __init__(self, base: ManualClock, offset: float) -> None:
        self.base = base
        self.offset = offset

    def time(self) -> float:
        return self.base.time() + self.offset

    def now(self) -> Any:
        return ManualClock(self.time()).now()

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)


def _skewed(sim_config: Any, skew: float, client_clock: ManualClock,
            sync_first: bool = False) -> tuple[Simulator, Recorder, HashKeyClient]:
    sim = Simulator(sim_config, clock=OffsetClock(client_clock, skew), seed=1)
    recorder = Recorder(sim.handle)
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    limiter = LocalRateLimiter(RateLimits(), client_clock)
    return sim, recorder, HashKeyClient(BASE_URL, http, clock=client_clock, limiter=limiter, sync_first=sync_first)


def test_a_client_that_syncs_first_corrects_a_skewed_clock_before_its_first_signed_call(
    sim_config: Any, clock: ManualClock
) -> None:
    # Our clock runs 3 s ahead of the server: without the up-front sync this would be a -1021.
    sim, recorder, client = _skewed(sim_config, -3.0, clock, sync_first=True)
    client.call("server_time", None)  # a public call does not need it
    client.call("asset_transfer", PROFILES["transfers"], {
        "fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "5", "clientOrderId": "t1",
    })
    client.call("check_api_key", PROFILES["ops-read"])
    assert [r.url.path for r in recorder.requests] == [
        "/api/v1/time", "/api/v1/time", "/api/v1/account/assetTransfer", "/api/v1/account/checkApiKey",
    ]  # one sync, before the first signed call; no refusal, no retry
    assert client.offset_ms == -3000 and len(sim.state()["transfers"]) == 1


def test_a_failed_first_sync_signs_with_the_local_clock(sim_config: Any, clock: ManualClock) -> None:
    sim, recorder, client = _skewed(sim_config, 0.0, clock, sync_first=True)
    sim.set_faults([{"method": "GET", "path": "/api/v1/time", "mode": "error_before", "status": 503, "count": 1}])
    assert client.call("check_api_key", PROFILES["ops-read"]).data == {"accountType": "master"}
    assert [r.url.path for r in recorder.requests] == ["/api/v1/time", "/api/v1/account/checkApiKey"]
    assert client.offset_ms == 0


def test_sync_time_applies_the_server_offset(sim_config: Any, clock: ManualClock) -> None:
    _sim, recorder, client = _skewed(sim_config, 3.0, clock)
    assert client.sync_time() == 3000 and client.offset_ms == 3000
    client.call("check_api_key", PROFILES["ops-read"])
    assert timestamp_of(recorder.requests[-1]) == int(clock.time() * 1000) + 3000


def test_minus_1021_resyncs_and_retries_once(sim_config: Any, clock: ManualClock) -> None:
    # Our clock runs 3 s ahead of the server: more than the 1 s the exchange tolerates.
    sim, recorder, client = _skewed(sim_config, -3.0, clock)
    response = client.call("asset_transfer", PROFILES["transfers"], {
        "fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "5", "clientOrderId": "t1",
    })
    assert [r.url.path for r in recorder.requests] == [
        "/api/v1/account/assetTransfer", "/api/v1/time", "/api/v1/account/assetTransfer",
    ]
    first, _, second = recorder.requests
    first_ts = int(dict(parse_qsl(first.content.decode()))["timestamp"])
    second_ts = int(dict(parse_qsl(second.content.decode()))["timestamp"])
    # Re-signed with the server's time; the retry also waited for the 1/s transfer budget.
    waited_ms = round(sum(clock.sleeps) * 1000)
    assert first_ts - second_ts == 3000 - waited_ms
    assert second_ts == int(clock.time() * 1000) - 3000
    assert first.content != second.content
    assert client.offset_ms == -3000
    assert response.data["success"] is True
    assert len(sim.state()["transfers"]) == 1


def test_persistent_skew_raises_clock_skew_after_one_retry(make_client: Callable[..., HashKeyClient],
                                                          clock: ManualClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/time":
            return httpx.Response(200, json={"serverTime": int(clock.time() * 1000)})
        return httpx.Response(400, json={"code": -1021, "msg": "Timestamp outside of the recvWindow"})

    recorder = Recorder(handler)
    client = make_client(recorder)
    with pytest.raises(ClockSkew) as info:
        client.call("balances", PROFILES["ops-read"])
    assert len(recorder.requests) == 3  # attempt, time sync, one more attempt; no storm
    assert "clock skew" in str(info.value) and info.value.code == "-1021"
    assert info.value.operation == "balances"


# ------------------------------------------------------------------ halts


def test_429_suspends_the_key_and_nothing_is_sent_until_it_ends(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator, clock: ManualClock
) -> None:
    client = make_client(recorder, limits=RateLimits(suspension_seconds=60))
    sim.set_faults([{"method": "GET", "path": "/api/v1/account", "mode": "error_before", "status": 429,
                     "code": "0003", "count": 1}])
    with pytest.raises(RateLimited):
        client.call("balances", PROFILES["ops-read"])
    sent = len(recorder.requests)
    with pytest.raises(ExchangeHalted) as info:
        client.call("check_api_key", PROFILES["ops-read"])
    assert "suspended" in str(info.value) and info.value.operation == "check_api_key"
    assert len(recorder.requests) == sent  # refused locally
    client.call("check_api_key", PROFILES["trading"])  # other keys keep working
    clock.advance(60)
    client.call("check_api_key", PROFILES["ops-read"])
    assert len(recorder.requests) == sent + 2


def test_rate_limit_code_in_a_400_also_suspends(make_client: Callable[..., HashKeyClient], clock: ManualClock) -> None:
    limiter = LocalRateLimiter(RateLimits(), clock)
    client = make_client(lambda r: httpx.Response(400, json={"code": "-3145", "msg": "too frequent"}),
                         limiter=limiter)
    with pytest.raises(RateLimited):
        client.call("balances", PROFILES["ops-read"])
    assert limiter.halted("demo-read") is not None


def test_418_bans_the_host_until_a_person_resumes(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator, clock: ManualClock
) -> None:
    limiter = LocalRateLimiter(RateLimits(), clock)
    client = make_client(recorder, limiter=limiter)
    sim.set_faults([{"path": "/api/v1/account", "mode": "error_before", "status": 418, "count": 1}])
    with pytest.raises(Banned):
        client.call("balances", PROFILES["ops-read"])
    sent = len(recorder.requests)
    clock.advance(3600)
    for name in ("ops-read", "trading", "admin"):
        with pytest.raises(ExchangeHalted, match="banned"):
            client.call("check_api_key", PROFILES[name])
    with pytest.raises(ExchangeHalted):
        client.sync_time()
    assert len(recorder.requests) == sent
    limiter.resume("alice")
    client.call("check_api_key", PROFILES["ops-read"])
    assert len(recorder.requests) == sent + 1


def test_the_limiter_keeps_the_simulator_from_ever_answering_429(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator, clock: ManualClock
) -> None:
    client = make_client(recorder)
    start = clock.time()
    for _ in range(6):  # any 429 would raise RateLimited here
        client.call("balances", PROFILES["ops-read"])  # weight 5 against a 2/s budget
        client.call("check_api_key", PROFILES["ops-read"])
    assert len(recorder.requests) == 12
    assert sim.state()["rate_limits"]["suspended"] == {}
    assert clock.time() - start >= 11  # each balances read needed its own window


def test_without_a_limiter_the_simulator_does_answer_429(
    make_client: Callable[..., HashKeyClient], recorder: Recorder
) -> None:
    client = make_client(recorder, limiter=None)
    client.call("balances", PROFILES["ops-read"])
    with pytest.raises(RateLimited):
        client.call("balances", PROFILES["ops-read"])


# ------------------------------------------------------------------ one attempt only


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"mode": "error_before", "status": 500}, OutcomeUnknown),
        ({"mode": "error_after", "status": 503}, OutcomeUnknown),
        ({"mode": "error_after", "status": 400, "code": "-1006"}, OutcomeUnknown),
        ({"mode": "timeout_after"}, OutcomeUnknown),
        ({"mode": "reset_after"}, OutcomeUnknown),
    ],
)
def test_unknown_outcomes_are_not_retried(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator,
    fault: dict[str, Any], expected: type[Exception],
) -> None:
    client = make_client(recorder)
    sim.set_faults([{"method": "POST", "path": "/api/v1/account/withdraw", "count": 1, **fault}])
    with pytest.raises(expected) as info:
        client.call("withdraw", PROFILES["withdrawals"], WITHDRAW)
    assert len(recorder.requests) == 1
    assert info.value.client_id == "w1" and info.value.operation == "withdraw"  # type: ignore[attr-defined]
    effects = len(sim.state()["withdrawals"])
    assert effects == (0 if fault["mode"] == "error_before" else 1)


def test_connect_failure_is_not_sent(make_client: Callable[..., HashKeyClient]) -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(refuse)
    with pytest.raises(NotSent) as info:
        client.call("withdraw", PROFILES["withdrawals"], WITHDRAW)
    assert info.value.retry_safe and len(calls) == 1


# ------------------------------------------------------------------ rate-limit places and answers


class SpyLimiter(LocalRateLimiter):
    """Records which tickets the client reported as answered."""

    def __init__(self, clock: ManualClock, fail: bool = False) -> None:
        super().__init__(RateLimits(), clock)
        self.tickets: list[str | None] = []
        self.answers: list[str | None] = []
        self.fail = fail

    def acquire(self, api_key: str, rate_class: Any, weight: int = 1) -> str | None:
        ticket = super().acquire(api_key, rate_class, weight)
        self.tickets.append(ticket)
        return ticket

    def answered(self, api_key: str, rate_class: Any, ticket: str | None) -> None:
        if self.fail:
            raise ConnectionError("limiter store unreachable")
        self.answers.append(ticket)
        super().answered(api_key, rate_class, ticket)


@pytest.mark.parametrize(
    ("fault", "freed"),
    [
        (None, True),  # answered
        ({"mode": "error_after", "status": 503}, True),  # answered, with an error: it arrived
        ({"mode": "timeout_after"}, False),  # no answer: it may still be on its way
        ({"mode": "reset_after"}, False),
    ],
)
def test_the_client_frees_a_place_only_once_the_exchange_answered(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator, clock: ManualClock,
    fault: dict[str, Any] | None, freed: bool,
) -> None:
    limiter = SpyLimiter(clock)
    client = make_client(recorder, limiter=limiter)
    if fault is not None:
        sim.set_faults([{"method": "POST", "path": "/api/v1/account/withdraw", "count": 1, **fault}])
    try:
        client.call("withdraw", PROFILES["withdrawals"], WITHDRAW)
    except OutcomeUnknown:
        assert fault is not None
    assert len(limiter.tickets) == 1 and limiter.tickets[0]
    assert limiter.answers == (limiter.tickets if freed else [])


def test_a_request_that_never_left_frees_its_place(make_client: Callable[..., HashKeyClient],
                                                   clock: ManualClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    limiter = SpyLimiter(clock)
    with pytest.raises(NotSent):
        make_client(refuse, limiter=limiter).call("withdraw", PROFILES["withdrawals"], WITHDRAW)
    assert limiter.answers == limiter.tickets and len(limiter.tickets) == 1


def test_an_answer_is_never_lost_to_the_limiter_failing(
    make_client: Callable[..., HashKeyClient], recorder: Recorder, sim: Simulator, clock: ManualClock
) -> None:
    client = make_client(recorder, limiter=SpyLimiter(clock, fail=True))
    response = client.call("withdraw", PROFILES["withdrawals"], WITHDRAW)
    assert response.data["success"] is True and response.data["clientOrderId"] == "w1"
    assert len(sim.state()["withdrawals"]) == 1
