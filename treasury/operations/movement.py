"""What a step moves, as the policy measures it: asset, amount, account, destination.

Each money-moving operation declares how its parameters read as movements (its
``MoneyMoved`` in ``treasury.operations.spec``); this module holds what they share.

A declaration reads its values through :class:`Values`, from one of two sources:

- :class:`Reader`, raw parameters that may still hold templates (``treasury validate``, run
  start, dry-run, an approval request). A value is *unknown* while it is an unresolved
  template (a string containing ``${{``, or whatever the caller's ``resolvable`` predicate
  rejects). Unknown is not the same as absent or malformed: unknown values skip a rule
  before run time, bad ones deny it;
- :class:`Checked`, the step's validated parameters model (the reservation, and the re-check
  before a later send): what the client sends, read as it is, never parsed again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from treasury.errors import ParameterError
from treasury.models import parse_amount
from treasury.operations.params import Params

Resolvable = Callable[[str], bool]
_EVM = re.compile(r"^0x[0-9a-fA-F]{40}$")


def default_resolvable(value: str) -> bool:
    """A string is final unless it still holds a ``${{ … }}`` template."""
    return "${{" not in value


def normalize_destination(value: str) -> str:
    """Compare-ready form: EVM hex addresses ignore case (EIP-55 checksums); others are exact."""
    text = value.strip()
    return text.lower() if _EVM.match(text) else text


@dataclass(frozen=True)
class Movement:
    """One measurable movement of a step. ``None`` means absent unless the field is in ``unknown``."""

    op: str
    leg: int
    asset: str | None
    amount: Decimal | None
    account: str | None
    destination: str | None
    chain: str | None = None
    address_ext: str | None = None
    amount_param: str = "amount"
    amount_error: str | None = None  # absent or malformed (a template is unknown, not an error)
    unknown: frozenset[str] = frozenset()

    def known(self, *names: str) -> bool:
        return not (self.unknown & set(names))


class Values(Protocol):
    """The parameter values a declaration reads its movements from."""

    unknown: set[str]

    def given(self, name: str) -> bool:
        """Whether parameter ``name`` has a value (a template counts)."""
        ...

    def text(self, name: str, as_field: str, *, upper: bool = False) -> str | None:
        """Parameter ``name`` as text, stripped; None when absent or unknown (``as_field`` is
        the movement field it fills, noted in ``unknown``)."""
        ...

    def amount(self, name: str) -> tuple[Decimal | None, str | None]:
        """Parameter ``name`` as an amount, or None with why (None, None: unknown)."""
        ...


class Reader:
    """Reads raw parameters, recording which are still templates."""

    def __init__(self, params: Mapping[str, Any], resolvable: Resolvable | None) -> None:
        self.params = params
        self.is_final = resolvable or default_resolvable
        self.unknown: set[str] = set()

    def given(self, name: str) -> bool:
        return self.params.get(name) not in (None, "")

    def text(self, name: str, as_field: str, *, upper: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            value = str(value)
        if not self.is_final(value):
            self.unknown.add(as_field)
            return None
        value = value.strip()
        return value.upper() if upper else value

    def amount(self, name: str) -> tuple[Decimal | None, str | None]:
        value = self.params.get(name)
        if value is None or value == "":
            return None, f"parameter {name!r} is missing"
        if isinstance(value, str) and not self.is_final(value):
            self.unknown.add("amount")
            return None, None
        try:
            return parse_amount(value, field=name), None
        except ParameterError as exc:
            return None, str(exc)


class Checked:
    """Reads a validated parameters model: every value is final and already typed (an amount
    is the model's ``Decimal``), so nothing is unknown and nothing is parsed."""

    def __init__(self, model: Params) -> None:
        self.model = model
        self.unknown: set[str] = set()

    def _value(self, name: str) -> Any:
        return getattr(self.model, name, None) if name in type(self.model).model_fields else None

    def given(self, name: str) -> bool:
        return self._value(name) not in (None, "")

    def text(self, name: str, as_field: str, *, upper: bool = False) -> str | None:
        value = self._value(name)
        if value is None or value == "":
            return None
        text = str(value).strip()
        return text.upper() if upper else text

    def amount(self, name: str) -> tuple[Decimal | None, str | None]:
        value = self._value(name)
        if value is None:
            return None, f"parameter {name!r} is missing"
        if not isinstance(value, Decimal):
            raise TypeError(f"{type(self.model).__name__}.{name} is not an amount")
        return value, None


class ReadMovements:
    """The two entries of a ``MoneyMoved`` for an operation that reads its movements one way.

    Raw parameters (which may still hold templates) and a validated model are read through
    the same ``Values`` interface, so a subclass writes only ``_read``.
    """

    def movements(self, params: Mapping[str, Any], *, account: str | None,
                  resolvable: Resolvable | None) -> list[Movement]:
        return self._read(Reader(params, resolvable), account)

    def from_model(self, checked: Params, *, account: str | None) -> list[Movement]:
        return self._read(Checked(checked), account)

    def _read(self, r: Values, account: str | None) -> list[Movement]:
        raise NotImplementedError
