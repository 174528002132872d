"""``whitelist_wallet_signing``: prove ownership of a wallet by a signed message.

It changes exchange state but has no client id and no lookup: a lost answer goes to a
person (``reconcile_then_escalate``).
"""

from __future__ import annotations

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import params as p
from treasury.operations.spec import OperationSpec

SPEC = OperationSpec(
    "whitelist_wallet_signing", "POST", "/api/v1/whitelist/walletSigning",
    Permission.WHITELIST, RateClass.ORDER, 1, p.WalletSigningParams,
    RetryStrategy.RECONCILE_THEN_ESCALATE, "prove wallet ownership by a signed message",
    mutates=True, two_fa=True, noun="wallet-signing", history="whitelist and deposit records",
    result_fields=frozenset({"success", "id", "coin", "chainType", "address", "verified", "whitelisted"}),
)
