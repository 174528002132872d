"""Spot orders and fills against a fixed price per symbol.

Model: each symbol has one configured price. A LIMIT order that is marketable (BUY price >=
symbol price, SELL price <= symbol price) fills completely at the symbol price; otherwise it
rests as NEW with its funds locked (GTC), or is CANCELED at once (IOC/FOK). MARKET orders fill
at the symbol price. LIMIT_MAKER orders that would match are refused. Moving a price with
:meth:`OrderBook.set_price` fills resting orders it crosses at their own limit price (as maker).
Fees are zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from treasury.simulator.ledger import Ledger, amt
from treasury.simulator.protocol import ApiError, invalid, missing, to_amount
from treasury.simulator.state import SymbolSpec

SIDES = ("BUY", "SELL")
TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
QTY_STEP = Decimal("0.00000001")


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: str
    type: str
    quantity: Decimal | None
    amount: Decimal | None
    price: Decimal | None
    client_order_id: str | None
    time_in_force: str


def parse_order(values: Mapping[str, str], *, v11: bool, symbols: Mapping[str, SymbolSpec]) -> OrderRequest:
    """Validate order parameters (v1.0 or v1.1 rules) without touching balances.

    Raises:
        ApiError: -100012 missing, 0001 invalid, 0201 unknown symbol, 0206 type, 0207 price,
            -1129 quantity and amount together, -1123 bad client order id.
    """

    def get(name: str) -> str | None:
        value = values.get(name)
        return None if value in (None, "") else str(value)

    symbol = get("symbol")
    if symbol is None:
        raise missing("symbol")
    if symbol not in symbols:
        raise ApiError("0201", f"Instrument not found: {symbol}")
    side = get("side")
    if side is None:
        raise missing("side", "Enum")
    if side not in SIDES:
        raise invalid("side", "must be BUY or SELL")
    kind = get("type")
    if kind is None:
        raise missing("type", "Enum")
    if kind not in TYPES:
        raise ApiError("0206", f"Unsupported order type: {kind}")
    raw_qty, raw_amount = get("quantity"), get("amount")
    if raw_amount is not None and not v11:
        raise invalid("amount", "not a v1.0 parameter; use /api/v1.1/spot/order")
    if raw_qty is not None and raw_amount is not None:
        raise ApiError("-1129", "Quantity and amount cannot be sent together")
    if kind != "MARKET" and raw_amount is not None:
        raise invalid("amount", "only MARKET orders take an amount")
    if raw_qty is None and raw_amount is None:
        raise missing("quantity", "Decimal")
    quantity = None if raw_qty is None else to_amount("quantity", raw_qty)
    amount = None if raw_amount is None else to_amount("amount", raw_amount)
    price: Decimal | None = None
    if kind != "MARKET":
        raw_price = get("price")
        if raw_price is None:
            raise missing("price", "Decimal")
        price = to_amount("price", raw_price, code="0207")
    cid = get("newClientOrderId")
    if cid is not None and len(cid) > 255:
        raise ApiError("-1123", "Invalid client order id: longer than 255 characters")
    tif = get("timeInForce") or ("IOC" if kind == "MARKET" else "GTC")
    if tif not in TIME_IN_FORCE:
        raise invalid("timeInForce", "must be GTC, IOC or FOK")
    return OrderRequest(symbol, side, kind, quantity, amount, price, cid, tif)


@dataclass
class Order:
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal | None
    orig_qty: Decimal
    req_amount: Decimal
    executed_qty: Decimal
    cum_quote: Decimal
    status: str
    time_ms: int
    update_ms: int
    lock_asset: str
    locked: Decimal
    api_key: str

    def created(self) -> dict[str, Any]:
        """The create-order response shape."""
        return {
            "accountId": self.account_id,
            "symbol": self.symbol,
            "symbolName": self.symbol,
            "clientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "transactTime": str(self.time_ms),
            "price": amt(self.price) if self.price is not None else "0",
            "origQty": amt(self.orig_qty),
            "executedQty": amt(self.executed_qty),
            "cumulativeQuoteQty": amt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "reqAmount": amt(self.req_amount),
            "concentration": "",
        }

    def detail(self) -> dict[str, Any]:
        """The query-order response shape (also used in /_sim/state)."""
        avg = self.cum_quote / self.executed_qty if self.executed_qty else Decimal(0)
        return {
            "accountId": self.account_id,
            "exchangeId": "301",
            "symbol": self.symbol,
            "symbolName": self.symbol,
            "clientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "price": amt(self.price) if self.price is not None else "0",
            "origQty": amt(self.orig_qty),
            "executedQty": amt(self.executed_qty),
            "cumulativeQuoteQty": amt(self.cum_quote),
            "cummulativeQuoteQty": amt(self.cum_quote),
            "avgPrice": amt(avg.quantize(QTY_STEP, rounding=ROUND_DOWN)) if avg else "0",
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": "0",
            "icebergQty": "0",
            "time": str(self.time_ms),
            "updateTime": str(self.update_ms),
            "isWorking": True,
            "reqAmount": amt(self.req_amount),
            "feeCoin": "",
            "feeAmount": "0",
            "sumFeeAmount": "0",
            "ordCxlReason": "",
            "stpMode": "EXPIRE_TAKER",
        }


@dataclass
class Trade:
    trade_id: int
    order: Order
    price: Decimal
    qty: Decimal
    quote: Decimal
    time_ms: int
    is_maker: bool

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.trade_id),
            "clientOrderId": self.order.client_order_id,
            "ticketId": str(self.trade_id),
            "symbol": self.order.symbol,
            "symbolName": self.order.symbol,
            "orderId": self.order.order_id,
            "matchOrderId": "0",
            "price": amt(self.price),
            "qty": amt(self.qty),
            "commission": "0",
            "commissionAsset": "",
            "time": str(self.time_ms),
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.is_maker,
            "fee": {"feeCoinId": "", "feeCoinName": "", "fee": "0"},
            "feeSupplementaryAmount": "0",
            "makerRebate": "0",
            "accountId": self.order.account_id,
        }


class OrderBook:
    """Orders and trades of the simulated user, sharing the ledger's lock and balances."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reset()

    def reset(self) -> None:
        with self.ledger.lock:
            self.symbols: dict[str, SymbolSpec] = {s.symbol: s for s in self.ledger.cfg.symbols}
            self.prices: dict[str, Decimal] = {s.symbol: s.price for s in self.ledger.cfg.symbols}
            self.orders: dict[str, Order] = {}
            self.trades: list[Trade] = []
            self.ledger.touch()

    # ------------------------------------------------------------------ placing

    def place(self, req: OrderRequest, *, account_id: str, api_key: str) -> Order:
        """Place an order: fill, rest (funds locked) or expire. Raises ApiError with no effect."""
        led = self.ledger
        with led.atomic():
            led.check_client_id("order", req.client_order_id)
            sym = self.symbols[req.symbol]
            px = self.prices[req.symbol]
            now = led.now_ms()
            order = Order(
                order_id=led.new_id(),
                client_order_id=req.client_order_id or f"sim{now}{led.new_seq()}",
                account_id=account_id,
                symbol=req.symbol,
                side=req.side,
                type=req.type,
                time_in_force=req.time_in_force,
                price=req.price,
                orig_qty=req.quantity or Decimal(0),
                req_amount=req.amount or Decimal(0),
                executed_qty=Decimal(0),
                cum_quote=Decimal(0),
                status="NEW",
                time_ms=now,
                update_ms=now,
                lock_asset=sym.quote if req.side == "BUY" else sym.base,
                locked=Decimal(0),
                api_key=api_key,
            )
            if req.type == "MARKET":
                qty = req.quantity if req.quantity is not None else self._qty_for(req.amount, px)
                self._fill_now(order, qty, px)
            else:
                assert req.price is not None and req.quantity is not None
                marketable = req.price >= px if req.side == "BUY" else req.price <= px
                if marketable and req.type == "LIMIT_MAKER":
                    raise ApiError("-1149", "Create order failed: LIMIT_MAKER order would immediately match")
                if marketable:
                    self._fill_now(order, req.quantity, px)
                elif req.time_in_force in ("IOC", "FOK"):
                    order.status = "CANCELED"
                else:
                    need = req.quantity * req.price if req.side == "BUY" else req.quantity
                    led.lock_funds(account_id, order.lock_asset, need)
                    order.locked = need
            self.orders[order.order_id] = order
            led.remember_client_id("order", order.client_order_id, order)
            return order

    def _qty_for(self, amount: Decimal | None, px: Decimal) -> Decimal:
        assert amount is not None
        qty = (amount / px).quantize(QTY_STEP, rounding=ROUND_DOWN)
        if qty <= 0:
            raise ApiError("-1168", "Illegal amount: too small for one quantity step")
        return qty

    def _fill_now(self, order: Order, qty: Decimal, px: Decimal) -> None:
        sym = self.symbols[order.symbol]
        quote = qty * px
        led = self.ledger
        if order.side == "BUY":
            led.debit(order.account_id, sym.quote, quote)
            led.credit(order.account_id, sym.base, qty)
        else:
            led.debit(order.account_id, sym.base, qty)
            led.credit(order.account_id, sym.quote, quote)
        if not order.orig_qty:
            order.orig_qty = qty
        self._record_fill(order, qty, px, quote, maker=False)

    def _record_fill(self, order: Order, qty: Decimal, px: Decimal, quote: Decimal, *, maker: bool) -> None:
        now = self.ledger.now_ms()
        order.executed_qty += qty
        order.cum_quote += quote
        order.status = "FILLED"
        order.update_ms = now
        self.trades.append(Trade(self.ledger.new_seq(), order, px, qty, quote, now, maker))

    def set_price(self, symbol: str, price: Decimal) -> list[Order]:
        """Move a symbol's price; resting orders it crosses fill at their own limit price."""
        led = self.ledger
        with led.atomic():
            if symbol not in self.symbols:
                raise ApiError("0201", f"Instrument not found: {symbol}")
            self.prices[symbol] = price
            led.touch()
            sym = self.symbols[symbol]
            filled = []
            for order in self.orders.values():
                if order.symbol != symbol or order.status != "NEW" or order.price is None:
                    continue
                if (order.side == "BUY" and order.price >= price) or (order.side == "SELL" and order.price <= price):
                    quote = order.orig_qty * order.price
                    led.spend_locked(order.account_id, order.lock_asset, order.locked)
                    order.locked = Decimal(0)
                    if order.side == "BUY":
                        led.credit(order.account_id, sym.base, order.orig_qty)
                    else:
                        led.credit(order.account_id, sym.quote, quote)
                    self._record_fill(order, order.orig_qty, order.price, quote, maker=True)
                    filled.append(order)
            return filled

    # ------------------------------------------------------------------ cancelling

    def find(self, account_id: str | None, order_id: str | None, client_id: str | None) -> Order:
        """The order with that id (or client id), optionally in that account; 0211 if absent."""
        with self.ledger.atomic():
            order: Order | None = None
            if order_id is not None:
                order = self.orders.get(order_id)
            elif client_id is not None:
                order = self.ledger.client_ids.get("order", {}).get(client_id)
            if order is None or (account_id is not None and order.account_id != account_id):
                raise ApiError("0211", "Order not found")
            return order

    def cancel(self, order: Order) -> Order:
        """Cancel a resting order and unlock what is left. -1139 filled, -1142 cancelled."""
        with self.ledger.atomic():
            if order.status == "FILLED":
                raise ApiError("-1139", "Order already filled")
            if order.status == "CANCELED":
                raise ApiError("-1142", "Order already cancelled")
            self.ledger.unlock_funds(order.account_id, order.lock_asset, order.locked)
            order.locked = Decimal(0)
            order.status = "CANCELED"
            order.update_ms = self.ledger.now_ms()
            self.ledger.touch()
            return order

    def cancel_all(self, account_id: str, symbol: str, side: str | None) -> int:
        with self.ledger.atomic():
            victims = [o for o in self.open_orders(account_id, symbol=symbol, side=side, limit=1000)]
            for order in victims:
                self.cancel(order)
            return len(victims)

    def cancel_ids(self, account_id: str, ids: list[str]) -> list[dict[str, str]]:
        failures: list[dict[str, str]] = []
        with self.ledger.atomic():
            for order_id in ids:
                try:
                    self.cancel(self.find(account_id, order_id, None))
                except ApiError as exc:
                    failures.append({"orderId": order_id, "code": exc.code})
        return failures

    # ------------------------------------------------------------------ reading

    def open_orders(
        self,
        account_id: str | None,
        *,
        symbol: str | None = None,
        side: str | None = None,
        before_id: str | None = None,
        limit: int = 500,
    ) -> list[Order]:
        with self.ledger.atomic():
            rows = [
                o
                for o in self.orders.values()
                if o.status == "NEW"
                and (account_id is None or o.account_id == account_id)
                and (symbol is None or o.symbol == symbol)
                and (side is None or o.side == side)
                and (before_id is None or int(o.order_id) < int(before_id))
            ]
            return sorted(rows, key=lambda o: int(o.order_id), reverse=True)[:limit]

    def history(
        self,
        account_id: str | None,
        *,
        symbol: str | None,
        side: str | None,
        before_id: str | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[Order]:
        with self.ledger.atomic():
            rows = [
                o
                for o in self.orders.values()
                if o.status != "NEW"
                and (account_id is None or o.account_id == account_id)
                and (symbol is None or o.symbol == symbol)
                and (side is None or o.side == side)
                and (before_id is None or int(o.order_id) < int(before_id))
                and (start_ms is None or o.time_ms >= start_ms)
                and (end_ms is None or o.time_ms <= end_ms)
            ]
            return sorted(rows, key=lambda o: int(o.order_id), reverse=True)[:limit]

    def fills(
        self,
        account_id: str | None,
        *,
        symbol: str | None = None,
        client_id: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        to_id: int | None = None,
        limit: int = 500,
    ) -> list[Trade]:
        with self.ledger.atomic():
            rows = [
                t
                for t in self.trades
                if (account_id is None or t.order.account_id == account_id)
                and (symbol is None or t.order.symbol == symbol)
                and (client_id is None or t.order.client_order_id == client_id)
                and (start_ms is None or t.time_ms >= start_ms)
                and (end_ms is None or t.time_ms <= end_ms)
                and (from_id is None or t.trade_id >= from_id)
                and (to_id is None or t.trade_id <= to_id)
            ]
            return sorted(rows, key=lambda t: t.trade_id, reverse=True)[:limit]
