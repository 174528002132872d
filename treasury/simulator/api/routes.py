"""What an endpoint is: path, method, permission, rate class, weight and handler.

Handlers live in ``api.account``, ``api.spot`` and ``api.funding`` (each exports ``ENDPOINTS``);
each takes a :class:`Call` and returns the JSON body of a 200 answer, or raises ``ApiError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from treasury.models import Permission, RateClass
from treasury.simulator.funding import Funding
from treasury.simulator.ledger import Ledger
from treasury.simulator.orders import OrderBook
from treasury.simulator.protocol import Params
from treasury.simulator.state import KeySpec, RateLimitSettings


@dataclass
class Call:
    """One authenticated (or public) call as a handler sees it."""

    params: Params
    key: KeySpec | None
    ledger: Ledger
    book: OrderBook
    funding: Funding
    json_body: Any = None

    @property
    def api_key(self) -> str:
        return self.key.api_key if self.key else ""

    @property
    def account_id(self) -> str:
        """The key's own account."""
        assert self.key is not None
        return self.key.account


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Endpoint:
    """``permission`` None means public (no key, no signature, no rate limit)."""

    method: str
    path: str
    handler: Handler
    permission: Permission | None
    rate_class: RateClass | None
    weight: int = 1
    twofa: bool = False
    json_body: bool = False

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def weight_of(endpoint: Endpoint, settings: RateLimitSettings) -> int:
    """The endpoint's weight, unless ``settings.weights`` overrides "METHOD /path" or "/path"."""
    return settings.weights.get(endpoint.name, settings.weights.get(endpoint.path, endpoint.weight))
