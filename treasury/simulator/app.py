"""The simulator as a request handler: ``httpx.Request -> httpx.Response``.

Order of checks for one request (each refusal has no effect):

1. ``/_sim/*`` control endpoints (no auth, no limits, no faults).
2. Source ban (418).
3. Route lookup (404 ``-1020``).
4. Fault draw: ``latency`` waits, ``error_before`` answers at once.
5. Private endpoints: API key (0102), IP list (0202), suspension (418) and rate limit (429),
   parameters (-1004/-100012/0001), signature (0002), timestamp (-1021), permission (-1005),
   2FA token (-1002).
6. The handler, under the ledger lock.
7. ``error_after`` / ``timeout_after`` / ``reset_after`` replace the answer.

Any unexpected exception becomes HTTP 500 ``{"code": "-1000"}``, never a stack trace.

With ``persist_path`` the world lives in a JSON file shared with other processes (see
``persist.py``): steps 5-6 (and the control endpoints) run inside a :meth:`StateFile.session`,
which reloads the file if another process changed it and saves after a request that changed
the world. Fault draws stay outside: fault rules and their counters are per process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from treasury.clock import SystemClock
from treasury.errors import ConfigError
from treasury.simulator.api import account, funding, spot
from treasury.simulator.api.routes import Call, Endpoint, weight_of
from treasury.simulator.auth import TwoFactor, check_timestamp, parse_request, verify_signature
from treasury.simulator.faults import Decision, Faults
from treasury.simulator.funding import Funding
from treasury.simulator.ledger import Ledger, TimeSource
from treasury.simulator.orders import OrderBook
from treasury.simulator.persist import StateFile, dump_world, restore_world
from treasury.simulator.protocol import Answer, ApiError, Params, SimRequest, to_amount
from treasury.simulator.ratelimit import RateLimiter
from treasury.simulator.state import KeySpec, SimulatorConfig

log = logging.getLogger(__name__)

ROUTES: dict[tuple[str, str], Endpoint] = {
    (e.method, e.path): e for module in (account, spot, funding) for e in module.ENDPOINTS
}
LOCAL_SOURCE = "127.0.0.1"


class Simulator:
    """An in-memory HashKey PRO exchange.

    Args:
        cfg: the world and its tunables (see :func:`treasury.simulator.load_state`).
        clock: anything with ``time()`` (epoch seconds); ``sleep()`` is used for in-process
            latency faults when present. Defaults to :class:`treasury.clock.SystemClock`.
        seed: seeds the fault RNG so probabilistic rules are deterministic.
        persist_path: keep the world (balances and every effect) in this JSON file: loaded now
            if it exists, saved after every request that changed it, shared safely with other
            processes using the same file. None: in memory only.

    Raises:
        ConfigError: ``persist_path`` exists but is unreadable or damaged (named).
    """

    def __init__(
        self,
        cfg: SimulatorConfig,
        clock: TimeSource | None = None,
        seed: int | None = None,
        *,
        persist_path: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock: TimeSource = clock if clock is not None else SystemClock()
        self.ledger = Ledger(cfg, self.clock)
        self.book = OrderBook(self.ledger)
        self.funding = Funding(self.ledger)
        self.limiter = RateLimiter(cfg, self.clock)
        self.faults = Faults(seed)
        self.twofa = TwoFactor()
        self.keys: dict[str, KeySpec] = {k.api_key: k for k in cfg.keys}
        self.store: StateFile | None = StateFile(self, Path(persist_path)) if persist_path is not None else None

    # ------------------------------------------------------------------ public surface

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Serve one request in-process (use with ``httpx.MockTransport``).

        Raises:
            httpx.ReadTimeout: a ``timeout_after`` fault fired (the effect committed).
            httpx.ReadError: a ``reset_after`` fault fired (the effect committed).
        """
        raw = request.url.raw_path.decode("ascii", errors="replace")
        path, _, query = raw.partition("?")
        sim_request = SimRequest(
            method=request.method.upper(),
            path=path,
            query=query,
            body=request.read(),
            headers={k.lower(): v for k, v in request.headers.items()},
            source=LOCAL_SOURCE,
        )
        answer = self.process(sim_request, sleep=self._clock_sleep)
        if answer.action == "timeout":
            raise httpx.ReadTimeout("simulated timeout: no answer (timeout_after fault)", request=request)
        if answer.action == "reset":
            raise httpx.ReadError("simulated connection reset by peer (reset_after fault)", request=request)
        return httpx.Response(
            answer.status,
            content=answer.encoded(),
            headers={"content-type": "application/json", **answer.headers},
            request=request,
        )

    def set_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the fault rules (same shape as the faults file). Raises ConfigError."""
        return self.faults.set(rules)

    def state(self) -> dict[str, Any]:
        """Balances and every effect with its client id (the ``GET /_sim/state`` body)."""
        led = self.ledger
        with self._synced(write=False), led.atomic():
            self.funding.refresh()
            return {
                "serverTime": led.now_ms(),
                "accounts": account.account_types(self._call(None, {})),
                "balances": led.balances_state(),
                "orders": [dict(o.detail(), apiKey=o.api_key) for o in self.book.orders.values()],
                "trades": [t.json() for t in self.book.trades],
                "transfers": [t.state() for t in led.transfers],
                "withdrawals": [dict(w.json(), apiKey=w.api_key) for w in self.funding.withdrawals],
                "fiat_withdrawals": [dict(f.json(), apiKey=f.api_key) for f in self.funding.fiat_withdrawals],
                "deposits": [d.json() for d in self.funding.deposits],
                "wallet_signings": [s.json() for s in self.funding.signings],
                "withdraw_whitelist": [e.model_dump() for e in self.funding.whitelist],
                "prices": {s: format(p, "f") for s, p in self.book.prices.items()},
                "rate_limits": self.limiter.state(),
                "faults": self.faults.rules(),
            }

    def dump(self) -> dict[str, Any]:
        """The world as JSON-ready data: balances, prices, whitelist, every effect with its client
        id, and the id counters (not fault rules, rate-limit windows or 2FA tokens)."""
        with self._synced(write=False):
            return dump_world(self)

    def restore(self, data: dict[str, Any], source: str = "<dump>") -> None:
        """Replace the world with a :meth:`dump` (saved to ``persist_path`` when there is one).

        Raises:
            ConfigError: the data is malformed or names accounts/symbols the config lacks
                (names ``source`` and the field); the world is then unchanged.
        """
        with self._synced(write=True):
            restore_world(self, data, source)

    def reset(self) -> None:
        """Back to the state file: balances, effects, limits and 2FA tokens (fault rules stay)."""
        with self._synced(write=True), self.ledger.atomic():
            self.ledger.reset()
            self.book.reset()
            self.funding.reset()
        self.limiter.reset()
        self.twofa.reset()

    def deposit(
        self,
        account_id: str,
        coin: str,
        quantity: str | Decimal,
        chain_type: str | None = None,
        address: str = "",
    ) -> dict[str, Any]:
        """Credit an on-chain deposit to an account (a test/demo control). Raises ApiError."""
        amount = to_amount("quantity", str(quantity))
        with self._synced(write=True):
            return self.funding.deposit(
                account_id=account_id, coin=coin, quantity=amount, chain=chain_type, address=address
            ).json()

    def set_price(self, symbol: str, price: str | Decimal) -> list[str]:
        """Move a symbol's price; returns the ids of resting orders that filled."""
        with self._synced(write=True):
            return [o.order_id for o in self.book.set_price(symbol, to_amount("price", str(price)))]

    # ------------------------------------------------------------------ the pipeline

    def _synced(self, *, write: bool) -> AbstractContextManager[None]:
        """The persistence session for one request (nothing without ``persist_path``)."""
        return self.store.session(write=write) if self.store is not None else nullcontext()

    def _clock_sleep(self, seconds: float) -> None:
        sleeper = getattr(self.clock, "sleep", None)
        if callable(sleeper):
            sleeper(seconds)
        else:
            time.sleep(seconds)

    def process(self, req: SimRequest, *, sleep: Callable[[float], None] = time.sleep) -> Answer:
        """Decide the answer to one request; never raises."""
        try:
            if req.path == "/_sim" or req.path.startswith("/_sim/"):
                with self._synced(write=req.method != "GET"):
                    return self._control(req)
            self.limiter.check_ban(req.source)
            endpoint = ROUTES.get((req.method, req.path))
            if endpoint is None:
                raise ApiError("-1020", f"Unsupported operation: no endpoint {req.method} {req.path}", 404)
            decision = self.faults.draw(req.method, req.path)
            if decision.latency > 0:
                sleep(decision.latency)
            if decision.mode == "error_before":
                return self._fault_answer(decision)
            with self._synced(write=endpoint.method != "GET"):
                answer = self._serve(endpoint, req)
            return self._after(decision, answer)
        except ApiError as exc:
            return Answer(exc.status, exc.body())
        except Exception:  # an internal bug must still answer like an exchange would
            log.exception("simulator internal error on %s %s", req.method, req.path)
            return Answer(500, {"code": "-1000", "msg": "An unknown error occurred while processing the request"})

    def _fault_answer(self, decision: Decision) -> Answer:
        assert decision.rule is not None
        return Answer(decision.rule.status or 500, decision.rule.error_body())

    def _after(self, decision: Decision, answer: Answer) -> Answer:
        rule = decision.rule
        if rule is None:
            return answer
        if rule.mode == "error_after":
            return self._fault_answer(decision)
        if rule.mode == "timeout_after":
            hold = rule.seconds if rule.seconds is not None else self.cfg.settings.timeout_after_seconds
            return Answer(answer.status, answer.body, action="timeout", hold_seconds=hold)
        if rule.mode == "reset_after":
            return Answer(answer.status, answer.body, action="reset")
        return answer

    def _call(self, key: KeySpec | None, params: dict[str, str], json_body: Any = None) -> Call:
        return Call(Params(params), key, self.ledger, self.book, self.funding, json_body)

    def _serve(self, endpoint: Endpoint, req: SimRequest) -> Answer:
        settings = self.cfg.settings
        key: KeySpec | None = None
        if endpoint.permission is not None:
            api_key = req.header("x-hk-apikey")
            if not api_key:
                raise ApiError("0102", "Invalid API key: the X-HK-APIKEY header is missing")
            key = self.keys.get(api_key)
            if key is None:
                raise ApiError("0102", "Invalid API key")
            if key.ips is not None and req.source not in key.ips:
                raise ApiError("0202", f"Invalid IP: {req.source} is not allowed for this key")
            assert endpoint.rate_class is not None
            self.limiter.admit(key.api_key, endpoint.rate_class, weight_of(endpoint, settings.rate_limits), req.source)
        parsed = parse_request(req, json_body=endpoint.json_body)
        if key is not None:
            verify_signature(key, parsed)
            check_timestamp(parsed.params, self.ledger.now_ms(), settings)
            if endpoint.permission not in key.permissions:
                raise ApiError("-1005", f"No permission: this API key lacks the {endpoint.permission} permission")
            if endpoint.twofa:
                self.twofa.consume(key, req.header("x-two-fa-token"), self.clock.time(), settings)
        body = endpoint.handler(self._call(key, parsed.params, parsed.json_body))
        return Answer(200, body)

    # ------------------------------------------------------------------ /_sim control endpoints

    def _control(self, req: SimRequest) -> Answer:
        route = (req.method, req.path)
        if route == ("GET", "/_sim/state"):
            return Answer(200, self.state())
        if route == ("GET", "/_sim/faults"):
            return Answer(200, self.faults.rules())
        if route == ("DELETE", "/_sim/faults"):
            self.faults.clear()
            return Answer(200, [])
        if route == ("POST", "/_sim/reset"):
            self.reset()
            return Answer(200, {"success": True})
        document = self._control_json(req)
        try:
            if route == ("POST", "/_sim/faults"):
                return Answer(200, self.set_faults(document))
            if route == ("POST", "/_sim/deposit"):
                return Answer(
                    200,
                    self.deposit(
                        str(document["account"]),
                        str(document["coin"]),
                        str(document["quantity"]),
                        document.get("chainType"),
                        str(document.get("address", "")),
                    ),
                )
            if route == ("POST", "/_sim/price"):
                filled = self.set_price(str(document["symbol"]), str(document["price"]))
                return Answer(200, {"symbol": document["symbol"], "price": document["price"], "filled": filled})
            if route == ("POST", "/_sim/advance"):
                advance = getattr(self.clock, "advance", None)
                if not callable(advance):
                    raise ApiError("-1020", "The simulator clock cannot be advanced (not a manual clock)")
                advance(float(document["seconds"]))
                return Answer(200, {"serverTime": self.ledger.now_ms()})
        except ConfigError as exc:
            raise ApiError("-1004", f"Bad request: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError("-1004", f"Bad request: {type(exc).__name__} {exc}") from exc
        raise ApiError("-1020", f"Unsupported operation: no control endpoint {req.method} {req.path}", 404)

    @staticmethod
    def _control_json(req: SimRequest) -> Any:
        try:
            return json.loads(req.body or b"null", parse_float=Decimal)
        except ValueError as exc:
            raise ApiError("-1004", f"Bad request: malformed JSON body ({exc})") from exc
