"""The one place that turns what came back from HashKey into a result or an error.

Input is always the same four facts: whether the request left this process, the HTTP
status, the body bytes, and the transport exception if any. Output is the parsed JSON or
one error of the exchange tree in :mod:`treasury.errors`::

    not sent (connect failure)                         -> NotSent          (retry is safe)
    sent, then timeout / reset / protocol error        -> OutcomeUnknown   (reconcile)
    5xx, 408, any status we cannot read                -> OutcomeUnknown
    429, code 0003 / -3145                             -> RateLimited
    418                                                -> Banned
    -1000 -1001 -1006 -1007 -1146 -1147 -2040          -> OutcomeUnknown   (even with HTTP 400)
    -1141 -1024 -4013                                  -> DuplicateClientId
    -1005 -3117 0202 0104 -1205 -4009                  -> ExchangePermissionDenied
    0102 0103 -1002, 0001/0002 about the signature     -> AuthenticationFailed
    -1021                                              -> ClockSkew
    0211                                               -> NotFound
    any other 4xx (e.g. -1171 address not whitelisted) -> Rejected
    2xx                                                -> parsed JSON, unless the top-level
                                                          ``code`` is set and is not a success code

Codes are compared as strings: the exchange sends both ``"0211"`` and ``-1141``.
Messages carry status, code, msg, operation and client id, never a secret, signature or key.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

import httpx

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

SUCCESS_CODES = frozenset({"0", "0000", "200"})

UNKNOWN_CODES = frozenset({"-1000", "-1001", "-1006", "-1007", "-1146", "-1147", "-2040"})
RATE_LIMIT_CODES = frozenset({"0003", "-3145"})
DUPLICATE_CODES = frozenset({"-1141", "-1024", "-4013"})
PERMISSION_CODES = frozenset({"-1005", "-3117", "0202", "0104", "-1205", "-4009"})
AUTH_CODES = frozenset({"0102", "0103", "-1002"})
SIGNATURE_CODES = frozenset({"0001", "0002"})  # only when the msg speaks of the signature
CLOCK_SKEW_CODE = "-1021"
NOT_FOUND_CODE = "0211"

# Exceptions raised before any byte of the request reached the network.
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)

_MSG_LIMIT = 300
_SIGNATURE_RE = re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE)


def was_sent(exc: BaseException) -> bool:
    """Whether a transport exception happened after the request may have reached the server.

    Connect failures (refused, DNS, connect timeout, no pool slot) happen before anything
    is written; every other error (read/write timeout, reset, protocol error) may come after
    the exchange received and executed the request.
    """
    return not isinstance(exc, _NOT_SENT_ERRORS)


def code_text(value: Any) -> str | None:
    """Normalise an exchange ``code`` (number or string) to its string form, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value).strip()
    return None


def _safe_msg(value: Any) -> str | None:
    if value is None:
        return None
    text = _SIGNATURE_RE.sub(r"\1<redacted>", str(value))
    return text if len(text) <= _MSG_LIMIT else text[:_MSG_LIMIT] + "…"


def _parse(body: bytes | None) -> tuple[bool, Any]:
    if not body:
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def error_class_for_code(code: str, msg: str | None) -> type[ExchangeError] | None:
    """The error class a business ``code`` stands for, or None when the table has no entry."""
    if code in UNKNOWN_CODES:
        return OutcomeUnknown
    if code in RATE_LIMIT_CODES:
        return RateLimited
    if code in DUPLICATE_CODES:
        return DuplicateClientId
    if code in PERMISSION_CODES:
        return ExchangePermissionDenied
    if code == CLOCK_SKEW_CODE:
        return ClockSkew
    if code == NOT_FOUND_CODE:
        return NotFound
    if code in AUTH_CODES:
        return AuthenticationFailed
    if code in SIGNATURE_CODES and msg and "signature" in msg.lower():
        return AuthenticationFailed
    return None


_DESCRIPTIONS: dict[type[ExchangeError], str] = {
    OutcomeUnknown: "outcome unknown: the exchange may or may not have done it",
    RateLimited: "rate limited by the exchange; the key is suspended",
    Banned: "the exchange banned this host (HTTP 418); all traffic stops until a person resumes",
    DuplicateClientId: "the client id was already used: the operation exists, look it up",
    ExchangePermissionDenied: "the exchange refused: the key lacks permission",
    AuthenticationFailed: "the exchange refused the credentials or the signature",
    ClockSkew: "clock skew: the request timestamp is outside the exchange's recvWindow",
    NotFound: "not found on the exchange",
    Rejected: "the exchange rejected the request",
}


def _raise(
    cls: type[ExchangeError],
    *,
    status: int | None,
    code: str | None,
    msg: str | None,
    operation: str | None,
    client_id: str | None,
    detail: str | None = None,
) -> NoReturn:
    text = detail or _DESCRIPTIONS.get(cls, "exchange error")
    raise cls(text, status=status, code=code, msg=msg, operation=operation, client_id=client_id)


def interpret(
    *,
    sent: bool,
    status: int | None,
    body: bytes | None,
    error: BaseException | None = None,
    operation: str | None = None,
    client_id: str | None = None,
) -> Any:
    """Map one attempt's outcome onto the parsed JSON body or an exchange error.

    Args:
        sent: whether the request may have reached the exchange (see :func:`was_sent`).
        status: the HTTP status, or None when no answer arrived.
        body: the raw response body.
        error: the transport exception, when there is no answer.
        operation, client_id: carried into the error for the caller's records.

    Returns:
        The parsed JSON of a 2xx answer.

    Raises:
        NotSent, OutcomeUnknown, RateLimited, Banned, Rejected and its subclasses, as the
        module docstring's table says.
    """
    where = {"operation": operation, "client_id": client_id}
    if status is None:
        kind = type(error).__name__ if error is not None else "no response"
        if not sent:
            _raise(NotSent, status=None, code=None, msg=None, **where,
                          detail=f"not sent: the connection failed before the request left ({kind})")
        _raise(OutcomeUnknown, status=None, code=None, msg=None, **where,
                      detail=f"outcome unknown: no answer after the request was sent ({kind})")

    parsed_ok, data = _parse(body)
    code = code_text(data.get("code")) if isinstance(data, dict) else None
    msg = _safe_msg(data.get("msg")) if isinstance(data, dict) else None

    if status == 418:
        _raise(Banned, status=status, code=code, msg=msg, **where)
    if status == 429:
        _raise(RateLimited, status=status, code=code, msg=msg, **where)
    if status >= 500 or status == 408:
        _raise(OutcomeUnknown, status=status, code=code, msg=msg, **where,
                      detail=f"outcome unknown: the exchange answered HTTP {status}")

    if 200 <= status < 300:
        if not parsed_ok:
            # The exchange accepted the request but we cannot read what it did.
            _raise(OutcomeUnknown, status=status, code=None, msg=None, **where,
                          detail="outcome unknown: the success answer is not JSON")
        if code is None or code in SUCCESS_CODES:
            return data
        cls = error_class_for_code(code, msg) or Rejected
        _raise(cls, status=status, code=code, msg=msg, **where)

    if 400 <= status < 500:
        found = error_class_for_code(code, msg) if code is not None else None
        if found is None:
            found = {401: AuthenticationFailed, 403: ExchangePermissionDenied}.get(status, Rejected)
        _raise(found, status=status, code=code, msg=msg, **where)

    # 1xx/3xx: nothing we asked for; treat as unknown rather than assume it did not happen.
    _raise(OutcomeUnknown, status=status, code=code, msg=msg, **where,
                  detail=f"outcome unknown: unexpected HTTP {status}")
