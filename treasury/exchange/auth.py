"""Request signing for HashKey PRO: HMAC-SHA256 over exact bytes, TOTP tokens, and
:class:`HashKeyAuth`, the ``httpx.Auth`` that applies them to a request.

The functions do no I/O and keep no state; the auth only reads the clock. The client builds the encoded string once with
:func:`encode_params`, signs exactly those bytes with :func:`sign`, and sends the same
bytes; re-encoding a dict later (as the official sample does through ``requests``) would
make what is sent differ from what was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import SecretStr

from treasury.clock import Clock


def sign(secret: str, payload: bytes) -> str:
    """HMAC-SHA256 of ``payload`` keyed with ``secret``, as lowercase hex."""
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def encode_params(params: Mapping[str, Any]) -> str:
    """URL-encode ``params`` in their given order with ``quote`` (``%20`` for spaces, not ``+``).

    Values must already be wire strings or integers (``Params.to_wire`` gives them).
    """
    return urlencode(list(params.items()), quote_via=quote)


def _totp_key(secret: str) -> bytes:
    """Decode a base32 TOTP secret as authenticator apps show it (spaces, case, padding free)."""
    cleaned = secret.replace(" ", "").replace("-", "").upper()
    cleaned += "=" * (-len(cleaned) % 8)
    try:
        return base64.b32decode(cleaned)
    except (binascii.Error, ValueError):
        # Never echo the secret itself: the message names only what is wrong with it.
        raise ValueError("the TOTP secret is not valid base32") from None


def totp(secret: str, at: float, *, digits: int = 6, step: int = 30) -> str:
    """RFC 6238 time-based one-time password (HMAC-SHA1) for the base32 ``secret`` at time ``at``.

    Raises:
        ValueError: the secret is not base32, or ``digits``/``step`` are out of range.
    """
    if not 6 <= digits <= 10:
        raise ValueError("digits must be between 6 and 10")
    if step <= 0:
        raise ValueError("step must be positive")
    counter = int(at // step)
    digest = hmac.new(_totp_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


SIGNED_EXTENSION = "treasury.signed"
"""``request.extensions`` key where :class:`HashKeyAuth` records the ``timestamp`` and
``recvWindow`` it added, so the client can report the parameters exactly as sent."""

API_KEY_HEADER = "X-HK-APIKEY"
TWO_FA_HEADER = "X-TWO-FA-TOKEN"
FORM = "application/x-www-form-urlencoded"


class HashKeyAuth(httpx.Auth):
    """Signs one HashKey PRO request: adds ``timestamp`` and ``recvWindow``, then the HMAC of the
    exact bytes that go on the wire (the form body of a form POST, else the query string).

    The request arrives with its parameters already encoded by :func:`encode_params`; the
    signed parameters are appended to those bytes, the result is signed with :func:`sign`,
    and ``&signature=…`` is appended. Nothing is re-encoded after signing.

    Args:
        api_key: sent as ``X-HK-APIKEY``.
        secret: the signing secret; it stays a ``SecretStr`` until the HMAC is computed.
        clock: the local time the timestamp is taken from.
        offset_ms: server time minus local time, added to the timestamp.
        recv_window_ms: sent as ``recvWindow``.
        before_sign: called with the local time just before signing; whatever it raises
            propagates out of ``send`` and nothing is sent (the executor's lease check).
        two_fa: makes the ``X-TWO-FA-TOKEN`` for an operation that accepts one; called before
            the timestamp is taken, because making a fresh token may wait.
    """

    requires_request_body = True

    def __init__(
        self,
        api_key: str,
        secret: SecretStr,
        *,
        clock: Clock,
        offset_ms: int = 0,
        recv_window_ms: int = 5000,
        before_sign: Callable[[float], None] | None = None,
        two_fa: Callable[[], str] | None = None,
    ) -> None:
        self._api_key = api_key
        self._secret = secret
        self._clock = clock
        self._offset_ms = offset_ms
        self._recv_window_ms = recv_window_ms
        self._before_sign = before_sign
        self._two_fa = two_fa

    def __repr__(self) -> str:
        return f"HashKeyAuth(api_key={self._api_key!r}, secret=SecretStr('**********'))"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self.sign_request(request)

    def sign_request(self, request: httpx.Request) -> httpx.Request:
        """The signed copy of ``request`` (same extensions dict, which records what was added).

        Raises:
            whatever ``before_sign`` or ``two_fa`` raise; nothing is signed then.
        """
        headers = httpx.Headers(request.headers)
        headers[API_KEY_HEADER] = self._api_key
        if self._two_fa is not None:
            headers[TWO_FA_HEADER] = self._two_fa()
        local = self._clock.time()
        if self._before_sign is not None:
            self._before_sign(local)
        added = {"timestamp": int(local * 1000) + self._offset_ms, "recvWindow": self._recv_window_ms}
        extra = encode_params(added).encode()
        in_body = headers.get("Content-Type", "").split(";")[0].strip() == FORM
        original = request.content if in_body else request.url.query
        payload = original + b"&" + extra if original else extra
        signed = payload + b"&signature=" + sign(self._secret.get_secret_value(), payload).encode()
        request.extensions[SIGNED_EXTENSION] = added
        if in_body:
            headers.pop("Content-Length", None)
            return httpx.Request(request.method, request.url, headers=headers, content=signed,
                                 extensions=request.extensions)
        return httpx.Request(request.method, request.url.copy_with(query=signed), headers=headers,
                             content=request.content, extensions=request.extensions)
