"""The ledger: accounts, balances, ids, client-id registry and internal transfers.

One ``threading.RLock`` guards the whole simulated world. Trading (``orders.py``) and funding
(``funding.py``) work on the same ledger and take the same lock through :meth:`Ledger.atomic`,
so a check-then-effect sequence is never interleaved with another request.

``revision`` counts changes: every mutation of balances, counters or records goes through a
method here that calls :meth:`Ledger.touch` (or calls it itself), so the persistence layer
(``persist.py``) saves the world only after a request that changed it.

Arithmetic inside ``atomic`` runs with 60 significant digits so balance sums and products of
18-decimal amounts are exact.
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from treasury.models import format_amount
from treasury.simulator.protocol import ApiError
from treasury.simulator.state import AccountSpec, SimulatorConfig

_EXACT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
_FIRST_ID = 1_900_000_000_000_000_000
DUPLICATE_MESSAGES = {"-1141": "Duplicate order", "-1024": "Duplicate request", "-4013": "Withdraw repeatly"}


class TimeSource(Protocol):
    def time(self) -> float: ...


def amt(value: Decimal) -> str:
    """Money on the wire: a plain decimal string."""
    return format_amount(value)


@dataclass
class Balance:
    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked

    def state(self) -> dict[str, str]:
        return {"free": amt(self.free), "locked": amt(self.locked), "total": amt(self.total)}


@dataclass
class Transfer:
    order_id: str
    client_order_id: str
    from_account: str
    to_account: str
    coin: str
    quantity: Decimal
    remark: str
    time_ms: int
    flow_id: int
    from_balance: Decimal
    to_balance: Decimal
    api_key: str

    def state(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "clientOrderId": self.client_order_id,
            "fromAccountId": self.from_account,
            "toAccountId": self.to_account,
            "coin": self.coin,
            "quantity": amt(self.quantity),
            "remark": self.remark,
            "time": self.time_ms,
            "apiKey": self.api_key,
        }

    def flow(self) -> dict[str, Any]:
        return {
            "id": str(self.flow_id),
            "fromAccountId": self.from_account,
            "toAccountId": self.to_account,
            "type": "transfer",
            "netTransferAmount": amt(self.quantity),
            "transferCcy": self.coin,
            "fromAccountBalance": amt(self.from_balance),
            "toAccountBalance": amt(self.to_balance),
            "orderId": self.order_id,
            "remark": self.remark,
            "transactTime": str(self.time_ms),
            "clientOrderId": self.client_order_id,
        }


@dataclass
class Ledger:
    """The simulated user's accounts and every effect, behind one lock."""

    cfg: SimulatorConfig
    clock: TimeSource
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.revision = 0
        self.reset()

    def reset(self) -> None:
        """Back to the state file's balances with no effects recorded."""
        with self.lock:
            self.accounts: dict[str, AccountSpec] = {a.id: a for a in self.cfg.accounts}
            self.balances: dict[str, dict[str, Balance]] = {
                a.id: {asset: Balance(free=value) for asset, value in a.balances.items()} for a in self.cfg.accounts
            }
            self.transfers: list[Transfer] = []
            self.client_ids: dict[str, dict[str, Any]] = {}
            self._next_id = _FIRST_ID
            self._next_seq = 0
            self.touch()

    def touch(self) -> None:
        """Note that the world changed (read by the persistence layer)."""
        self.revision += 1

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the ledger lock with exact decimal arithmetic."""
        with self.lock, decimal.localcontext(_EXACT):
            yield

    # ------------------------------------------------------------------ ids and time

    def now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    def new_id(self, prefix: str = "") -> str:
        """A fresh 19-digit exchange id (optionally prefixed, e.g. ``W`` or ``FW``)."""
        with self.lock:
            self._next_id += 1
            self.touch()
            return f"{prefix}{self._next_id}"

    def new_seq(self) -> int:
        """A small increasing number for fund-statement rows and trade ids."""
        with self.lock:
            self._next_seq += 1
            self.touch()
            return self._next_seq

    def counters(self) -> tuple[int, int]:
        """The last id and sequence number handed out (saved, so a restored world never reuses one)."""
        return self._next_id, self._next_seq

    def set_counters(self, last_id: int, last_seq: int) -> None:
        """Continue ids and sequence numbers after these (used when restoring a saved world)."""
        with self.lock:
            self._next_id, self._next_seq = last_id, last_seq
            self.touch()

    # ------------------------------------------------------------------ accounts and balances

    def account(self, account_id: str, code: str = "-1160", what: str = "Account does not exist") -> AccountSpec:
        acct = self.accounts.get(account_id)
        if acct is None:
            raise ApiError(code, f"{what}: {account_id}")
        return acct

    def balance(self, account_id: str, asset: str) -> Balance:
        book = self.balances.setdefault(account_id, {})
        return book.setdefault(asset, Balance())

    def debit(
        self,
        account_id: str,
        asset: str,
        amount: Decimal,
        *,
        code: str = "0401",
        msg: str = "Insufficient asset",
    ) -> None:
        """Take ``amount`` from the free balance, or refuse without any change."""
        bal = self.balance(account_id, asset)
        if bal.free < amount:
            raise ApiError(code, f"{msg}: {asset} free {amt(bal.free)} < {amt(amount)}")
        bal.free -= amount
        self.touch()

    def credit(self, account_id: str, asset: str, amount: Decimal) -> None:
        self.balance(account_id, asset).free += amount
        self.touch()

    def lock_funds(self, account_id: str, asset: str, amount: Decimal) -> None:
        self.debit(account_id, asset, amount)  # touches
        self.balance(account_id, asset).locked += amount

    def unlock_funds(self, account_id: str, asset: str, amount: Decimal) -> None:
        bal = self.balance(account_id, asset)
        bal.locked -= amount
        bal.free += amount
        self.touch()

    def spend_locked(self, account_id: str, asset: str, amount: Decimal) -> None:
        self.balance(account_id, asset).locked -= amount
        self.touch()

    # ------------------------------------------------------------------ client ids

    def check_client_id(self, op: str, client_id: str | None) -> None:
        """Refuse a reused client id for ``op`` with that op's duplicate code; no effect."""
        if client_id and client_id in self.client_ids.get(op, {}):
            code = getattr(self.cfg.settings.duplicate_codes, op)
            raise ApiError(
                code, f"{DUPLICATE_MESSAGES.get(code, 'Duplicate request')}: {op} clientOrderId {client_id!r}"
            )

    def remember_client_id(self, op: str, client_id: str | None, record: Any) -> None:
        if client_id:
            self.client_ids.setdefault(op, {})[client_id] = record
            self.touch()

    # ------------------------------------------------------------------ transfers

    def transfer(
        self,
        *,
        api_key: str,
        from_account: str,
        to_account: str,
        coin: str,
        quantity: Decimal,
        client_order_id: str | None,
        remark: str,
    ) -> Transfer:
        """Move ``quantity`` of ``coin`` between two accounts of the user."""
        with self.atomic():
            self.account(from_account, "-1172", "Invalid from account id")
            self.account(to_account, "-1173", "Invalid to account id")
            if from_account == to_account:
                raise ApiError("-1174", "Transfer to the same account is not allowed")
            self.check_client_id("transfer", client_order_id)
            self.debit(from_account, coin, quantity)
            self.credit(to_account, coin, quantity)
            record = Transfer(
                order_id=self.new_id(),
                client_order_id=client_order_id or "",
                from_account=from_account,
                to_account=to_account,
                coin=coin,
                quantity=quantity,
                remark=remark,
                time_ms=self.now_ms(),
                flow_id=self.new_seq(),
                from_balance=self.balance(from_account, coin).total,
                to_balance=self.balance(to_account, coin).total,
                api_key=api_key,
            )
            self.transfers.append(record)
            self.remember_client_id("transfer", client_order_id, record)
            return record

    def balances_state(self) -> dict[str, dict[str, dict[str, str]]]:
        with self.atomic():
            return {
                acct: {asset: bal.state() for asset, bal in sorted(book.items())}
                for acct, book in self.balances.items()
            }
