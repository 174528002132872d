"""``whitelist_wallet_signing``: prove ownership of a wallet by a signed message.

It changes exchange state but has no client id and no lookup: a lost answer goes to a
person (``reconcile_then_escalate``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations.params import Address, Chain, Coin, Params
from treasury.operations.spec import OperationSpec


class WalletSigningParams(Params):
    """Wallet ownership proof by message signing (the simulator documents the model)."""

    coin: Coin
    chainType: Chain
    address: Address
    message: Annotated[str, Field(min_length=1, max_length=500)]
    walletSignature: Annotated[str, Field(pattern=r"^(0x)?[0-9a-fA-F]{16,200}$")]


SPEC = OperationSpec(
    "whitelist_wallet_signing", "POST", "/api/v1/whitelist/walletSigning",
    Permission.WHITELIST, RateClass.ORDER, 1, WalletSigningParams,
    RetryStrategy.RECONCILE_THEN_ESCALATE, "prove wallet ownership by a signed message",
    mutates=True, two_fa=True, noun="wallet-signing", history="whitelist and deposit records",
    result_fields=frozenset({"success", "id", "coin", "chainType", "address", "verified", "whitelisted"}),
)
