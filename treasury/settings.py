"""Process settings (``TREASURY_*`` variables and ``.env``), built once in the entry point.

There is no global settings object: the CLI and the worker build ``Settings`` and pass
it (or the parts that are needed) down explicitly.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from treasury.errors import ConfigError


class LogFormat(StrEnum):
    """How log lines are written: for a person (console) or for a collector (one JSON object a line)."""

    CONSOLE = "console"
    JSON = "json"


class Environment(StrEnum):
    SIMULATOR = "simulator"
    SANDBOX = "sandbox"
    PRODUCTION = "production"


ENVIRONMENT_URLS: dict[Environment, str | None] = {
    Environment.SIMULATOR: None,  # in-process simulator unless TREASURY_BASE_URL is set
    Environment.SANDBOX: "https://api-pro.sim.hashkeydev.com",
    Environment.PRODUCTION: "https://api-pro.hashkey.com",
}
# hosts of the real exchange (and its sandbox): never reached from TREASURY_ENV=simulator
HASHKEY_DOMAINS = ("hashkey.com", "hashkeydev.com")


class RateLimits(BaseModel):
    """Requests per second per (API key, class); weights count against these."""

    query: float = Field(2.0, gt=0)
    order: float = Field(10.0, gt=0)
    transfer: float = Field(1.0, gt=0)
    suspension_seconds: float = Field(60.0, ge=0)
    # Each 1 s window is counted as 1 s + margin. A request holds its place until a window
    # after its answer, which covers late arrivals (see exchange/ratelimit.py); the margin
    # covers the exchange and us measuring a second slightly differently. 0.02 s caps a key
    # at ~0.98 of its limit.
    margin_seconds: float = Field(0.02, ge=0, le=1)


def settle_minimum(http_timeout_seconds: float, recv_window_ms: int, margin_seconds: float) -> float:
    """HTTP timeout + recvWindow + margin: until then a request without an answer may still land."""
    return round(http_timeout_seconds + recv_window_ms / 1000 + margin_seconds, 6)


class Settings(BaseSettings):
    """All process settings. Secrets are ``SecretStr`` and never printed."""

    model_config = SettingsConfigDict(
        env_prefix="TREASURY_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
    )

    env: Environment = Environment.SIMULATOR
    base_url: str | None = None
    config_dir: Path = Path("config")
    database_url: SecretStr = SecretStr("sqlite:///treasury.db")
    broker_url: SecretStr | None = None
    workflows_dir: Path = Path("workflows")
    recv_window_ms: int = Field(5000, gt=0, le=60000)
    http_timeout_seconds: float = Field(10.0, gt=0)
    rate_limits: RateLimits = RateLimits()
    # reconciliation. A lookup may only prove absence once a request can no longer arrive or
    # still be in flight: the settle window (counted from the send) covers the HTTP timeout,
    # then recvWindow (the exchange accepts a request until its timestamp is that old), then a
    # margin for clock offset. Unset, it is exactly that minimum (10 + 5 + 1 s); shorter is refused.
    settle_margin_seconds: float = Field(1.0, ge=0)
    settle_seconds: float = Field(16.0, ge=0)
    reconcile_deadline_seconds: float = Field(180.0, gt=0)
    # how long a worker owns an execution record without renewing it; a working step renews it
    # every quarter of this (the heartbeat), and a killed worker's record is free this long after
    # its last renewal, for the sweeper to reconcile and re-dispatch
    lease_seconds: float = Field(20.0, gt=0)
    # a step started this many times without reaching an end (its worker died, or it raised)
    # is parked for a person instead of being started again: no endless redelivery loop
    step_start_limit: int = Field(5, ge=1)
    # audit checkpoints: the chain's (seq, hash), signed with the server key, kept outside the
    # database (docs/architecture.md, "Audit checkpoints"). Unset dir: next to a SQLite file
    # database; required in production. Unset key: generated next to the dir, outside production.
    checkpoint_dir: Path | None = None
    checkpoint_every_events: int = Field(100, ge=1)
    checkpoint_every_seconds: float = Field(300.0, gt=0)
    server_key_file: Path | None = None
    # how old a signed decision may be when it reaches the runner (seconds)
    decision_max_age: float = Field(600.0, gt=0)
    # the key that signs this person's decisions: a key file or ``agent:COMMENT``
    identity: str | None = None
    # log lines: "console" (plain text, the default) or "json" (one object per line, with the
    # run, step, client id, operation and person; see treasury/observe/logs.py)
    log_format: LogFormat = LogFormat.CONSOLE
    # `treasury health` and /readyz fail when our clock is further than this from the exchange's
    max_clock_offset_ms: float = Field(1000.0, gt=0)
    # notifications (config/notify.yaml): links in messages point at the web console here
    console_url: str | None = None
    # an approval.expiring notification goes out this long before an approval expires
    notify_expiry_warning_seconds: float = Field(3600.0, ge=0)
    # a sender's claim on a delivery; a sender that died is replaced after this long
    notify_lease_seconds: float = Field(60.0, gt=0)
    # the web console as a WebAuthn relying party: passkeys are bound to the rp id (a host name,
    # the origin's host or a parent of it) and assertions must come from exactly this origin
    web_rp_id: str = "localhost"
    web_origin: str = "http://localhost:8700"

    @field_validator("web_origin")
    @classmethod
    def _origin_without_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _simulator_stays_simulated(self) -> Settings:
        # the simulator environment signs with demo keys and allows `policy: none`: never with HashKey
        host = (urlsplit(self.base_url).hostname or "").lower() if self.base_url else ""
        if self.env is Environment.SIMULATOR and any(host == d or host.endswith("." + d) for d in HASHKEY_DOMAINS):
            raise ValueError(
                f"TREASURY_BASE_URL ({self.base_url}) is HashKey, but TREASURY_ENV is simulator (the default), "
                "where demo keys sign decisions and `policy: none` is allowed; set TREASURY_ENV=sandbox or "
                "TREASURY_ENV=production")
        return self

    @model_validator(mode="after")
    def _settle_covers_flight(self) -> Settings:
        # After the fields: the minimum depends on three of them. Unset, settle is the minimum.
        minimum = self.settle_minimum()
        if "settle_seconds" not in self.model_fields_set:
            self.settle_seconds = minimum
        elif self.settle_seconds < minimum:
            raise ValueError(
                f"TREASURY_SETTLE_SECONDS ({self.settle_seconds:g} s) is shorter than a request can stay in "
                f"flight: TREASURY_HTTP_TIMEOUT_SECONDS ({self.http_timeout_seconds:g} s) + "
                f"TREASURY_RECV_WINDOW_MS ({self.recv_window_ms} ms) + TREASURY_SETTLE_MARGIN_SECONDS "
                f"({self.settle_margin_seconds:g} s) = {minimum:g} s. A lookup made sooner could find a "
                f"request the exchange still holds \"absent\" and send it again; set TREASURY_SETTLE_SECONDS "
                f"to at least {minimum:g}, or leave it unset to use that minimum")
        return self

    def settle_minimum(self) -> float:
        """The shortest settle window these settings allow (see ``settle_seconds``)."""
        return settle_minimum(self.http_timeout_seconds, self.recv_window_ms, self.settle_margin_seconds)

    def exchange_url(self) -> str | None:
        """The exchange base URL, or None for the in-process simulator."""
        if self.base_url:
            return self.base_url
        return ENVIRONMENT_URLS[self.env]

    def check(self) -> None:
        """Refuse combinations that cannot work.

        Raises:
            ConfigError: with an in-process simulator and a broker (each worker would
                get an exchange of its own).
        """
        if self.broker_url is not None and self.exchange_url() is None:
            raise ConfigError(
                "an in-process simulator cannot be shared by Celery workers; "
                "run `treasury simulator` and set TREASURY_BASE_URL",
                source="environment",
                field="TREASURY_BROKER_URL",
            )

    @property
    def keys_file(self) -> Path:
        return self.config_dir / "keys.yaml"

    @property
    def people_file(self) -> Path:
        return self.config_dir / "people.yaml"

    @property
    def policy_file(self) -> Path:
        return self.config_dir / "policy.yaml"

    @property
    def notify_file(self) -> Path:
        return self.config_dir / "notify.yaml"

    @property
    def simulator_file(self) -> Path:
        return self.config_dir / "simulator.yaml"
