"""Parameter models, named exactly as on the wire: the shared field types, and the models of
the reads and cancels. A money-moving operation's model is in its own module
(``treasury.operations.withdraw``…).

Amounts are ``Decimal`` (parsed strictly: no floats, exponents, NaN or negatives) and are
rendered back as plain strings by ``to_wire``. Account ids are strings.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from treasury.models import amount_value, format_amount


def _account_id(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("account ids are strings of digits, such as \"1001\"")
    if isinstance(value, int):
        return str(value)
    return value


Amount = Annotated[Decimal, BeforeValidator(amount_value)]
AccountId = Annotated[str, BeforeValidator(_account_id), Field(pattern=r"^[0-9]{1,32}$")]
Coin = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,20}$")]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,30}$")]
Chain = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
Address = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9:._-]+$")]
ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TimeMs = Annotated[int, Field(ge=0)]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIMIT_MAKER = "LIMIT_MAKER"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Params(BaseModel):
    """Base of every operation's parameters: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        """Parameters as sent: strings for amounts and enums, ``None`` omitted, lists kept."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = _wire_value(value)
        return out


def _wire_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Params):
        return value.to_wire()
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class NoParams(Params):
    pass


# --------------------------------------------------------------------------- reads


class BalancesParams(Params):
    accountId: AccountId | None = None


class OrderQueryParams(Params):
    orderId: Annotated[str, Field(pattern=r"^[0-9]{1,32}$")] | None = None
    origClientOrderId: ClientId | None = None
    accountId: AccountId | None = None

    @model_validator(mode="after")
    def _one_id(self) -> OrderQueryParams:
        if (self.orderId is None) == (self.origClientOrderId is None):
            raise ValueError("give exactly one of orderId or origClientOrderId")
        return self


class OpenOrdersParams(Params):
    symbol: Symbol | None = None
    side: Side | None = None
    orderId: str | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


class TradeOrdersParams(Params):
    symbol: Symbol | None = None
    side: Side | None = None
    accountId: AccountId | None = None
    orderId: str | None = None
    startTime: TimeMs | None = None
    endTime: TimeMs | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


class WithdrawOrdersParams(Params):
    coin: Coin | None = None
    clientOrderId: ClientId | None = None
    startTime: TimeMs | None = None
    endTime: TimeMs | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


class DepositOrdersParams(Params):
    coin: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,40}$")] | None = None
    clientOrderId: ClientId | None = None
    depositOrderId: str | None = None
    startTime: TimeMs | None = None
    endTime: TimeMs | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


class FiatHistoryParams(Params):
    type: Annotated[str, Field(pattern=r"^(deposit|withdraw)$")]
    clientOrderId: ClientId | None = None
    status: str | None = None
    startTime: TimeMs | None = None
    endTime: TimeMs | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


class BalanceFlowParams(Params):
    type: Annotated[
        str, Field(pattern=r"^(trade|deposit|fiatDeposit|withdraw|fiatWithdraw|transfer|reversal|refund)$")
    ]
    accountId: AccountId | None = None
    clientOrderId: ClientId | None = None
    startTime: TimeMs | None = None
    endTime: TimeMs | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


# --------------------------------------------------------------------------- cancels


class CancelOrderParams(Params):
    orderId: Annotated[str, Field(pattern=r"^[0-9]{1,32}$")] | None = None
    clientOrderId: ClientId | None = None

    @model_validator(mode="after")
    def _one_id(self) -> CancelOrderParams:
        if (self.orderId is None) == (self.clientOrderId is None):
            raise ValueError("give exactly one of orderId or clientOrderId")
        return self


MAX_CANCEL_IDS = 100


class CancelOrdersByIdsParams(Params):
    ids: Annotated[list[Annotated[str, Field(pattern=r"^[0-9]{1,32}$")]], Field(min_length=1)]

    @field_validator("ids")
    @classmethod
    def _count(cls, ids: list[str]) -> list[str]:
        if len(ids) > MAX_CANCEL_IDS:
            raise ValueError(f"at most {MAX_CANCEL_IDS} ids, got {len(ids)}")
        return ids

    def to_wire(self) -> dict[str, Any]:
        return {"ids": ",".join(self.ids)}


class CancelOpenOrdersParams(Params):
    symbol: Symbol
    side: Side | None = None


class DepositAddressParams(Params):
    coin: Coin
    chainType: Chain


class WhitelistVerifyParams(Params):
    coin: Coin
    chainType: Chain
    address: Address
