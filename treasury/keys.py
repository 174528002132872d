"""Key profiles from ``config/keys.yaml``; secrets come from the environment or a file.

The file never holds a secret. ``load_key_specs`` reads the file (enough for validation
and permission checks); ``KeySpec.resolve`` fetches the secret when a request is made.

Besides ``profiles:``, a ``sub_accounts:`` list declares many profiles at once: each entry is
a template whose ``{account}`` is replaced by every account it lists (``accounts: [...]`` or
``accounts: {from: 2001, count: 50}``), giving one profile per sub-account, each with its own
API key and secret reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from treasury.display import name_problem
from treasury.errors import ConfigError, Problem
from treasury.located import LocatedDocument, load_located, raise_problems
from treasury.models import Permission
from treasury.secretfiles import check_private_file


class KeySpec(BaseModel):
    """One profile as written in keys.yaml (no secret values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    api_key: str = Field(min_length=1)
    secret_env: str | None = None
    secret_file: Path | None = None
    totp_secret_env: str | None = None
    permissions: frozenset[Permission] = Field(min_length=1)
    # The HashKey account this key acts on. Withdrawals name no account in their parameters,
    # so policy rules scoped to an account can only decide them when the profile says it.
    account_id: str | None = Field(None, min_length=1, max_length=64)
    # Whether the key may read the fund statement (balanceFlow). HashKey allows only a master
    # account's master key; for any other key an unanswered transfer cannot be looked up, so
    # the runner notes both accounts' balances before sending it, as evidence for a person.
    fund_statement: bool = True

    @model_validator(mode="after")
    def _one_secret_source(self) -> KeySpec:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file")
        return self

    def unset_variables(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The variables this profile reads its secrets from that are unset or empty in ``environ``."""
        variables = os.environ if environ is None else environ
        names = [n for n in (self.secret_env, self.totp_secret_env) if n is not None]
        return [n for n in names if not variables.get(n)]

    def resolve(self, environ: Mapping[str, str] | None = None, base_dir: Path | None = None, *,
                env: str = "production") -> KeyProfile:
        """Load the secret (and TOTP secret) and return a usable profile.

        ``env`` is ``TREASURY_ENV``: a ``secret_file`` that others may read is refused in
        ``production`` (the default, so a caller that does not say is held to it) and only
        warned about elsewhere (``treasury.secretfiles.check_private_file``).

        Raises:
            ConfigError: the variable is unset/empty, or the file is missing or (in
                production) readable by others, naming it.
        """
        variables = os.environ if environ is None else environ
        where = f"key profile {self.name!r}"
        if self.secret_env is not None:
            value = variables.get(self.secret_env, "")
            if not value:
                raise ConfigError(
                    f"secret variable {self.secret_env} is not set", source=where, field="secret_env"
                )
        else:
            assert self.secret_file is not None
            sf = self.secret_file
            path = sf if sf.is_absolute() or base_dir is None else base_dir / sf
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"secret file {path} cannot be read: {exc.strerror}", source=where, field="secret_file"
                ) from exc
            # after reading, so that a missing file keeps its own message; a refused secret is dropped
            check_private_file(path, env, what=f"secret file of key profile {self.name!r}")
            if not value:
                raise ConfigError(f"secret file {path} is empty", source=where, field="secret_file")
        totp: SecretStr | None = None
        if self.totp_secret_env:
            t = variables.get(self.totp_secret_env, "")
            if not t:
                raise ConfigError(
                    f"TOTP secret variable {self.totp_secret_env} is not set",
                    source=where,
                    field="totp_secret_env",
                )
            totp = SecretStr(t)
        return KeyProfile(
            name=self.name, api_key=self.api_key, secret=SecretStr(value),
            permissions=self.permissions, totp_secret=totp, account_id=self.account_id,
            fund_statement=self.fund_statement,
        )


class KeyProfile(BaseModel):
    """A profile with its secret loaded. ``repr`` masks the secrets."""

    model_config = ConfigDict(frozen=True)

    name: str
    api_key: str
    secret: SecretStr
    permissions: frozenset[Permission]
    totp_secret: SecretStr | None = None
    account_id: str | None = None
    fund_statement: bool = True


def _profile_name(name: str) -> str:
    problem = name_problem(name, "key profile name")
    if problem is not None:
        raise ValueError(problem)
    return name


ACCOUNT = "{account}"
MAX_SUB_ACCOUNTS = 10_000  # per template: a typo in a count must not make a million profiles


class _AccountRange(BaseModel):
    """Accounts ``from``, ``from + 1``, ... (``count`` of them), as decimal strings."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    first: int = Field(alias="from", ge=0)
    count: int = Field(ge=1, le=MAX_SUB_ACCOUNTS)

    def ids(self) -> list[str]:
        return [str(self.first + n) for n in range(self.count)]


def _templated(value: str) -> str:
    if ACCOUNT not in value:
        raise ValueError(f"must contain {ACCOUNT}, so that each sub-account gets its own")
    return value


class _SubAccounts(BaseModel):
    """One template that expands into a profile per listed account."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, AfterValidator(_templated)]
    accounts: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                        Field(min_length=1, max_length=MAX_SUB_ACCOUNTS)] | _AccountRange
    api_key: Annotated[str, AfterValidator(_templated)]
    secret_env: Annotated[str, AfterValidator(_templated)] | None = None
    secret_file: Annotated[str, AfterValidator(_templated)] | None = None
    totp_secret_env: str | None = None
    permissions: frozenset[Permission] = Field(min_length=1)
    account_id: str | None = ACCOUNT
    fund_statement: bool = True

    def account_ids(self) -> list[str]:
        return self.accounts.ids() if isinstance(self.accounts, _AccountRange) else list(self.accounts)

    def expand(self, account: str) -> tuple[str, dict[str, Any]]:
        """The profile name and the KeySpec fields for ``account``."""
        fields: dict[str, Any] = {"permissions": self.permissions, "fund_statement": self.fund_statement}
        for key in ("api_key", "secret_env", "secret_file", "totp_secret_env", "account_id"):
            value = getattr(self, key)
            if value is not None:
                fields[key] = value.replace(ACCOUNT, account)
        return self.name.replace(ACCOUNT, account), fields


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profiles: dict[Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_profile_name)], KeySpec] = {}
    sub_accounts: list[_SubAccounts] = []

    @model_validator(mode="before")
    @classmethod
    def _some_profiles(cls, data: Any) -> Any:
        # today's files must name profiles; a file of templates alone may leave it out
        if isinstance(data, dict) and "profiles" not in data and "sub_accounts" not in data:
            raise ValueError("give profiles (and/or sub_accounts)")
        return data


def _expand(parsed: _KeysFile, doc: LocatedDocument) -> tuple[dict[str, KeySpec], list[Problem]]:
    """Every template's profiles, with each problem located at the template's field."""
    out: dict[str, KeySpec] = {}
    problems: list[Problem] = []
    for index, template in enumerate(parsed.sub_accounts):
        where: tuple[int | str, ...] = ("sub_accounts", index)
        for account in template.account_ids():
            name, fields = template.expand(account)
            problem = name_problem(name, "key profile name")
            if problem is not None or len(name) > 64:
                problems.append(doc.problem((*where, "name"), f"{problem or 'is longer than 64'} "
                                            f"(for account {account!r})"))
                break
            if name in parsed.profiles or name in out:
                problems.append(doc.problem((*where, "name"), f"profile {name!r} is declared twice"))
                break
            try:
                out[name] = KeySpec.model_validate(fields)
            except ValidationError as exc:
                problems.extend(doc.problem((*where, *err["loc"]), str(err["msg"]).removeprefix("Value error, ")
                                            + f" (for account {account!r})") for err in exc.errors())
                break
    return out, problems


def load_key_specs(path: Path) -> dict[str, KeySpec]:
    """Read keys.yaml, ``profiles`` then the profiles each ``sub_accounts`` template makes.

    Relative ``secret_file`` paths are relative to the file's folder.

    Raises:
        ConfigError: every problem, each as ``FILE:LINE:COL: message (field.path)``.
    """
    doc = load_located(path)
    try:
        parsed = _KeysFile.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise_problems([*doc.problems, *doc.problems_from(exc)])
        raise  # pragma: no cover - raise_problems always raises for a non-empty list
    expanded, problems = _expand(parsed, doc)
    # a duplicate profile name: safe_load would keep the last silently
    raise_problems([*doc.problems, *problems])
    out: dict[str, KeySpec] = {}
    for name, spec in [*parsed.profiles.items(), *expanded.items()]:
        sf = spec.secret_file
        if sf is not None and not sf.is_absolute():
            sf = path.parent.resolve() / sf  # absolute, so resolve(base_dir=...) never joins twice
        out[name] = spec.model_copy(update={"name": name, "secret_file": sf})
    return out


def get_spec(specs: Mapping[str, KeySpec], name: str) -> KeySpec:
    """Look a profile up by name.

    Raises:
        ConfigError: unknown profile, listing the known ones.
    """
    try:
        return specs[name]
    except KeyError:
        known = ", ".join(sorted(specs)) or "(none)"
        raise ConfigError(f"unknown key profile {name!r}; known profiles: {known}", field="key") from None
