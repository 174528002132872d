"""Keeping the simulated world in a JSON file, so separate processes share one exchange.

In the embedded default every ``treasury`` command is a process with its own in-process
simulator. Without this module, an effect made by ``treasury approve`` (a withdrawal) would be
gone for the next ``treasury query``, and reconciling an unknown outcome in a later process
would look in an empty exchange. With ``Simulator(cfg, persist_path=...)`` the world lives in
that file:

* at construction the file, if present, is loaded on top of the state file's world;
* a request that only reads first reloads the file if another process replaced it since we
  last saw it (the file is replaced atomically, so reading it needs no lock);
* a request that may write takes the exclusive lock on the sidecar ``<file>.lock`` (``filelock``),
  reloads if needed, runs, and, if it changed anything (``Ledger.revision`` moved), saves
  with write-to-temp + ``fsync`` + ``os.replace`` before releasing the lock. Two processes
  therefore never lose each other's effects.

What is saved: balances (free and locked), prices, the withdraw whitelist (with addresses
added by walletSigning), every order, trade, transfer, withdrawal, fiat withdrawal, deposit and
wallet signing with its client id and api key, and the id and sequence counters. The client-id
registry is rebuilt from the records. Not saved (per-process behaviour): fault rules, rate-limit
windows, suspensions and bans, 2FA tokens already used. Deposit addresses are derived, not stored.

The file is plain JSON (never pickle), validated with pydantic on load; a damaged file is a
:class:`treasury.errors.ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import typing
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from filelock import FileLock
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model

from treasury.errors import ConfigError
from treasury.simulator.funding import Deposit, FiatWithdrawal, Funding, WalletSigning, Withdrawal
from treasury.simulator.ledger import Balance, Ledger, Transfer
from treasury.simulator.orders import Order, OrderBook, Trade
from treasury.simulator.state import WhitelistEntry, validation_problems


class World(Protocol):
    """What this module reads and restores: the simulator's ledger, order book and funding."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def book(self) -> OrderBook: ...

    @property
    def funding(self) -> Funding: ...

FORMAT = "treasury-simulator-state"
VERSION = 1
SUFFIX = ".simulator.json"
LOCK_POLL_SECONDS = 0.001  # filelock polls a held lock; a write holds it for one request


# --------------------------------------------------------------------------- the file format


def _decimal(value: Any) -> Decimal:
    # Only strings: a JSON number may have passed through a binary float.
    if not isinstance(value, str):
        raise ValueError(f"must be a decimal string, got {type(value).__name__} {value!r}")
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return out


Dec = Annotated[Decimal, BeforeValidator(_decimal)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _wire_type(tp: Any) -> Any:
    if tp is Decimal:
        return Dec
    if tp == Decimal | None:
        return Dec | None
    return tp


def _record_model(cls: type, *, skip: tuple[str, ...] = (), **extra: Any) -> Any:
    """A strict pydantic model with the fields of dataclass ``cls``.

    Built from the dataclass itself so a field added to a record is saved and validated
    without a second list to keep in step.
    """
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (_wire_type(hints[f.name]), ...) for f in dataclasses.fields(cls) if f.name not in skip
    }
    fields.update(extra)
    return create_model(f"{cls.__name__}Record", __base__=_Strict, **fields)


_RECORDS: dict[str, Any] = {
    "orders": _record_model(Order),
    "trades": _record_model(Trade, skip=("order",), order_id=(str, ...)),
    "transfers": _record_model(Transfer),
    "withdrawals": _record_model(Withdrawal),
    "fiat_withdrawals": _record_model(FiatWithdrawal),
    "deposits": _record_model(Deposit),
    "wallet_signings": _record_model(WalletSigning),
}
_BalanceRecord: Any = _record_model(Balance)

_LIST: Any = list  # subscripted with models built at run time
_DICT: Any = dict
_DUMP_FIELDS: dict[str, Any] = {
    "format": (Literal["treasury-simulator-state"], ...),
    "version": (Literal[1], ...),
    "generation": (int, 0),
    "saved_at_ms": (int, 0),
    "last_id": (int, ...),
    "last_seq": (int, ...),
    "balances": (_DICT[str, _DICT[str, _BalanceRecord]], ...),
    "prices": (dict[str, Dec], ...),
    "withdraw_whitelist": (list[WhitelistEntry], ...),
    **{name: (_LIST[model], ...) for name, model in _RECORDS.items()},
}
StateDump: Any = create_model("StateDump", __base__=_Strict, **_DUMP_FIELDS)


def _plain(value: Any) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else value


_FIELD_NAMES: dict[tuple[type, tuple[str, ...]], tuple[str, ...]] = {}


def _field_names(cls: type, skip: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: the whole world is dumped after every write, so this runs for every record.
    names = _FIELD_NAMES.get((cls, skip))
    if names is None:
        names = _FIELD_NAMES[(cls, skip)] = tuple(f.name for f in dataclasses.fields(cls) if f.name not in skip)
    return names


def _record(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for name in _field_names(type(obj), skip):
        value = getattr(obj, name)
        out[name] = format(value, "f") if isinstance(value, Decimal) else value
    return out


def dump_world(sim: World, *, generation: int = 0) -> dict[str, Any]:
    """The simulator's world as a JSON-ready dict (amounts as strings, ids as strings)."""
    led, book, funding = sim.ledger, sim.book, sim.funding
    with led.atomic():
        last_id, last_seq = led.counters()
        return {
            "format": FORMAT,
            "version": VERSION,
            "generation": generation,
            "saved_at_ms": led.now_ms(),
            "last_id": last_id,
            "last_seq": last_seq,
            "balances": {
                acct: {asset: _record(bal) for asset, bal in sorted(assets.items())}
                for acct, assets in led.balances.items()
            },
            "prices": {symbol: _plain(price) for symbol, price in book.prices.items()},
            "withdraw_whitelist": [e.model_dump() for e in funding.whitelist],
            "orders": [_record(o) for o in book.orders.values()],
            "trades": [dict(_record(t, skip=("order",)), order_id=t.order.order_id) for t in book.trades],
            "transfers": [_record(t) for t in led.transfers],
            "withdrawals": [_record(w) for w in funding.withdrawals],
            "fiat_withdrawals": [_record(f) for f in funding.fiat_withdrawals],
            "deposits": [_record(d) for d in funding.deposits],
            "wallet_signings": [_record(s) for s in funding.signings],
        }


def _validated(data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError("not a simulator state dump (expected a JSON object)", source=source)
    try:
        return StateDump.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        first_path, first_msg = problems[0]
        more = "".join(f"; {p}: {m}" for p, m in problems[1:4])
        raise ConfigError(first_msg + more, source=source, field=first_path or None) from None


_ID_DIGITS = re.compile(r"^[A-Z]*(\d+)$")


def _id_number(value: str) -> int:
    match = _ID_DIGITS.match(value)
    return int(match.group(1)) if match else 0


def fresh_world(sim: World) -> None:
    """Back to the state file's world: balances, prices, whitelist, no effects."""
    with sim.ledger.atomic():
        sim.ledger.reset()
        sim.book.reset()
        sim.funding.reset()


def restore_world(sim: World, data: Any, source: str = "<dump>") -> None:
    """Replace the simulator's world with a :func:`dump_world` dict.

    Everything is validated before anything changes. Accounts, symbols and coins come from the
    simulator's config; the dump must only name accounts and symbols the config has.

    Raises:
        ConfigError: naming ``source`` and the first bad field (malformed dump, a float amount,
            an unknown account or symbol, a trade of an unknown order).
    """
    dump = _validated(data, source)
    cfg = sim.ledger.cfg
    accounts = {a.id for a in cfg.accounts}
    symbols = {s.symbol for s in cfg.symbols}

    def refuse(field: str, message: str) -> ConfigError:
        hint = f"; delete {source} to start again from the state file" if source != "<dump>" else ""
        return ConfigError(message + hint, source=source, field=field)

    for acct in dump.balances:
        if acct not in accounts:
            raise refuse(f"balances.{acct}", f"account {acct!r} is not in the simulator state file")
    for symbol in dump.prices:
        if symbol not in symbols:
            raise refuse(f"prices.{symbol}", f"symbol {symbol!r} is not in the simulator state file")
    orders: dict[str, Order] = {}
    for i, rec in enumerate(dump.orders):
        if rec.symbol not in symbols:
            raise refuse(f"orders[{i}].symbol", f"symbol {rec.symbol!r} is not in the simulator state file")
        orders[rec.order_id] = Order(**rec.model_dump())
    trades: list[Trade] = []
    for i, rec in enumerate(dump.trades):
        values = rec.model_dump()
        order = orders.get(values.pop("order_id"))
        if order is None:
            raise refuse(f"trades[{i}].order_id", f"trade of an unknown order {rec.order_id!r}")
        trades.append(Trade(order=order, **values))
    transfers = [Transfer(**r.model_dump()) for r in dump.transfers]
    withdrawals = [Withdrawal(**r.model_dump()) for r in dump.withdrawals]
    fiat = [FiatWithdrawal(**r.model_dump()) for r in dump.fiat_withdrawals]
    deposits = [Deposit(**r.model_dump()) for r in dump.deposits]
    signings = [WalletSigning(**r.model_dump()) for r in dump.wallet_signings]
    # Counters never go back below an id or sequence number already in use, even if the
    # dump was edited by hand: a new effect must never collide with an old one.
    ids = [o.order_id for o in orders.values()] + [t.order_id for t in transfers]
    ids += [w.order_id for w in withdrawals] + [f.order_id for f in fiat]
    ids += [d.order_id for d in deposits] + [s.id for s in signings]
    seqs = [t.flow_id for t in transfers] + [t.trade_id for t in trades]
    seqs += [w.flow_id for w in withdrawals] + [f.flow_id for f in fiat] + [d.flow_id for d in deposits]
    last_id = max([dump.last_id, *(_id_number(i) for i in ids)])
    last_seq = max([dump.last_seq, *seqs])

    led, book, funding = sim.ledger, sim.book, sim.funding
    with led.atomic():
        fresh_world(sim)
        for acct, assets in dump.balances.items():
            led.balances[acct] = {asset: Balance(free=b.free, locked=b.locked) for asset, b in assets.items()}
        book.prices.update(dump.prices)
        book.orders = orders
        book.trades = trades
        led.transfers = transfers
        funding.withdrawals = withdrawals
        funding.fiat_withdrawals = fiat
        funding.deposits = deposits
        funding.signings = signings
        # The dump's whitelist, plus entries added to the state file since it was saved.
        whitelist = [e.model_copy() for e in dump.withdraw_whitelist]
        known = {(e.coin, e.chain, e.address) for e in whitelist}
        whitelist += [e.model_copy() for e in cfg.withdraw_whitelist if (e.coin, e.chain, e.address) not in known]
        funding.whitelist = whitelist
        led.client_ids = {
            "order": {o.client_order_id: o for o in orders.values()},
            "transfer": {t.client_order_id: t for t in transfers if t.client_order_id},
            "withdraw": {w.client_order_id: w for w in withdrawals if w.client_order_id},
            "fiat_withdraw": {f.client_order_id: f for f in fiat if f.client_order_id},
        }
        led.set_counters(last_id, last_seq)


# --------------------------------------------------------------------------- the file


def persist_path_for(database_url: str) -> Path | None:
    """Where the embedded simulator keeps its world for this database: ``<db file>.simulator.json``
    for a SQLite file URL, None for ``sqlite://``, ``sqlite:///:memory:``, a ``file:`` URI or
    any other database (no persistence)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
        return None
    path = rest.split("?", 1)[0]
    if not path.startswith("/"):
        return None  # "sqlite://" (memory) or a host part SQLite does not use
    path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    return Path(path + SUFFIX)


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    # Every save is a new file (temp + rename), so the inode alone changes on each save;
    # size and mtime guard against an inode being reused.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class StateFile:
    """A simulator's world in ``path``, shared with other processes through ``<path>.lock``.

    Raises (at construction):
        ConfigError: the file exists but is unreadable or damaged (named).
    """

    def __init__(self, sim: World, path: Path) -> None:
        self.sim = sim
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        # the simulator's own ledger lock already serializes this process's threads
        self._file_lock = FileLock(self.lock_path, mode=0o600, thread_local=False)
        self.generation = 0  # saves of this file so far, by any process
        self._seen: tuple[int, int, int, int] | None = None
        self._depth = 0
        self._writing = False
        with sim.ledger.lock:
            self._refresh()

    @contextmanager
    def session(self, *, write: bool) -> Iterator[None]:
        """Run one request against the file's current world; save afterwards if it changed.

        ``write=True`` holds the cross-process lock for the whole request. Sessions nest (a
        control endpoint calling a public method); only the outermost one loads and saves.

        Raises:
            ConfigError: another process left a damaged file.
            OSError: the file could not be written.
        """
        led = self.sim.ledger
        with led.lock:
            if self._depth:
                if write and not self._writing:
                    raise RuntimeError("a simulator write inside a read-only session would not be saved")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth, self._writing = 1, write
            try:
                if not write:
                    self._refresh()
                    yield
                    return
                with self._locked():
                    self._refresh()
                    before = led.revision
                    try:
                        yield
                    finally:
                        # Saved even when the request failed: whatever it committed (an
                        # error_after effect, a consumed id) must outlive this process.
                        if led.revision != before:
                            self._save()
            finally:
                self._depth, self._writing = 0, False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._file_lock.acquire(poll_interval=LOCK_POLL_SECONDS):
            yield

    def _refresh(self) -> None:
        """Load the file if it changed since we last loaded or saved it."""
        source = str(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is not None:
                # Someone deleted the file to start over: so do we.
                fresh_world(self.sim)
                self._seen, self.generation = None, 0
            return
        except OSError as exc:
            raise ConfigError(f"cannot read the simulator state: {exc.strerror or exc}", source=source) from None
        if _signature(st) == self._seen:
            return
        try:
            with open(self.path, encoding="utf-8") as fh:
                seen = _signature(os.fstat(fh.fileno()))
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read the simulator state: {exc.strerror or exc}", source=source) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON ({exc}); delete it to start again from the state file",
                              source=source) from None
        restore_world(self.sim, data, source)
        self._seen = seen
        self.generation = int(data.get("generation", 0))

    def _save(self) -> None:
        generation = self.generation + 1
        text = json.dumps(dump_world(self.sim, generation=generation), separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
                seen = _signature(os.fstat(fh.fileno()))
            os.replace(tmp, self.path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        self._seen, self.generation = seen, generation
