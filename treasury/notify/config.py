"""``config/notify.yaml``: notification channels and the routes that pick them.

```yaml
channels:
  ops-webhook:
    type: webhook
    url: https://hooks.example.com/treasury     # or url_env: NAME (the URL from a variable)
    secret_env: TREASURY_NOTIFY_WEBHOOK_SECRET  # HMAC-SHA256 key; required for a webhook
  desk-slack:
    type: slack
    url_env: TREASURY_NOTIFY_SLACK_URL          # a Slack incoming-webhook URL is a secret
routes:
  - {events: [approval.requested, approval.expiring], channels: [desk-slack]}
  - {events: ["*"], channels: [ops-webhook]}
```

An event goes to every channel of every route that lists it (``"*"``: every event). Errors
name ``FILE:LINE:COL`` and the field. Secrets are read from the environment when the file is
loaded and held as ``SecretStr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from treasury.audit.outbox import EVENTS
from treasury.errors import ConfigError, Problem
from treasury.located import compose, raise_problems
from treasury.yamlfile import MAX_CONFIG_BYTES

NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook", "slack"]
    url: str | None = None
    url_env: str | None = Field(None, pattern=ENV_NAME)
    secret_env: str | None = Field(None, pattern=ENV_NAME)
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


def _known_event(v: str) -> str:
    if v != "*" and v not in EVENTS:
        raise ValueError(f"unknown event {v!r}; events are {', '.join(EVENTS)} or \"*\"")
    return v


EventName = Annotated[str, AfterValidator(_known_event)]


class _Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventName] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)


class _NotifyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: dict[str, _Channel] = Field(default_factory=dict)
    routes: list[_Route] = Field(default_factory=list)


@dataclass(frozen=True)
class Channel:
    """A channel ready to send: its URL and (webhook) signing secret resolved."""

    name: str
    type: str
    url: SecretStr  # a Slack webhook URL is itself a credential
    secret: SecretStr | None
    timeout_seconds: float


@dataclass(frozen=True)
class NotifyConfig:
    source: str
    channels: dict[str, Channel] = field(default_factory=dict)
    routes: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = ()

    def channels_for(self, event: str) -> list[str]:
        """The channel names ``event`` goes to, in the file's order, each once."""
        out: list[str] = []
        for events, channels in self.routes:
            if event in events or "*" in events:
                out.extend(c for c in channels if c not in out)
        return out


def parse_notify(data: bytes, source: str, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """Parse notify YAML and resolve its secrets from ``environ`` (the process environment).

    Raises:
        ConfigError: every problem, each as ``FILE:LINE:COL: message (field.path)``.
    """
    env = os.environ if environ is None else environ
    doc = compose(data, source)
    try:
        parsed = _NotifyFile.model_validate({} if doc.data is None else doc.data)
    except ValidationError as exc:
        raise_problems([*doc.problems, *doc.problems_from(exc)])
        raise  # pragma: no cover - raise_problems always raises for a non-empty list
    problems: list[Problem] = list(doc.problems)
    channels: dict[str, Channel] = {}
    import re

    for name, spec in parsed.channels.items():
        at = ("channels", name)
        if not re.match(NAME, name):
            problems.append(doc.problem(at, "a channel name is 1-64 of a-z, 0-9, '-' and '_'", key=True))
        if (spec.url is None) == (spec.url_env is None):
            problems.append(doc.problem(at, "give exactly one of url and url_env"))
            continue
        url = spec.url
        if spec.url_env is not None:
            url = env.get(spec.url_env)
            if not url:
                problems.append(doc.problem((*at, "url_env"), f"environment variable {spec.url_env} is not set"))
                continue
            if not url.startswith(("https://", "http://")):
                problems.append(doc.problem((*at, "url_env"), f"{spec.url_env} is not an http(s) URL"))
                continue
        secret = None
        if spec.type == "webhook":
            if spec.secret_env is None:
                problems.append(doc.problem(at, "a webhook needs secret_env: the variable holding its signing key"))
                continue
            value = env.get(spec.secret_env)
            if not value:
                problems.append(doc.problem((*at, "secret_env"), f"environment variable {spec.secret_env} is not set"))
                continue
            secret = SecretStr(value)
        elif spec.secret_env is not None:
            problems.append(doc.problem((*at, "secret_env"), "only a webhook channel is signed", key=True))
        assert url is not None
        channels[name] = Channel(name, spec.type, SecretStr(url), secret, spec.timeout_seconds)
    for i, route in enumerate(parsed.routes):
        for j, channel in enumerate(route.channels):
            if channel not in parsed.channels:
                problems.append(doc.problem(("routes", i, "channels", j), f"no channel named {channel!r}"))
    raise_problems(problems)
    routes = tuple((frozenset(r.events), tuple(r.channels)) for r in parsed.routes)
    return NotifyConfig(source=source, channels=channels, routes=routes)


def load_notify(path: Path, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """Load ``config/notify.yaml``; a missing file means no channels (nothing is sent).

    Raises:
        ConfigError: unreadable, oversized or invalid (located), or a secret variable unset.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return NotifyConfig(source=str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read notification config: {exc.strerror}", source=str(path)) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES} bytes", source=str(path))
    return parse_notify(data, str(path), environ)
