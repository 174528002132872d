"""What an operation declares: its wire shape, and the behaviour the runner reads from it.

An ``OperationSpec`` is one operation's whole declaration. The executor, the reconciler and
the policy read it and never branch on an operation's name. The behaviour objects are typed
by the protocols here; each money-moving operation's module (``asset_transfer``,
``withdraw``…) supplies its own:

- ``reconcile`` (:class:`Reconciliation`): the reads that find a client id after a lost
  answer, and the verdict on their answers;
- ``money`` (:class:`MoneyMoved`): what the step moves, as the policy measures it;
- ``legs`` (:class:`Legs`): how one step splits into legs, each with its own client id;
- ``baseline`` (:class:`Baseline`): the balances noted before sending with a key that cannot
  read the fund statement, and what their change says afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations.legs import ONE_LEG, Answered, ItemErrors, LegView, SentLeg, Standing
from treasury.operations.lookups import Answer, Lookup, Verdict
from treasury.operations.movement import Movement, Resolvable
from treasury.operations.params import Params


class Reconciliation(Protocol):
    """How an unknown outcome is looked up: the reads, then what their answers prove."""

    def plan(self, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
             now: datetime, fund_statement: bool) -> list[Lookup]:
        """The reads that find ``client_id`` (``fund_statement``: the key may read balanceFlow)."""
        ...

    def verdict(self, client_id: str, answers: Mapping[str, Answer], *, params: Mapping[str, Any],
                noted: Mapping[str, Any] | None, fund_statement: bool) -> Verdict:
        """Combine the answers of :meth:`plan`'s reads, keyed by ``Lookup.source``."""
        ...


class MoneyMoved(Protocol):
    """What a step of the operation moves, for the policy."""

    @property
    def policy_op(self) -> str:
        """The operation name policy rules use for these movements (a batch counts as spot orders)."""
        ...

    @property
    def counted_note(self) -> str | None:
        """Why an operation counted as another is not named in rules itself (None: it is its own)."""
        ...

    @property
    def has_destination(self) -> bool:
        """Whether limit rules may name a destination."""
        ...

    @property
    def allowlist_needs(self) -> tuple[str, ...]:
        """The movement fields an allowlist entry compares (the asset only where entries name one)."""
        ...

    def movements(self, params: Mapping[str, Any], *, account: str | None,
                  resolvable: Resolvable | None) -> list[Movement]:
        """The movements of one step from its raw parameters, which may still hold templates
        (``account``: the key profile's, for parameters naming none)."""
        ...

    def from_model(self, checked: Params, *, account: str | None) -> list[Movement]:
        """The movements of one step from its validated parameters model, read as it is."""
        ...

    def allowlist_text(self, mv: Movement) -> tuple[str, dict[str, str]]:
        """How a movement reads in an allowlist verdict: its words and its details."""
        ...


class Legs(Protocol):
    """How one step's parameters split into legs, each sent with its own client id, and how
    the exchange's answer is read back onto them (``treasury.operations.legs``)."""

    def number(self, index: int) -> int | None:
        """The number leg ``index``'s client id carries (None: the step's one request has none)."""
        ...

    def split(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each leg's parameters (without its client id).

        Raises:
            ParameterError: the parameters cannot be split.
        """
        ...

    def join(self, legs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The request's parameters for the legs sent together."""
        ...

    def parts(self, checked: Params) -> list[Params]:
        """Each leg's validated parameters, from the validated parameters of :meth:`join`."""
        ...

    def whole(self, parts: Sequence[Params]) -> Params:
        """The validated request for the legs sent together (a subset of one valid request)."""
        ...

    def answer(self, sent: Sequence[SentLeg], data: Any, *, item_error: ItemErrors) -> Answered:
        """What a successful answer's JSON says about each leg of ``sent`` (``item_error``
        reads one item of an answer that carries a result per leg)."""
        ...

    def standing(self, legs: Sequence[LegView]) -> Standing:
        """What the step's legs (in leg order) add up to: its state and result."""
        ...


class Baseline(Protocol):
    """Balances noted before a send whose key cannot read the fund statement."""

    def accounts(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The accounts whose balances are noted (each once, in order)."""
        ...

    def coin(self, params: Mapping[str, Any]) -> str:
        """The coin whose totals are noted."""
        ...

    def describe(self, params: Mapping[str, Any], noted: Mapping[str, Any] | None,
                 now: Mapping[str, Any]) -> str:
        """What the balances did since they were noted, in words for a person."""
        ...


@dataclass(frozen=True)
class Shown:
    """How ``treasury query`` shows a result as a table: the list under ``rows``, these
    ``columns`` of each row, and a ``title`` naming the result's own fields (``{userId}``;
    one the result lacks reads ``?``)."""

    rows: str
    columns: tuple[str, ...]
    title: str

    def table(self, data: Any) -> tuple[list[tuple[Any, ...]], str] | None:
        """The rows and the title for ``data``, or None when it has no list under ``rows``."""
        if not isinstance(data, Mapping) or not isinstance(data.get(self.rows), list):
            return None
        rows = [tuple(row.get(c) for c in self.columns) for row in data[self.rows]]
        return rows, self.title.format_map(_Fields(data))


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(frozen=True)
class OperationSpec:
    name: str
    method: Literal["GET", "POST", "DELETE"]
    path: str
    permission: Permission
    rate_class: RateClass
    weight: int
    params_model: type[Params]
    retry_strategy: RetryStrategy
    description: str
    mutates: bool = False  # moves money or changes exchange state
    signed: bool = True
    client_id_field: str | None = None  # filled by the runner, never by a workflow author
    body: Literal["form", "json"] = "form"  # json: batch orders (JSON array body, query signed)
    two_fa: bool = False  # accepts X-TWO-FA-TOKEN
    # what a person calls one request of it, and where on HashKey to look for it
    noun: str | None = None
    history: str = "history"
    reconcile: Reconciliation | None = None  # how reconciliation finds an unknown outcome
    money: MoneyMoved | None = None  # what the policy measures; None: nothing
    legs: Legs = field(default=ONE_LEG)
    baseline: Baseline | None = None
    # the fields of its stored result a workflow may name (None: not checked), and whether
    # the result is a JSON list (a reference then starts with an index)
    result_fields: frozenset[str] | None = None
    list_result: bool = False
    shown: Shown | None = None  # how ``treasury query`` shows it (None: a list as a table, else JSON)

    @property
    def moves_money(self) -> bool:
        return self.client_id_field is not None

    @property
    def what(self) -> str:
        """What a person calls one request of this operation."""
        return self.noun or self.name

    def describe(self) -> dict[str, Any]:
        """The shape of ``treasury ops --json``."""
        return {
            "name": self.name,
            "method": self.method,
            "path": self.path,
            "permission": self.permission.value,
            "rate_class": self.rate_class.value,
            "weight": self.weight,
            "retry_strategy": self.retry_strategy.value,
            "mutates": self.mutates,
            "client_id_field": self.client_id_field,
            "description": self.description,
        }
