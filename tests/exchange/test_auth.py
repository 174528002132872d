"""Pure signing: HMAC-SHA256 over exact bytes, quote-style encoding, RFC 6238 TOTP."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from treasury.exchange.auth import encode_params, sign, totp

# The public Binance-family example (same scheme as HashKey's §1.2 sample).
EXAMPLE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
EXAMPLE_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
EXAMPLE_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_sign_matches_published_example() -> None:
    assert sign(EXAMPLE_SECRET, EXAMPLE_QUERY.encode()) == EXAMPLE_SIGNATURE


def test_sign_is_hmac_sha256_hex_of_exact_bytes() -> None:
    payload = b"remark=a%20b&timestamp=1"
    expected = hmac.new(b"s3cret", payload, hashlib.sha256).hexdigest()
    assert sign("s3cret", payload) == expected
    assert sign("s3cret", b"remark=a+b&timestamp=1") != expected  # one byte differs, so does the signature


def test_encode_params_uses_percent_twenty_and_keeps_order() -> None:
    encoded = encode_params({"remark": "pay vendor/ü & co", "coin": "USDT", "ids": "1,2", "n": 5})
    assert encoded == "remark=pay%20vendor%2F%C3%BC%20%26%20co&coin=USDT&ids=1%2C2&n=5"


# RFC 6238 appendix B, SHA1, with the key "12345678901234567890" in base32.
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_rfc6238_vectors(at: int, code: str) -> None:
    assert totp(RFC_SECRET, at, digits=8) == code
    assert totp(RFC_SECRET, at) == code[-6:]


def test_totp_accepts_authenticator_formatting_and_changes_each_step() -> None:
    spaced = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"
    assert totp(spaced, 59) == totp(RFC_SECRET, 59)
    assert totp(RFC_SECRET, 60) == totp(RFC_SECRET, 89)
    assert totp(RFC_SECRET, 60) != totp(RFC_SECRET, 90)


def test_totp_refuses_bad_secret_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        totp("not!base32!CANARY", 0)
    assert "CANARY" not in str(info.value)
