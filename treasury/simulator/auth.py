"""Request authentication exactly as HashKey PRO checks it: parameters, HMAC signature,
timestamp window and the one-time 2FA token.

Signing rule (reference section 1.2): ``totalParams`` is the raw query string concatenated
directly (no ``&``) with the raw form body, each with its ``signature=`` pair removed. A JSON
body (batch orders) is never signed. The signature may sit in the query or in the form body.
Parameters are the query's and the form body's merged; a name present in both takes the query's
value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from treasury.simulator.protocol import (
    ApiError,
    SimRequest,
    invalid,
    missing,
    parse_form,
    strip_signature,
    to_int,
)
from treasury.simulator.state import KeySpec, SimSettings

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SIX_DIGITS = re.compile(r"^[0-9]{6}$")


@dataclass(frozen=True)
class Parsed:
    """A request's parameters, its signed string and signature, and a JSON body if any."""

    params: dict[str, str]
    total_params: str
    signature: str | None
    json_body: Any = None


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError("-1004", f"Bad request: the {what} is not UTF-8") from exc


def parse_request(req: SimRequest, *, json_body: bool) -> Parsed:
    """Split a request into parameters, ``totalParams`` and signature.

    Raises:
        ApiError: -1004 for an undecodable body, a JSON body where none is allowed, or a
            non-JSON body where JSON is required.
    """
    query, query_sig = strip_signature(req.query)
    query_params = parse_form(query)
    body_text = _text(req.body, "body") if req.body else ""
    is_json = req.content_type == JSON or (req.content_type == "" and body_text.lstrip()[:1] in ("[", "{"))
    if json_body:
        if not body_text.strip():
            raise ApiError("-1004", "Bad request: a JSON array body is required")
        if not is_json:
            raise ApiError("-1004", "Bad request: the body must be JSON (Content-Type: application/json)")
        try:
            document = json.loads(body_text, parse_float=str, parse_int=str)
        except ValueError as exc:
            raise ApiError("-1004", f"Bad request: malformed JSON body ({exc})") from exc
        return Parsed(query_params, query, query_sig, document)
    if body_text and is_json:
        raise ApiError("-1004", f"Bad request: send parameters as a query string or {FORM}, not JSON")
    body, body_sig = strip_signature(body_text)
    params = parse_form(body) if req.method != "GET" else {}
    params.update(query_params)  # a parameter sent in both places takes the query's value
    params.pop("signature", None)
    return Parsed(params, query + body, query_sig if query_sig is not None else body_sig)


def sign(secret: str, total_params: str) -> str:
    """Hex HMAC-SHA256 of ``total_params`` keyed by ``secret``."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def verify_signature(key: KeySpec, parsed: Parsed) -> None:
    """Raises ApiError 0002 (msg mentions the signature) when missing or wrong."""
    if parsed.signature is None or parsed.signature == "":
        raise ApiError("0002", "Signature missing: send the signature parameter")
    expected = sign(key.secret, parsed.total_params)
    given = parsed.signature.strip().lower()
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", errors="replace")):
        raise ApiError("0002", "Incorrect signature")


def check_timestamp(params: dict[str, str], now_ms: int, settings: SimSettings) -> None:
    """Accept only ``timestamp < serverTime + max_ahead`` and ``serverTime - timestamp <= recvWindow``.

    Raises:
        ApiError: -100012 missing timestamp, 0001 malformed, -1021 outside the window.
    """
    raw = params.get("timestamp")
    if not raw:
        raise missing("timestamp", "Long")
    ts = to_int("timestamp", raw)
    window = settings.recv_window_default_ms
    if params.get("recvWindow"):
        window = to_int("recvWindow", params["recvWindow"])
        if not 0 < window <= settings.recv_window_max_ms:
            raise invalid("recvWindow", f"must be between 1 and {settings.recv_window_max_ms}")
    if ts >= now_ms + settings.max_ahead_ms or now_ms - ts > window:
        raise ApiError(
            "-1021",
            f"Timestamp for this request is outside of the recvWindow (timestamp {ts}, serverTime {now_ms}, "
            f"recvWindow {window})",
        )


class TwoFactor:
    """One-time ``X-TWO-FA-TOKEN`` tokens for keys with ``twofa: true``.

    A token is six digits (or one of ``settings.twofa_codes`` when that list is given) and is
    accepted once per key within ``twofa_ttl_seconds``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], float] = {}

    def consume(self, key: KeySpec, token: str | None, now: float, settings: SimSettings) -> None:
        """Raises ApiError -1002 when the token is missing, malformed, unknown or reused."""
        if not key.twofa:
            return
        if not token:
            raise ApiError("-1002", "2FA token required: send the X-TWO-FA-TOKEN header")
        valid = SIX_DIGITS.match(token) is not None
        if settings.twofa_codes is not None:
            valid = token in settings.twofa_codes
        if not valid:
            raise ApiError("-1002", "Invalid 2FA token (X-TWO-FA-TOKEN)")
        with self._lock:
            ttl = settings.twofa_ttl_seconds
            self._used = {k: t for k, t in self._used.items() if now - t < ttl}
            if (key.api_key, token) in self._used:
                raise ApiError("-1002", "2FA token already used (X-TWO-FA-TOKEN is valid once)")
            self._used[(key.api_key, token)] = now

    def reset(self) -> None:
        with self._lock:
            self._used.clear()
