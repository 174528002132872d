"""The people registry: ``config/people.yaml``.

::

    people:
      alice:
        name: Alice Chan
        roles: [approver]
        groups: [treasury-managers]
        ssh_keys:
          - ssh-ed25519 AAAAC3Nz... alice@laptop

Roles: ``requester`` starts runs; ``approver`` approves or rejects; ``operator`` cancels,
resolves NEEDS_ATTENTION steps, pauses or resumes schedules and lifts exchange halts;
``auditor`` reads. ``People`` is also the approver registry the workflow language checks
names and groups against (it extends ``Approvers``): only holders of ``approver`` are eligible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from treasury.canonical import canonical_json
from treasury.errors import ConfigError, Problem
from treasury.located import compose, raise_problems
from treasury.people.approvers import NAME, Approvers
from treasury.people.sshsig import PublicKey, SignatureError, parse_public_key

Role = Literal["requester", "approver", "operator", "auditor"]
ROLES: tuple[str, ...] = ("requester", "approver", "operator", "auditor")
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Person:
    """One person: display name, roles, groups and registered public keys."""

    id: str
    name: str
    roles: frozenset[str]
    groups: frozenset[str]
    keys: tuple[PublicKey, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "roles": sorted(self.roles), "groups": sorted(self.groups),
                "ssh_keys": [k.openssh() for k in self.keys]}


@dataclass(frozen=True)
class People(Approvers):
    """Every person, by id. ``users`` (inherited) maps each person to their groups."""

    persons: Mapping[str, Person] = field(default_factory=dict)
    source: str = ""

    @property
    def digest(self) -> str:
        """SHA-256 of the registry's canonical JSON: what ``people.changed`` records."""
        return "sha256:" + hashlib.sha256(canonical_registry(self.as_dict()).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {pid: p.as_dict() for pid, p in sorted(self.persons.items())}

    def has_role(self, person: str, role: str) -> bool:
        p = self.persons.get(person)
        return p is not None and role in p.roles

    def eligible(self, refs: Sequence[str], exclude: str | None = None) -> set[str]:
        """The approvers among ``refs`` (holders of the ``approver`` role), minus ``exclude``."""
        return {u for u in super().eligible(refs, exclude) if self.has_role(u, "approver")}

    def without_credentials(self, passkey_holders: Collection[str] = ()) -> list[str]:
        """People with neither an SSH key nor (among ``passkey_holders``) an enrolled passkey."""
        return sorted(pid for pid, p in self.persons.items() if not p.keys and pid not in passkey_holders)

    def owner_of(self, key: PublicKey) -> str | None:
        """The person who registered ``key`` (by its blob), if anyone did."""
        for pid, p in self.persons.items():
            if any(k.blob == key.blob for k in p.keys):
                return pid
        return None


def canonical_registry(body: Mapping[str, Any]) -> str:
    return canonical_json(body)


def people_from_dict(body: Mapping[str, Any], source: str = "") -> People:
    """A registry from its canonical dict (as recorded in ``people.changed``)."""
    persons = {
        pid: Person(pid, p.get("name") or pid, frozenset(p.get("roles", ())), frozenset(p.get("groups", ())),
                    tuple(parse_public_key(k) for k in p.get("ssh_keys", ())))
        for pid, p in body.items()
    }
    return People(users={pid: p.groups for pid, p in persons.items()}, persons=persons, source=source)


_Name = Annotated[str, Field(pattern=NAME, max_length=64)]


class _PersonModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    roles: list[Role] = Field(min_length=1)
    groups: list[_Name] = []
    ssh_keys: list[str] = []

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("must not contain control characters")
        return v

    @field_validator("ssh_keys", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v  # ``ssh_keys:`` with nothing after it

    @field_validator("ssh_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for i, line in enumerate(v):
            try:
                parse_public_key(line)
            except SignatureError as exc:
                raise ValueError(f"ssh_keys[{i}]: {exc}") from None
        return v


class _PeopleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    people: dict[_Name, _PersonModel] = Field(min_length=1)


OLD_SHAPE_HINT = (
    "the approvers.yaml shape is replaced by config/people.yaml: write "
    "`people:` and, for each person, `roles: [approver]` (requester, approver, operator, auditor), "
    "their `groups:` and `ssh_keys:` (their OpenSSH public keys; `treasury people add-key NAME FILE`)"
)


def load_people(path: Path) -> People:
    """Read and validate people.yaml; every problem is reported as ``FILE:LINE:COL``.

    Raises:
        ConfigError: missing, unparsable, in the old approvers.yaml shape, or invalid.
    """
    old = path.with_name("approvers.yaml")
    if not path.exists():
        if old.exists():
            raise ConfigError(f"{old} is no longer read; move it to {path}: {OLD_SHAPE_HINT}",
                              source=str(old))
        raise ConfigError("file not found", source=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(path)) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES} bytes", source=str(path))
    doc = compose(data, str(path))
    raw = doc.data if doc.data is not None else {}
    if isinstance(raw, dict) and "approvers" in raw:
        line, col = doc.where(("approvers",), key=True)
        raise ConfigError(f"{path}:{line}:{col}: {OLD_SHAPE_HINT}", source=str(path), field="approvers")
    try:
        parsed = _PeopleFile.model_validate(raw)
    except ValidationError as exc:
        raise_problems([*doc.problems, *doc.problems_from(exc)])
        raise  # pragma: no cover
    problems: list[Problem] = list(doc.problems)
    seen: dict[bytes, str] = {}
    persons: dict[str, Person] = {}
    for pid, pm in parsed.people.items():
        keys = tuple(parse_public_key(k) for k in pm.ssh_keys)
        for i, k in enumerate(keys):
            other = seen.setdefault(k.blob, pid)
            if other != pid:
                problems.append(doc.problem(("people", pid, "ssh_keys", i),
                                            f"key {k.fingerprint} is already registered to {other!r}"))
        persons[pid] = Person(pid, pm.name or pid, frozenset(pm.roles), frozenset(pm.groups), keys)
    raise_problems(problems)
    return People(users={pid: p.groups for pid, p in persons.items()}, persons=persons, source=str(path))


def check_production(people: People, passkey_holders: Collection[str] = ()) -> None:
    """Production refuses a registry with a person who has no credential: no SSH key in
    people.yaml and no passkey enrolled (``passkey_holders``, read from the database).

    Raises:
        ConfigError: naming the people and how to give them a credential.
    """
    missing = people.without_credentials(passkey_holders)
    if missing:
        raise ConfigError(
            f"in production every person needs a credential; no key for {', '.join(missing)} "
            "(`treasury people add-key NAME PUBKEY_FILE`, or a passkey: `treasury people invite NAME`)",
            source=people.source or "people.yaml", field="ssh_keys")
