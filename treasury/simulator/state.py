"""The simulator's state file (``config/simulator.yaml``): pydantic models and loading.

The format is docs/reference.md section 3 plus optional extras (``settings``, ``coins``,
``fiat_bank_accounts``). Every model forbids unknown fields. Amounts are strings (or
integers); a YAML float such as ``1.5`` is refused because binary floats lose money.
Problems are raised as :class:`treasury.errors.ConfigError` naming the file and the field
path, e.g. ``config/simulator.yaml: accounts[1].balances.USDT: ...``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from treasury.errors import ConfigError, FileRefused, ParameterError
from treasury.files import load_text
from treasury.models import Permission, parse_amount
from treasury.yamlfile import MAX_CONFIG_BYTES, field_path

ACCOUNT_TYPE_CODES: dict[str, int] = {"trading": 1, "custody": 5, "fiat": 6, "opt": 7, "prefund": 9}
DEFAULT_LABELS: dict[str, str] = {
    "trading": "Main Trading Account",
    "custody": "Custody Account",
    "fiat": "Fiat Account",
    "opt": "OPT Account",
    "prefund": "Prefund Account",
}


def _amount(value: Any, *, allow_zero: bool) -> Decimal:
    if isinstance(value, float):
        raise ValueError(
            f'amounts must be quoted strings such as "{value}", not the YAML float {value!r} '
            "(floats cannot hold money exactly)"
        )
    try:
        return parse_amount(value, field="amount", allow_zero=allow_zero)
    except ParameterError as exc:
        raise ValueError(f"amount {exc.reason}") from exc


def _strict_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a quoted string, got {type(value).__name__} {value!r}")
    return value


Amount = Annotated[Decimal, BeforeValidator(lambda v: _amount(v, allow_zero=True))]
PositiveAmount = Annotated[Decimal, BeforeValidator(lambda v: _amount(v, allow_zero=False))]
Text = Annotated[str, BeforeValidator(_strict_str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountSpec(_Model):
    """One account of the single simulated user."""

    id: Text = Field(min_length=1)
    type: Literal["trading", "custody", "fiat", "opt", "prefund"]
    label: str = ""
    balances: dict[str, Amount] = Field(default_factory=dict)

    @property
    def type_code(self) -> int:
        return ACCOUNT_TYPE_CODES[self.type]


class KeySpec(_Model):
    """An API key: its secret, its account and its permission words (docs/reference.md section 2)."""

    api_key: Text = Field(min_length=1)
    secret: Text = Field(min_length=1)
    account: Text
    permissions: list[Permission]
    ips: list[str] | None = None
    twofa: bool = False
    # A sub-account's key (``checkApiKey`` says ``sub``). HashKey lets only a master account's
    # master key read the fund statement (balanceFlow); see ``sub_key_fund_statement``.
    master: bool = True


class WhitelistEntry(_Model):
    coin: Text
    chain: Text
    address: Text = Field(min_length=1)
    label: str = ""


class SymbolSpec(_Model):
    symbol: Text
    base: Text
    quote: Text
    price: PositiveAmount


class ChainSpec(_Model):
    chain: Text
    withdraw_fee: Amount = Decimal(0)
    min_withdraw: Amount = Decimal(0)
    max_withdraw: Amount | None = None
    min_deposit: Amount = Decimal(0)
    allow_deposit: bool = True
    allow_withdraw: bool = True
    confirmations: int = 12


class CoinSpec(_Model):
    coin: Text
    name: str = ""
    chains: list[ChainSpec] = Field(min_length=1)

    def chain(self, name: str) -> ChainSpec | None:
        return next((c for c in self.chains if c.chain == name), None)


class StatusStep(_Model):
    """A withdrawal reaches ``status`` ``after_seconds`` (sim clock) after it was created."""

    status: str
    after_seconds: float = Field(ge=0)


class RateLimitSettings(_Model):
    """Per-(api key, class) limits in weight per ``window_seconds`` (sliding window)."""

    enabled: bool = True
    window_seconds: float = Field(default=1.0, gt=0)
    suspension_seconds: float = Field(default=60.0, ge=0)
    ban_seconds: float = Field(default=300.0, ge=0)
    query: int = Field(default=2, ge=1)
    order: int = Field(default=10, ge=1)
    transfer: int = Field(default=1, ge=1)
    weights: dict[str, int] = Field(default_factory=dict)

    def limit(self, rate_class: str) -> int:
        return int(getattr(self, rate_class))


class DuplicateCodes(_Model):
    """The code a reused client id gets, per operation (UNCONFIRMED on the real API except orders)."""

    order: str = "-1141"
    transfer: str = "-1024"
    withdraw: str = "-1024"
    fiat_withdraw: str = "-1024"


def _rate_limits_shorthand(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class SimSettings(_Model):
    """Tunables. Every field has a default; the ``settings:`` block of the state file overrides."""

    recv_window_default_ms: int = Field(default=5000, ge=1)
    recv_window_max_ms: int = Field(default=60000, ge=1)
    max_ahead_ms: int = Field(default=1000, ge=0)
    rate_limits: Annotated[RateLimitSettings, BeforeValidator(_rate_limits_shorthand)] = Field(
        default_factory=RateLimitSettings
    )
    duplicate_codes: DuplicateCodes = Field(default_factory=DuplicateCodes)
    withdraw_statuses: list[StatusStep] = Field(
        default_factory=lambda: [
            StatusStep(status="processing", after_seconds=0),
            StatusStep(status="successful", after_seconds=10),
        ],
        min_length=1,
    )
    fiat_withdraw_statuses: list[StatusStep] = Field(
        default_factory=lambda: [
            StatusStep(status="under_review", after_seconds=0),
            StatusStep(status="processing", after_seconds=5),
            StatusStep(status="successful", after_seconds=20),
        ],
        min_length=1,
    )
    timeout_after_seconds: float = Field(default=10.0, ge=0)
    twofa_codes: list[str] | None = None
    twofa_ttl_seconds: float = Field(default=30.0, ge=0)
    wallet_signing_whitelists: bool = True
    fiat_assets: list[str] = Field(default_factory=lambda: ["USD", "HKD"])
    fiat_withdraw_fee: Amount = Decimal(0)
    fiat_withdraw_min: Amount = Decimal("10")
    user_id: str = "1760000000000000001"
    # UNCONFIRMED on the real API: what checkApiKey calls a sub-account key, whether such a key
    # may read balanceFlow ("master key only" per the docs), and the code it gets when it may not.
    sub_key_account_type: str = "sub"
    sub_key_fund_statement: bool = False
    fund_statement_refused_code: str = "-1005"

    @model_validator(mode="before")
    @classmethod
    def _limits_alias(cls, data: Any) -> Any:
        # ``limits: false`` is accepted as a shorthand for ``rate_limits: {enabled: false}``.
        if isinstance(data, dict) and "limits" in data:
            data = dict(data)
            flag = data.pop("limits")
            if not isinstance(flag, bool):
                raise ValueError("limits: must be true or false")
            rate = data.get("rate_limits")
            rate = dict(rate) if isinstance(rate, dict) else {}
            rate["enabled"] = flag
            data["rate_limits"] = rate
        return data


DEFAULT_COINS: dict[str, CoinSpec] = {
    c.coin: c
    for c in (
        CoinSpec(
            coin="USDT",
            name="Tether USD",
            chains=[
                ChainSpec(chain="ETH", withdraw_fee=Decimal(1), min_withdraw=Decimal(2), confirmations=64),
                ChainSpec(chain="Tron", withdraw_fee=Decimal(1), min_withdraw=Decimal(2), confirmations=20),
            ],
        ),
        CoinSpec(coin="USDC", name="USD Coin", chains=[ChainSpec(chain="ETH", withdraw_fee=Decimal(1))]),
        CoinSpec(
            coin="ETH",
            name="Ethereum",
            chains=[
                ChainSpec(
                    chain="ETH",
                    withdraw_fee=Decimal("0.003"),
                    min_withdraw=Decimal("0.01"),
                    confirmations=64,
                )
            ],
        ),
        CoinSpec(
            coin="BTC",
            name="Bitcoin",
            chains=[
                ChainSpec(
                    chain="Bitcoin",
                    withdraw_fee=Decimal("0.0002"),
                    min_withdraw=Decimal("0.001"),
                    confirmations=2,
                )
            ],
        ),
    )
}


class _CrossCheck(ValueError):
    """Problems found across sections; carries (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


ACCOUNT = "{account}"
MAX_SUB_ACCOUNTS = 10_000


class AccountRange(_Model):
    """Account ids ``from``, ``from + 1``, ... (``count`` of them)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    first: int = Field(alias="from", ge=0)
    count: int = Field(ge=1, le=MAX_SUB_ACCOUNTS)


def _range_ids(value: Any) -> Any:
    """``{from: 2001, count: 3}`` stands for ``["2001", "2002", "2003"]``."""
    if not isinstance(value, dict):
        return value
    try:
        span = AccountRange.model_validate(value)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{p}: {m}" if p else m for p, m in validation_problems(exc))) from None
    return [str(span.first + n) for n in range(span.count)]


class SubAccountKey(_Model):
    """The one key each generated sub-account gets; ``{account}`` is its id."""

    api_key: Text = Field(min_length=1)
    secret: Text = Field(min_length=1)
    permissions: list[Permission]
    master: bool = False

    @model_validator(mode="after")
    def _own(self) -> SubAccountKey:
        if ACCOUNT not in self.api_key or ACCOUNT not in self.secret:
            raise ValueError(f"api_key and secret must contain {ACCOUNT}, so each sub-account has its own")
        return self


class SubAccounts(_Model):
    """A generator: one account (with these balances) and one key per listed id."""

    ids: Annotated[list[Text], BeforeValidator(_range_ids)] = Field(min_length=1, max_length=MAX_SUB_ACCOUNTS)
    type: Literal["trading", "custody", "fiat", "opt", "prefund"] = "trading"
    label: str = "Sub-account {account}"
    balances: dict[str, Amount] = Field(default_factory=dict)
    key: SubAccountKey | None = None

    def expand(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The accounts and keys this block stands for, as ``accounts[]`` and ``keys[]`` entries."""
        ids = list(self.ids)
        accounts = [{"id": i, "type": self.type, "label": self.label.replace(ACCOUNT, i),
                     "balances": {a: str(v) for a, v in self.balances.items()}} for i in ids]
        keys = [] if self.key is None else [
            {"api_key": self.key.api_key.replace(ACCOUNT, i), "secret": self.key.secret.replace(ACCOUNT, i),
             "account": i, "permissions": list(self.key.permissions), "master": self.key.master}
            for i in ids
        ]
        return accounts, keys


class SimulatorConfig(_Model):
    """The whole simulated world plus its tunables (``settings``).

    ``sub_accounts:`` blocks are expanded into ``accounts`` and ``keys`` as the file is read
    (after the listed ones), so the rest of the simulator only ever sees today's format.
    """

    accounts: list[AccountSpec] = Field(min_length=1)
    keys: list[KeySpec] = Field(default_factory=list)
    withdraw_whitelist: list[WhitelistEntry] = Field(default_factory=list)
    symbols: list[SymbolSpec] = Field(default_factory=list)
    coins: list[CoinSpec] | None = None
    fiat_bank_accounts: list[str] | None = None
    settings: SimSettings = Field(default_factory=SimSettings)

    @model_validator(mode="before")
    @classmethod
    def _expand_sub_accounts(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "sub_accounts" not in data:
            return data
        blocks = data["sub_accounts"]
        if not isinstance(blocks, list):
            raise _CrossCheck([("sub_accounts", "must be a list of sub-account blocks")])
        problems: list[tuple[str, str]] = []
        accounts = list(data.get("accounts") or [])
        keys = list(data.get("keys") or [])
        for index, block in enumerate(blocks):
            try:
                spec = SubAccounts.model_validate(block)
            except ValidationError as exc:
                problems.extend((f"sub_accounts[{index}]" + (f".{p}" if p else ""), m)
                                for p, m in validation_problems(exc))
                continue
            more_accounts, more_keys = spec.expand()
            accounts.extend(more_accounts)
            keys.extend(more_keys)
        if problems:
            raise _CrossCheck(problems)
        rest = {k: v for k, v in data.items() if k != "sub_accounts"}
        return {**rest, "accounts": accounts, "keys": keys}

    @model_validator(mode="after")
    def _cross_check(self) -> SimulatorConfig:
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, acct in enumerate(self.accounts):
            if acct.id in seen:
                problems.append((f"accounts[{i}].id", f"duplicate account id {acct.id!r}"))
            seen.add(acct.id)
        keys_seen: set[str] = set()
        for i, key in enumerate(self.keys):
            if key.api_key in keys_seen:
                problems.append((f"keys[{i}].api_key", f"duplicate api_key {key.api_key!r}"))
            keys_seen.add(key.api_key)
            if key.account not in seen:
                problems.append((f"keys[{i}].account", f"unknown account {key.account!r}"))
        coins = self.effective_coins()
        for i, entry in enumerate(self.withdraw_whitelist):
            coin = coins.get(entry.coin)
            if coin is None:
                problems.append((f"withdraw_whitelist[{i}].coin", f"unknown coin {entry.coin!r}"))
            elif coin.chain(entry.chain) is None:
                names = ", ".join(c.chain for c in coin.chains)
                problems.append(
                    (f"withdraw_whitelist[{i}].chain", f"{entry.coin} has no chain {entry.chain!r} ({names})")
                )
        symbols_seen: set[str] = set()
        for i, sym in enumerate(self.symbols):
            if sym.symbol in symbols_seen:
                problems.append((f"symbols[{i}].symbol", f"duplicate symbol {sym.symbol!r}"))
            symbols_seen.add(sym.symbol)
            if sym.base == sym.quote:
                problems.append((f"symbols[{i}].quote", "base and quote must differ"))
        if problems:
            raise _CrossCheck(problems)
        return self

    def effective_coins(self) -> dict[str, CoinSpec]:
        """Virtual assets with their chains: ``coins`` if given, else built-in defaults for every
        non-fiat asset that appears in balances or symbols (unknown ones get one chain of their
        own name and no fee)."""
        if self.coins is not None:
            return {c.coin: c for c in self.coins}
        assets: list[str] = []
        for acct in self.accounts:
            assets.extend(acct.balances)
        for sym in self.symbols:
            assets.extend((sym.base, sym.quote))
        assets.extend(e.coin for e in self.withdraw_whitelist)
        out: dict[str, CoinSpec] = {}
        for asset in assets:
            if asset in self.settings.fiat_assets or asset in out:
                continue
            out[asset] = DEFAULT_COINS.get(asset) or CoinSpec(coin=asset, name=asset, chains=[ChainSpec(chain=asset)])
        return out

    def tuned(self, **settings: Any) -> SimulatorConfig:
        """A copy whose ``settings`` are deep-merged with ``settings`` and re-validated,
        e.g. ``cfg.tuned(rate_limits={"enabled": False})``."""
        merged = _deep_merge(self.settings.model_dump(mode="python"), settings)
        data = self.model_dump(mode="python")
        data["settings"] = merged
        return SimulatorConfig.model_validate(data)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = _deep_merge(out[name], value)
        else:
            out[name] = value
    return out


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Flatten a pydantic ValidationError into (field path, message) pairs."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        original = (err.get("ctx") or {}).get("error")
        if isinstance(original, _CrossCheck):
            problems.extend(original.problems)
            continue
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        loc = tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
        problems.append((field_path(loc), msg))
    return problems


def parse_state(data: Any, source: str = "<state>") -> SimulatorConfig:
    """Validate an already-parsed state mapping.

    Raises:
        ConfigError: naming ``source`` and the first bad field; the message lists every problem.
    """
    if not isinstance(data, dict):
        raise ConfigError("the state file must be a mapping with an 'accounts' list", source=source)
    try:
        return SimulatorConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        first_path, first_msg = problems[0]
        more = "".join(f"; {p}: {m}" for p, m in problems[1:])
        raise ConfigError(first_msg + more, source=source, field=first_path or None) from None


def load_state(path: str | Path) -> SimulatorConfig:
    """Read and validate a simulator state file (YAML).

    Raises:
        ConfigError: the file is missing, is not YAML, or does not match the format; the error
            names the file and the field path.
    """
    source = str(path)
    try:
        text = load_text(path, MAX_CONFIG_BYTES)
    except FileRefused as exc:
        raise ConfigError(f"cannot read the state file: {exc.reason}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    return parse_state(data, source)
