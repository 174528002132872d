"""Wire-level vocabulary of the simulator: requests, answers, API errors and parameter parsing.

Everything the endpoints need to read a request and to refuse one lives here, so that
handlers and the ledger speak one language: raise :class:`ApiError` with a HashKey code and
the app turns it into ``HTTP 400 {"code": "<code>", "msg": "..."}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from treasury.errors import ParameterError
from treasury.models import parse_amount


class ApiError(Exception):
    """A refusal the exchange answers with ``{"code": code, "msg": msg}`` and an HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, str]:
        return {"code": self.code, "msg": self.msg}


@dataclass(frozen=True)
class SimRequest:
    """One request exactly as received: raw query string and raw body bytes are kept for signing."""

    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]
    source: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass
class Answer:
    """What the simulator decided to do with a request.

    ``action`` is ``"respond"`` (send ``status`` + ``body``), ``"timeout"`` (hold the connection
    for ``hold_seconds`` then close without answering) or ``"reset"`` (drop the connection).
    """

    status: int
    body: Any
    action: str = "respond"
    hold_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature=`` pair from a raw urlencoded string, keeping every other byte.

    Returns the remaining string and the signature value (or None).
    """
    if not raw:
        return "", None
    kept: list[str] = []
    signature: str | None = None
    for pair in raw.split("&"):
        name = pair.split("=", 1)[0]
        if name == "signature":
            signature = pair.split("=", 1)[1] if "=" in pair else ""
        else:
            kept.append(pair)
    return "&".join(kept), signature


def parse_form(raw: str) -> dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` string; the last value of a name wins."""
    try:
        return dict(parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("-1004", f"Bad request: cannot decode parameters ({exc})") from exc


class Params:
    """Typed access to a request's parameters; every failure is an :class:`ApiError`."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return bool(self.values.get(name, ""))

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else None

    def text(self, name: str, *, max_len: int = 255, kind: str = "String") -> str:
        value = self.get(name)
        if value is None:
            raise missing(name, kind)
        if len(value) > max_len:
            raise invalid(name, f"longer than {max_len} characters")
        return value

    def opt_text(self, name: str, *, max_len: int = 255) -> str | None:
        value = self.get(name)
        if value is not None and len(value) > max_len:
            raise invalid(name, f"longer than {max_len} characters")
        return value

    def amount(self, name: str, *, code: str = "0001") -> Decimal:
        value = self.get(name)
        if value is None:
            raise missing(name, "Decimal")
        return to_amount(name, value, code=code)

    def opt_amount(self, name: str, *, code: str = "0001") -> Decimal | None:
        value = self.get(name)
        return None if value is None else to_amount(name, value, code=code)

    def integer(self, name: str) -> int:
        value = self.get(name)
        if value is None:
            raise missing(name, "Long")
        return to_int(name, value)

    def opt_int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        return default if value is None else to_int(name, value)

    def limit(self, name: str = "limit", *, default: int, maximum: int) -> int:
        value = self.opt_int(name, default)
        assert value is not None
        if not 1 <= value <= maximum:
            raise invalid(name, f"must be between 1 and {maximum}")
        return value

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = True) -> str | None:
        value = self.get(name)
        if value is None:
            if required:
                raise missing(name, "Enum")
            return None
        if value not in options:
            raise invalid(name, f"must be one of {', '.join(options)}")
        return value


def missing(name: str, kind: str = "String") -> ApiError:
    return ApiError("-100012", f"Parameter {name} [{kind}] missing!")


def invalid(name: str, why: str) -> ApiError:
    return ApiError("0001", f"Required field '{name}' missing or invalid: {why}")


def to_amount(name: str, value: str, *, code: str = "0001") -> Decimal:
    try:
        return parse_amount(value, field=name)
    except ParameterError as exc:
        raise ApiError(code, f"Required field '{name}' missing or invalid: {exc.reason}") from exc


def to_int(name: str, value: str) -> int:
    text = value.strip()
    if not text.lstrip("-").isdigit():
        raise invalid(name, "must be an integer")
    return int(text)
