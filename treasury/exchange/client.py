"""The HashKey PRO client: one signed attempt per call, over an injected ``httpx.Client``.

``call`` checks, in this order, and sends nothing until every check passes:

1. the operation exists (``UnknownOperation``);
2. the key profile holds the operation's permission (``OperationNotPermitted``);
3. the parameters are valid (``ParameterError`` naming the parameter);
4. the rate limiter grants a slot (waits; ``ExchangeHalted`` while suspended or banned).

Then it signs and sends exactly one attempt. The only automatic second attempt is after
``-1021`` (timestamp outside recvWindow): the server time is re-synced and the request is
re-signed and sent once more, because the exchange did not execute the first. Every other
retry belongs to the execution layer (one retry layer per failure).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from treasury.clock import Clock
from treasury.errors import (
    Banned,
    ClockSkew,
    ExchangeError,
    ExchangeHalted,
    OperationNotPermitted,
    ParameterError,
    RateLimited,
)
from treasury.exchange.auth import (
    FORM,
    SIGNED_EXTENSION,
    HashKeyAuth,
    encode_params,
    totp,
)
from treasury.exchange.ratelimit import RateLimiter
from treasury.exchange.responses import interpret, was_sent
from treasury.keys import KeyProfile
from treasury.observe import metrics
from treasury.operations.params import Params
from treasury.operations.registry import OperationSpec, get_operation, parse_params

log = logging.getLogger("treasury.exchange")

JSON = "application/json"
PUBLIC_KEY = "(public)"  # limiter bucket for unsigned requests, which carry no API key
TIME_PATH = "/api/v1/time"
TOTP_STEP = 30


@dataclass(frozen=True)
class ExchangeResponse:
    """One successful answer and what was sent to get it.

    ``sent_params`` are the parameters exactly as sent, without the signature, with
    ``timestamp`` and ``recvWindow`` (batch orders: the legs under ``orders``).
    """

    data: Any
    status: int
    method: str
    path: str
    sent_params: dict[str, Any]
    attempt_started_at: datetime
    elapsed_seconds: float = 0.0


@dataclass(frozen=True)
class _Prepared:
    request: httpx.Request
    unsigned_params: dict[str, Any]
    auth: HashKeyAuth | None = None

    def sent_params(self) -> dict[str, Any]:
        """The parameters as sent: with the ``timestamp`` and ``recvWindow`` the auth added."""
        return {**self.unsigned_params, **self.request.extensions.get(SIGNED_EXTENSION, {})}


class _RedactSignature(logging.Filter):
    """httpx logs every request URL at INFO; the signature is replayable inside recvWindow."""

    _pattern = re.compile(r"(signature=)[0-9A-Za-z]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                self._pattern.sub(r"\1<redacted>", str(a)) if "signature=" in str(a) else a for a in args
            )
        if isinstance(record.msg, str) and "signature=" in record.msg:
            record.msg = self._pattern.sub(r"\1<redacted>", record.msg)
        return True


class _PerRequestIsDebug(logging.Filter):
    """httpx logs one INFO line per request ("HTTP Request: GET ... 200 OK"): at a worker's
    INFO level that drowns what matters. Such lines become DEBUG, shown only when the root
    logger is at DEBUG (``--loglevel DEBUG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _install_log_redaction() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSignature) for f in logger.filters):
            logger.addFilter(_RedactSignature())
        if not any(isinstance(f, _PerRequestIsDebug) for f in logger.filters):
            logger.addFilter(_PerRequestIsDebug())


_install_log_redaction()


class HashKeyClient:
    """Signed requests to HashKey PRO (or the simulator) through ``http``.

    Args:
        base_url: scheme and host, e.g. ``https://api-pro.hashkey.com``.
        http: the transport; tests pass ``httpx.Client(transport=httpx.MockTransport(...))``.
        clock: time source for timestamps, TOTP and waits.
        recv_window_ms: sent as ``recvWindow`` with every signed request.
        limiter: shared rate limiter; None sends without client-side limiting.
        suspension_seconds: how long a 429 suspends the key.
    """

    def __init__(
        self,
        base_url: str,
        http: httpx.Client,
        *,
        clock: Clock,
        recv_window_ms: int = 5000,
        limiter: RateLimiter | None = None,
        suspension_seconds: float = 60.0,
        sync_first: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # measure the server clock before the first signed call (the factory's clients do), so
        # a skewed host is corrected up front rather than after a -1021 refusal
        self._needs_sync = sync_first
        self.http = http
        self.clock = clock
        self.recv_window_ms = recv_window_ms
        self.limiter = limiter
        self.suspension_seconds = suspension_seconds
        self.offset_ms = 0  # server time minus local time, from sync_time()
        self._last_totp: dict[str, tuple[int, str]] = {}  # api key -> (time step, token) last sent

    # ------------------------------------------------------------------ public

    def close(self) -> None:
        """Close the HTTP client (its pooled connections)."""
        self.http.close()

    def __enter__(self) -> HashKeyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        op: OperationSpec | str,
        profile: KeyProfile | None,
        params: Params | Mapping[str, Any] | None = None,
        *,
        before_sign: Callable[[float], None] | None = None,
    ) -> ExchangeResponse:
        """Run one operation: check, wait for the limiter, sign, send one attempt.

        ``before_sign`` is called with the local time (epoch seconds) the request's timestamp
        is taken from, just before it is signed, every time it is (also on the re-signed try
        after ``-1021``); whatever it raises propagates and nothing is sent. The executor
        checks its lease there: the exchange refuses a request once recvWindow has passed
        after its timestamp, so a stall after this point cannot send it late.

        Raises:
            UnknownOperation: ``op`` is not in the registry.
            OperationNotPermitted: the profile lacks the permission; nothing was sent.
            ParameterError: a bad parameter (named), or a signed operation without a profile.
            ExchangeHalted: the key is suspended or the host banned; nothing was sent.
            ExchangeError: any error from :func:`treasury.exchange.responses.interpret`;
                ``RateLimited`` also suspends the key, ``Banned`` also bans the host.
        """
        spec = get_operation(op) if isinstance(op, str) else op
        if profile is not None and spec.permission not in profile.permissions:
            raise OperationNotPermitted(spec.name, profile.name, spec.permission.value)
        if spec.signed and profile is None:
            raise ParameterError("key", f"operation {spec.name!r} is signed and needs a key profile")
        checked = self._check_params(spec, params)
        wire = checked.to_wire()
        client_id = _client_id(spec, checked)
        if spec.signed and self._needs_sync:
            self._first_sync()
        try:
            return self._call_signed(spec, profile, wire, client_id, before_sign)
        except ExchangeError as exc:
            if profile is not None:
                exc.name_profile(profile.name, profile.api_key)  # which key the exchange refused
            raise

    def _call_signed(
        self,
        spec: OperationSpec,
        profile: KeyProfile | None,
        wire: dict[str, Any],
        client_id: str | None,
        before_sign: Callable[[float], None] | None,
    ) -> ExchangeResponse:
        try:
            return self._attempt(spec, profile, wire, client_id, before_sign)
        except ClockSkew:
            # -1021 is a definite refusal: nothing happened, so one re-signed try is safe.
            self.sync_time()
            try:
                return self._attempt(spec, profile, wire, client_id, before_sign)
            except ClockSkew as exc:
                raise ClockSkew(
                    "clock skew: the exchange still refuses the timestamp after re-syncing with "
                    f"{TIME_PATH} (offset {self.offset_ms} ms, recvWindow {self.recv_window_ms} ms); "
                    "check this host's clock",
                    status=exc.status, code=exc.code, msg=exc.msg, operation=spec.name, client_id=client_id,
                ) from None

    def sync_time(self) -> int:
        """Measure the server clock against ours via ``GET /api/v1/time``; returns ``offset_ms``.

        Raises:
            ExchangeError: the time request failed (see ``interpret``).
        """
        spec = get_operation("server_time")
        answered = self._answer_hook(PUBLIC_KEY, spec, self._acquire(PUBLIC_KEY, spec, None))
        before = self.clock.time()
        try:
            data, _status, _elapsed = self._send(
                self.http.build_request("GET", self.base_url + TIME_PATH), "server_time", None, answered
            )
        except Banned as exc:
            if self.limiter is not None:
                self.limiter.ban(f"HTTP {exc.status} on server_time")
            raise
        after = self.clock.time()
        try:
            server_ms = int(data["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise ExchangeError(
                f"unexpected answer from {TIME_PATH}: no integer serverTime", operation="server_time"
            ) from None
        # The server read its clock somewhere between our two readings: assume the middle.
        self.offset_ms = server_ms - round((before + after) / 2 * 1000)
        log.debug("server time offset %d ms", self.offset_ms)
        return self.offset_ms

    def _first_sync(self) -> None:
        """One ``sync_time`` before the first signed call. A failure is logged, not raised: the
        call goes ahead on the local clock, and a ``-1021`` refusal still re-syncs and retries.

        Raises:
            ExchangeHalted, Banned: traffic is stopped (the signed call could not go either).
        """
        self._needs_sync = False
        try:
            self.sync_time()
        except (ExchangeHalted, Banned):
            raise
        except ExchangeError as exc:
            log.warning("could not read the exchange's time (%s); signing with the local clock", exc)

    def timestamp_ms(self) -> int:
        """Our idea of the server's current time in milliseconds."""
        return int(self.clock.time() * 1000) + self.offset_ms

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_params(spec: OperationSpec, params: Params | Mapping[str, Any] | None) -> Params:
        if isinstance(params, spec.params_model):
            return params
        if isinstance(params, Params):
            expected = spec.params_model.__name__
            got = type(params).__name__
            raise ParameterError("params", f"expected {expected} for {spec.name}, got {got}")
        return parse_params(spec, params or {})

    def _acquire(self, api_key: str, spec: OperationSpec, client_id: str | None) -> str | None:
        if self.limiter is None:
            return None
        started = self.clock.monotonic()
        try:
            ticket = self.limiter.acquire(api_key, spec.rate_class, spec.weight)
            metrics.rate_limit_granted(api_key, spec.rate_class.value, spec.weight,
                                       self.clock.monotonic() - started)
            return ticket
        except ExchangeHalted as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ExchangeHalted(
                f"exchange traffic halted: {reason}; nothing was sent",
                operation=spec.name, client_id=client_id,
            ) from None

    def _answer_hook(self, api_key: str, spec: OperationSpec, ticket: str | None) -> Callable[[], None]:
        """Tells the limiter that the request of ``ticket`` was answered (or never left)."""
        def answered() -> None:
            if self.limiter is None or ticket is None:
                return
            try:
                self.limiter.answered(api_key, spec.rate_class, ticket)
            except Exception as exc:  # the place is only held longer; the answer must not be lost
                log.warning("rate-limit place not released early: %s: %s", type(exc).__name__, exc)
        return answered

    def _attempt(
        self, spec: OperationSpec, profile: KeyProfile | None, wire: dict[str, Any], client_id: str | None,
        before_sign: Callable[[float], None] | None = None,
    ) -> ExchangeResponse:
        api_key = profile.api_key if profile is not None else PUBLIC_KEY
        answered = self._answer_hook(api_key, spec, self._acquire(api_key, spec, client_id))
        started = self.clock.now()
        try:
            prepared = self._prepare(spec, profile, wire, before_sign)
        except BaseException:
            answered()  # nothing was sent
            raise
        try:
            data, status, elapsed = self._send(prepared.request, spec.name, client_id, answered, prepared.auth)
        except RateLimited as exc:
            metrics.throttled(exc.status or 429, api_key)
            if self.limiter is not None:
                what = f"HTTP {exc.status}" + (f" code {exc.code}" if exc.code else "")
                self.limiter.suspend(api_key, self.suspension_seconds, f"{what} on {spec.name}")
            raise
        except Banned as exc:
            metrics.throttled(exc.status or 418, api_key)
            if self.limiter is not None:
                self.limiter.ban(f"HTTP {exc.status} on {spec.name}")
            raise
        return ExchangeResponse(
            data=data, status=status, method=spec.method, path=spec.path,
            sent_params=prepared.sent_params(), attempt_started_at=started, elapsed_seconds=elapsed,
        )

    def _prepare(
        self, spec: OperationSpec, profile: KeyProfile | None, wire: dict[str, Any],
        before_sign: Callable[[float], None] | None = None,
    ) -> _Prepared:
        url = self.base_url + spec.path
        if not spec.signed or profile is None:
            if before_sign is not None:
                before_sign(self.clock.time())
            query = encode_params(wire)
            request = self.http.build_request(spec.method, f"{url}?{query}" if query else url)
            return _Prepared(request, dict(wire))

        two_fa: Callable[[], str] | None = None
        if spec.two_fa and profile.totp_secret is not None:
            two_fa = functools.partial(self._fresh_totp, profile)
        auth = HashKeyAuth(
            profile.api_key, profile.secret, clock=self.clock, offset_ms=self.offset_ms,
            recv_window_ms=self.recv_window_ms, before_sign=before_sign, two_fa=two_fa,
        )
        if spec.body == "json":
            # Batch orders: JSON array body; only the query (timestamp, recvWindow) is signed.
            legs = wire.get("orders", [])
            request = self.http.build_request(
                spec.method, url, content=json.dumps(legs, separators=(",", ":")).encode(),
                headers={"Content-Type": JSON},
            )
            return _Prepared(request, {"orders": legs}, auth)
        encoded = encode_params(wire)
        if spec.method == "POST":
            # The form body is built once; the auth signs and sends these exact bytes.
            request = self.http.build_request(
                spec.method, url, content=encoded.encode(), headers={"Content-Type": FORM}
            )
        else:
            request = self.http.build_request(spec.method, f"{url}?{encoded}" if encoded else url)
        return _Prepared(request, dict(wire), auth)

    def _fresh_totp(self, profile: KeyProfile) -> str:
        """A 2FA token this client has not sent before for the key.

        A token is valid once, and TOTP gives the same token for 30 s; an attempt right after
        another one therefore waits for the next time step rather than be refused.
        """
        assert profile.totp_secret is not None
        secret = profile.totp_secret.get_secret_value()
        now = self.timestamp_ms() / 1000
        token = totp(secret, now, step=TOTP_STEP)
        if self._last_totp.get(profile.api_key) == (int(now // TOTP_STEP), token):
            self.clock.sleep(TOTP_STEP - now % TOTP_STEP + 0.05)
            now = self.timestamp_ms() / 1000
            token = totp(secret, now, step=TOTP_STEP)
        self._last_totp[profile.api_key] = (int(now // TOTP_STEP), token)
        return token

    def _send(self, request: httpx.Request, operation: str, client_id: str | None,
              answered: Callable[[], None], auth: HashKeyAuth | None = None) -> tuple[Any, int, float]:
        """Send once (signed by ``auth`` if given). ``answered`` is called once the exchange has
        answered, or when the request surely never left; a request that may still be on its way
        keeps its rate-limit place."""
        t0 = self.clock.monotonic()
        try:
            response = self.http.send(request, auth=auth) if auth is not None else self.http.send(request)
            answered()
            body = response.read()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if not was_sent(exc):
                answered()
            elapsed = self.clock.monotonic() - t0
            log.debug("%s %s -> %s after %.3fs", request.method, request.url.path, type(exc).__name__,
                      elapsed)
            interpret(sent=was_sent(exc), status=None, body=None, error=exc,
                      operation=operation, client_id=client_id)
            raise AssertionError("interpret raises for every transport error") from exc  # pragma: no cover
        except Exception:
            if auth is not None and SIGNED_EXTENSION not in request.extensions:
                answered()  # refused before signing (before_sign, 2FA): nothing was sent
            raise
        elapsed = self.clock.monotonic() - t0
        log.debug("%s %s -> %d in %.3fs", request.method, request.url.path, response.status_code, elapsed)
        data = interpret(
            sent=True, status=response.status_code, body=body, operation=operation, client_id=client_id
        )
        return data, response.status_code, elapsed


def _client_id(spec: OperationSpec, checked: Params) -> str | None:
    """The request's client id (a batch's legs' ids, comma-separated), from the validated model."""
    field = spec.client_id_field
    if field is None:
        return None
    ids = [str(value) for part in spec.legs.parts(checked) if (value := getattr(part, field, None)) is not None]
    return ",".join(ids) or None
