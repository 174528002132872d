"""The policy file (``config/policy.yaml``, docs/reference.md section 3), its rules and their verdicts.

A policy has four kinds of rule:

- ``limits``: per operation and asset (optionally per account or destination), a
  per-transaction maximum and/or a maximum per rolling window such as ``24h``;
- ``destinations``: allowlists. An operation listed there may only go to these addresses,
  bank references or accounts, whatever the exchange's own whitelist accepts;
- ``windows``: days and hours, in a named timezone, when an operation may run;
- ``approval_tiers``: above an amount, an operation needs an approval step before it,
  with at least a quorum, or with every eligible approver from a group.

Amounts are quoted decimal strings. Rules name their asset with ``coin``, ``asset`` or
``symbol`` (spot orders are limited by symbol on their quote notional). Batch orders
count as spot orders. Loading reports every problem with ``FILE:LINE:COL`` and its path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from treasury import durations
from treasury.errors import ConfigError, FileRefused
from treasury.files import read_bounded
from treasury.located import compose, raise_problems
from treasury.models import amount_value, format_amount
from treasury.operations.movement import Movement, normalize_destination
from treasury.operations.registry import REGISTRY, operations
from treasury.yamlfile import MAX_CONFIG_BYTES

# Operations whose amounts the policy understands, as each declares (``OperationSpec.money``);
# one counted as another (batch_orders legs count as spot_order) is named by that other.
OPS = tuple(op.name for op in operations() if op.money is not None and op.money.policy_op == op.name)
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def _amount(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(
            f'must be a quoted decimal string such as "50000", not {type(value).__name__} {value!r}'
        )
    return amount_value(value)


def _op(value: Any) -> str:
    spec = REGISTRY.get(value) if isinstance(value, str) else None
    money = spec.money if spec is not None else None
    if money is not None and money.policy_op != value:
        raise ValueError(f"{value} is covered by {money.policy_op} rules ({money.counted_note})")
    if value not in OPS:
        raise ValueError(f"unknown operation {value!r}; policy rules cover {', '.join(OPS)}")
    return str(value)


def parse_duration(text: str) -> timedelta:
    """Parse a rolling-window length such as ``24h``, ``7d``, ``2w`` or ``1h30m`` (no upper bound).

    Raises:
        ValueError: not of that form, or zero.
    """
    return durations.parse_duration(text, what="window", maximum=None)


def _duration(value: Any) -> str:
    parse_duration(value)
    return str(value)


Amount = Annotated[Decimal, PlainValidator(_amount)]
Op = Annotated[str, PlainValidator(_op)]
Duration = Annotated[str, PlainValidator(_duration)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Quorum = Annotated[int, Strict(), Field(ge=1)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Targeted(_Rule):
    """A rule about one asset, named as ``coin``, ``asset`` or ``symbol`` (all the same)."""

    coin: Text | None = None
    asset: Text | None = None
    symbol: Text | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _Targeted:
        given = [v for v in (self.coin, self.asset, self.symbol) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of coin, asset or symbol")
        return self

    @property
    def target(self) -> str:
        """The asset (or spot symbol) in upper case."""
        return str(self.coin or self.asset or self.symbol).upper()


class LimitRule(_Targeted):
    """``max_per_tx`` and/or ``max_per_window`` over a rolling ``window``."""

    op: Op
    max_per_tx: Amount | None = None
    max_per_window: Amount | None = None
    window: Duration | None = None
    account: Text | None = None
    destination: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LimitRule:
        if self.max_per_tx is None and self.max_per_window is None:
            raise ValueError("give max_per_tx, max_per_window, or both")
        if self.max_per_window is not None and self.window is None:
            raise ValueError("max_per_window needs a window such as 24h")
        if self.window is not None and self.max_per_window is None:
            raise ValueError("window is only meaningful with max_per_window")
        money = REGISTRY[self.op].money
        if self.destination is not None and money is not None and not money.has_destination:
            raise ValueError(f"{self.op} has no destination; drop destination from this rule")
        return self

    @property
    def window_delta(self) -> timedelta | None:
        return parse_duration(self.window) if self.window else None


class WithdrawDestination(_Rule):
    coin: Text
    chain: Text
    address: Text
    address_ext: Text | None = None  # memo/tag; when absent, a withdrawal must not carry one
    label: Text

    names_asset: ClassVar[bool] = True

    @property
    def key(self) -> str:
        """What a limit's ``destination`` or a movement's destination is compared with."""
        return self.address

    def matches(self, mv: Movement) -> bool:
        return (
            mv.destination is not None
            and self.coin.upper() == mv.asset
            and self.chain.upper() == mv.chain
            and normalize_destination(self.address) == mv.destination
            and self.address_ext == mv.address_ext
        )


class FiatDestination(_Rule):
    reference: Text
    label: Text
    asset: Text | None = None

    @property
    def names_asset(self) -> bool:
        return self.asset is not None

    @property
    def key(self) -> str:
        return self.reference

    def matches(self, mv: Movement) -> bool:
        return (mv.destination is not None and self.reference == mv.destination
                and (self.asset is None or self.asset.upper() == mv.asset))


class TransferDestination(_Rule):
    account: Text
    label: Text

    names_asset: ClassVar[bool] = False

    @property
    def key(self) -> str:
        return self.account

    def matches(self, mv: Movement) -> bool:
        return mv.destination is not None and self.account == mv.destination


Destination = WithdrawDestination | FiatDestination | TransferDestination


class Destinations(_Rule):
    """Allowlists. An absent key means no allowlist; an empty list refuses everything."""

    withdraw: list[WithdrawDestination] | None = None
    fiat_withdraw: list[FiatDestination] | None = None
    asset_transfer: list[TransferDestination] | None = None

    @field_validator("withdraw", "fiat_withdraw", "asset_transfer", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("give a list of entries ([] refuses every such operation) or leave the key out")
        return value

    @classmethod
    def ops(cls) -> tuple[str, ...]:
        """The operations a policy file may give an allowlist (its keys under ``destinations``)."""
        return tuple(cls.model_fields)

    def for_op(self, op: str) -> Sequence[Destination] | None:
        """The allowlist for ``op``, or None when the op has none."""
        if op not in type(self).model_fields:
            return None
        entries: Sequence[Destination] | None = getattr(self, op)
        return entries


class WindowRule(_Rule):
    """The operation may run on ``days`` between ``hours`` (start inclusive, end exclusive)."""

    op: Op
    days: list[str] = Field(min_length=1)
    hours: str
    timezone: str

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out = [str(d).upper() for d in value]
        bad = [d for d in out if d not in DAYS]
        if bad:
            raise ValueError(f"unknown day {bad[0]!r}; use {', '.join(DAYS)}")
        return out

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        m = _HOURS.match(value)
        if not m:
            raise ValueError(f'hours {value!r} must look like "09:00-17:00"')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError(f"hours {value!r} is not a valid time range")
        if (h1, m1) == (h2, m2):
            raise ValueError(f"hours {value!r} is empty; use 00:00-24:00 for the whole day")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}; use an IANA name such as Asia/Hong_Kong") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start(self) -> time:
        h, m = self.hours[:5].split(":")
        return time(int(h), int(m))

    @property
    def end(self) -> time | None:
        """The end time, or None for 24:00 (end of day)."""
        h, m = self.hours[6:].split(":")
        return None if h == "24" else time(int(h), int(m))


class ApprovalTierRule(_Targeted):
    """Above ``above``, an approval step with ``quorum`` (default 1) and/or ``group`` must precede."""

    op: Op
    above: Amount
    quorum: Quorum | None = None
    group: Text | None = None


class _PolicyFile(_Rule):
    # ``policy: none``: the explicit opt-out (no rules at all), accepted only in the simulator
    policy: Literal["none"] | None = None
    limits: list[LimitRule] = []
    destinations: Destinations = Destinations()
    windows: list[WindowRule] = []
    approval_tiers: list[ApprovalTierRule] = []

    @field_validator("policy", mode="before")
    @classmethod
    def _only_none(cls, value: Any) -> Any:
        if value != "none":
            raise ValueError("the only value is `none` (an explicit opt-out: no rules, simulator only); "
                             "to have a policy, leave this key out and write rules")
        return value

    @model_validator(mode="after")
    def _opt_out_alone(self) -> _PolicyFile:
        if self.policy == "none" and self.model_fields_set - {"policy"}:
            raise ValueError("`policy: none` opts out of every rule; it cannot be combined with rules")
        return self


@dataclass(frozen=True)
class Policy:
    """A loaded policy. ``digest`` is the SHA-256 of the file's bytes, recorded in each run."""

    source: str
    digest: str
    limits: tuple[LimitRule, ...] = ()
    destinations: Destinations = field(default_factory=Destinations)
    windows: tuple[WindowRule, ...] = ()
    approval_tiers: tuple[ApprovalTierRule, ...] = ()
    # the file says ``policy: none``: no rules, on purpose (``check_environment`` allows it
    # only in the simulator, and every decision it makes is audited as such)
    opt_out: bool = False

    def is_empty(self) -> bool:
        """True when no rule of any kind is configured."""
        d = self.destinations
        return not (
            self.limits or self.windows or self.approval_tiers
            or any(d.for_op(op) is not None for op in d.ops())
        )

    def to_dict(self) -> dict[str, Any]:
        """The rules as JSON-ready data (amounts as strings), for ``treasury policy check``."""
        dests = self.destinations.model_dump(mode="json", exclude_none=True)
        return {
            "file": self.source,
            "digest": self.digest,
            "opt_out": self.opt_out,
            "limits": [_dump(r) for r in self.limits],
            "destinations": dests,
            "windows": [_dump(r) for r in self.windows],
            "approval_tiers": [_dump(r) for r in self.approval_tiers],
        }


def _dump(rule: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {"op": getattr(rule, "op", None)}
    for key, value in rule.model_dump(exclude_none=True).items():
        out[key] = format_amount(value) if isinstance(value, Decimal) else value
    return out


def parse_policy(data: bytes, source: str) -> Policy:
    """Parse policy YAML (``data`` is the file's bytes; ``source`` names it in errors).

    Raises:
        ConfigError: every problem, each as ``FILE:LINE:COL: message (field.path)``.
    """
    digest = hashlib.sha256(data).hexdigest()
    doc = compose(data, source)
    raw = {} if doc.data is None else doc.data
    try:
        parsed = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise_problems([*doc.problems, *doc.problems_from(exc)])
        raise  # pragma: no cover - raise_problems always raises for a non-empty list
    raise_problems(doc.problems)
    return Policy(
        source=source,
        digest=digest,
        limits=tuple(parsed.limits),
        destinations=parsed.destinations,
        windows=tuple(parsed.windows),
        approval_tiers=tuple(parsed.approval_tiers),
        opt_out=parsed.policy == "none",
    )


MISSING_POLICY = ("policy file not found: no money-moving operation runs without a policy. Write one "
                  "(see config/policy.yaml in the repository), or, with TREASURY_ENV=simulator only, "
                  "a file containing `policy: none` to run without rules")


def load_policy(path: Path, *, allow_missing: bool = False) -> Policy:
    """Load ``config/policy.yaml``.

    A missing file is an error, unless ``allow_missing``: then the policy is empty (digest of
    no bytes), which allows everything.

    Raises:
        ConfigError: missing, unreadable, oversized, unparsable or invalid, with file:line:col
            and path.
    """
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES)
    except FileRefused as exc:
        if not exc.missing:
            raise
        if allow_missing:
            return Policy(source=str(path), digest=hashlib.sha256(b"").hexdigest())
        raise ConfigError(MISSING_POLICY, source=str(path)) from None
    return parse_policy(data, str(path))


def check_environment(policy: Policy, env: str) -> Policy:
    """Return ``policy`` when it may be enforced in environment ``env`` (``TREASURY_ENV``).

    Raises:
        ConfigError: the file says ``policy: none`` and ``env`` is not ``simulator``.
    """
    if policy.opt_out and env != "simulator":
        raise ConfigError(f"`policy: none` (no rules) is allowed only with TREASURY_ENV=simulator, and "
                          f"TREASURY_ENV is {env}; write the desk's rules", source=policy.source, field="policy")
    return policy


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """One rule's answer for one step: allow, or deny with the rule and the numbers.

    ``rule`` names the rule as a path in the file (``limits[0].max_per_tx``,
    ``destinations.withdraw``, ``windows[0]``); ``details`` holds strings only (amounts
    as plain decimals), so ``to_dict`` is JSON-ready for the audit log.
    """

    allowed: bool
    rule: str | None
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "allow" if self.allowed else "deny",
            "allowed": self.allowed,
            "rule": self.rule,
            "message": self.message,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Rebuild a verdict from ``to_dict`` output (e.g. read back from the audit log)."""
        return cls(
            allowed=bool(data["allowed"]),
            rule=data.get("rule"),
            message=str(data.get("message", "")),
            details={str(k): str(v) for k, v in (data.get("details") or {}).items()},
        )


@dataclass(frozen=True)
class ApprovalTier:
    """An approval tier that applies to a step (``conditional``: the amount is not known yet)."""

    rule: str
    op: str
    asset: str
    above: Decimal
    quorum: int | None = None
    group: str | None = None
    amount: Decimal | None = None
    conditional: bool = False

    def requirement(self) -> str:
        """Plain words: ``quorum >= 2 from group treasury-managers``."""
        parts = [f"quorum >= {self.quorum or 1}"]
        if self.group:
            parts.append(f"every approver from group {self.group}")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "op": self.op,
            "asset": self.asset,
            "above": format_amount(self.above),
            "quorum": self.quorum,
            "group": self.group,
            "amount": None if self.amount is None else format_amount(self.amount),
            "conditional": self.conditional,
        }


@dataclass(frozen=True)
class ApprovalGuard:
    """An approval step that precedes an operation step, as the validator sees it.

    ``approvers`` are user names, ``groups`` the groups listed as ``group:NAME``;
    ``members`` maps a user to their groups (from people.yaml) so that a step listing
    users by name can still satisfy a group tier.
    """

    quorum: int
    approvers: Set[str] = frozenset()
    groups: Set[str] = frozenset()
    members: Mapping[str, Set[str]] = field(default_factory=dict)
