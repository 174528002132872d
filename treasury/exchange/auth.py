"""Pure request signing for HashKey PRO: HMAC-SHA256 over exact bytes, and TOTP tokens.

Nothing here does I/O or keeps state. The client builds the encoded string once with
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
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode


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
