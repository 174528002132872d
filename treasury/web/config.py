"""The console's own settings (``TREASURY_WEB_*``), built once in the entry point and passed down.

The relying party (``TREASURY_WEB_RP_ID``, ``TREASURY_WEB_ORIGIN``) is in ``treasury.settings``:
the passkeys are checked against it outside the console too.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    """Where the console listens, who it is to the browser (relying party), and its time-outs."""

    model_config = SettingsConfigDict(env_prefix="TREASURY_WEB_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    # times on pages are shown in the desk's zone (UTC on hover)
    timezone: str = "Asia/Hong_Kong"
    # a session ends after this long without a request, and this long after sign-in in any case
    idle_minutes: float = Field(15.0, gt=0)
    absolute_hours: float = Field(8.0, gt=0)
    # how often the inbox and a run's page look for changes (at most every 2 s)
    poll_seconds: float = Field(2.0, ge=2.0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Hong_Kong)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
