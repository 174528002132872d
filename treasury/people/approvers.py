"""Approver references: people and their groups (read from ``config/people.yaml``).

A workflow names approvers as people or ``group:NAME``; ``Approvers.expand`` turns those
references into people. ``treasury.people.registry.People`` is the registry that fills it
(and adds roles and keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
                raise ValueError(f"unknown approver group {group!r}; groups in people.yaml: {known}")
            return set(members)
        if ref not in self.users:
            known = ", ".join(sorted(self.users)) or "(none)"
            raise ValueError(f"unknown approver {ref!r}; people in people.yaml: {known}")
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
