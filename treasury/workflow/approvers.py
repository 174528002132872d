"""Who may approve: ``config/approvers.yaml`` (docs/reference.md section 3).

::

    approvers:
      alice: {groups: [treasury-managers]}
      carol: {groups: [risk]}

A workflow names approvers as user names or ``group:NAME``; ``Approvers.expand`` turns
those references into people.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treasury.errors import ConfigError
from treasury.yamlfile import config_error_from, load_yaml

NAME = r"^[a-z0-9][a-z0-9._-]*$"
GROUP_PREFIX = "group:"


@dataclass(frozen=True)
class Approvers:
    """Known approvers and their groups."""

    users: dict[str, frozenset[str]]

    @property
    def groups(self) -> dict[str, frozenset[str]]:
        """Each group and its members."""
        out: dict[str, set[str]] = {}
        for user, groups in self.users.items():
            for g in groups:
                out.setdefault(g, set()).add(user)
        return {g: frozenset(members) for g, members in out.items()}

    def expand_one(self, ref: str) -> set[str]:
        """The people one reference (a user name or ``group:NAME``) stands for.

        Raises:
            ValueError: unknown user, or a group nobody belongs to.
        """
        if ref.startswith(GROUP_PREFIX):
            group = ref[len(GROUP_PREFIX):]
            members = self.groups.get(group)
            if not members:
                known = ", ".join(sorted(self.groups)) or "(none)"
                raise ValueError(f"unknown approver group {group!r}; groups in approvers.yaml: {known}")
            return set(members)
        if ref not in self.users:
            known = ", ".join(sorted(self.users)) or "(none)"
            raise ValueError(f"unknown approver {ref!r}; approvers in approvers.yaml: {known}")
        return {ref}

    def expand(self, refs: Sequence[str]) -> set[str]:
        """Every person the references stand for.

        Raises:
            ValueError: the first unknown user or group.
        """
        out: set[str] = set()
        for ref in refs:
            out |= self.expand_one(ref)
        return out

    def eligible(self, refs: Sequence[str], exclude: str | None = None) -> set[str]:
        """The people who may approve, minus ``exclude`` (the requester never counts).

        Raises:
            ValueError: an unknown user or group.
        """
        return self.expand(refs) - ({exclude} if exclude else set())

    def is_eligible(self, user: str, refs: Iterable[str]) -> bool:
        """True when ``user`` is one of the references (by name or by group); unknown refs are skipped."""
        groups = self.users.get(user)
        if groups is None:
            return False
        return any(
            ref == user or (ref.startswith(GROUP_PREFIX) and ref[len(GROUP_PREFIX):] in groups) for ref in refs
        )


class _Approver(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[Annotated[str, Field(pattern=NAME, max_length=64)]] = []


class _ApproversFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # ``erin:`` with nothing after it is a person in no group.
    approvers: dict[Annotated[str, Field(pattern=NAME, max_length=64)], _Approver | None]


def load_approvers(path: Path) -> Approvers:
    """Read approvers.yaml.

    Raises:
        ConfigError: missing, unparsable or invalid file, naming the file and the field.
    """
    raw = load_yaml(path)
    try:
        parsed = _ApproversFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise config_error_from(exc, str(path)) from exc
    if not parsed.approvers:
        raise ConfigError("lists no approvers", source=str(path), field="approvers")
    return Approvers(
        users={name: frozenset(a.groups if a else ()) for name, a in parsed.approvers.items()}
    )
