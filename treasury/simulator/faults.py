"""Fault injection rules (docs/reference.md section 3, docs/simulator.md).

A rule matches on ``method`` (``"*"`` for any) and ``path`` (an exact path or an
``fnmatch`` pattern such as ``/api/v1/spot/*``) and fires with ``probability`` drawn from a
``random.Random(seed)``, at most ``count`` times. Modes:

* ``error_before``: answer ``status`` (default 500) with ``{"code": code or "-1000"}``; nothing done.
* ``error_after``: the request is processed (its effect commits), then the same error answer.
* ``timeout_after``: processed, then no answer: in-process ``httpx.ReadTimeout``; over HTTP the
  connection is held for ``seconds`` (default ``settings.timeout_after_seconds``) and closed.
* ``reset_after``: processed, then the connection drops: in-process ``httpx.ReadError``; over
  HTTP the socket is closed with an RST.
* ``latency``: wait ``seconds`` first (the clock's ``sleep`` in-process, a real sleep over
  HTTP), then behave normally. Latency rules add up and do not stop other rules.

The first non-latency rule that fires decides; later rules are not drawn for that request.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from treasury.errors import ConfigError, FileRefused
from treasury.files import load_text
from treasury.simulator.state import validation_problems
from treasury.yamlfile import MAX_CONFIG_BYTES

Mode = Literal["error_before", "error_after", "timeout_after", "reset_after", "latency"]


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = "*"
    path: str = Field(min_length=1)
    mode: Mode
    status: int | None = Field(default=None, ge=100, le=599)
    code: str | None = None
    msg: str | None = None
    probability: float = Field(default=1.0, ge=0, le=1)
    count: int | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("code", mode="before")
    @classmethod
    def _code_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and (path == self.path or fnmatch.fnmatchcase(path, self.path))

    def error_body(self) -> dict[str, str]:
        return {
            "code": self.code or "-1000",
            "msg": self.msg or f"Internal error (injected fault {self.mode})",
        }


_RULES = TypeAdapter(list[FaultRule])


@dataclass
class _Armed:
    rule: FaultRule
    fired: int = 0

    def state(self) -> dict[str, Any]:
        out = self.rule.model_dump(exclude_none=True)
        out["fired"] = self.fired
        return out


@dataclass(frozen=True)
class Decision:
    """What the faults decided for one request: a total delay and at most one deciding rule."""

    latency: float = 0.0
    rule: FaultRule | None = None

    @property
    def mode(self) -> str | None:
        return self.rule.mode if self.rule else None


def validate_rules(rules: Any, source: str = "faults") -> list[FaultRule]:
    """Validate a list of rule mappings.

    Raises:
        ConfigError: naming ``source`` and the field path, e.g. ``[0].mode``.
    """
    if not isinstance(rules, list):
        raise ConfigError("fault rules must be a list of mappings", source=source)
    try:
        return _RULES.validate_python(rules)
    except ValidationError as exc:
        problems = validation_problems(exc)
        path, msg = problems[0]
        more = "".join(f"; {p}: {m}" for p, m in problems[1:])
        raise ConfigError(msg + more, source=source, field=path or None) from None


def load_faults(path: str | Path) -> list[dict[str, Any]]:
    """Read a faults file (a YAML list of rules), validated; returns plain dicts.

    Raises:
        ConfigError: unreadable file, bad YAML or a bad rule (names file and field path).
    """
    source = str(path)
    try:
        data = yaml.safe_load(load_text(path, MAX_CONFIG_BYTES))
    except FileRefused as exc:
        raise ConfigError(f"cannot read the faults file: {exc.reason}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    return [r.model_dump(exclude_none=True) for r in validate_rules(data or [], source)]


class Faults:
    """The active rules with their firing counts and a seeded RNG."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._armed: list[_Armed] = []

    def set(self, rules: list[Any]) -> list[dict[str, Any]]:
        """Replace every rule. Raises ConfigError on a bad rule (the old rules stay)."""
        parsed = validate_rules([r.model_dump() if isinstance(r, FaultRule) else r for r in rules])
        with self._lock:
            self._armed = [_Armed(r) for r in parsed]
        return self.rules()

    def clear(self) -> None:
        with self._lock:
            self._armed = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.state() for a in self._armed]

    def draw(self, method: str, path: str) -> Decision:
        """Decide the faults for one request (consumes randomness only for rules with p < 1)."""
        latency = 0.0
        with self._lock:
            for armed in self._armed:
                rule = armed.rule
                if not rule.matches(method, path):
                    continue
                if rule.count is not None and armed.fired >= rule.count:
                    continue
                if rule.probability < 1 and self._rng.random() >= rule.probability:
                    continue
                armed.fired += 1
                if rule.mode == "latency":
                    latency += rule.seconds or 0.0
                    continue
                return Decision(latency, rule)
        return Decision(latency, None)
