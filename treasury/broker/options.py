"""Worker and beat tunables (``TREASURY_QUEUE``, ``TREASURY_VISIBILITY_TIMEOUT``, …).

They live beside ``Settings`` rather than in it because only the Celery side reads them.
Like ``Settings``, they are built once in an entry point (``treasury.worker.app``, the CLI)
and passed down.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The longest a step may legitimately run by default: the step budget (120 s) plus the
# reconciliation deadline (120 s). The visibility timeout must stay above twice this, or a
# healthy worker's message would be handed to a second worker while it still runs.
DEFAULT_STEP_SECONDS = 240.0


class WorkerOptions(BaseSettings):
    """How workers and beat use the broker. Every field reads ``TREASURY_<NAME>``.

    Beat reads only ``beat_interval`` and ``sweep_interval`` (how often it sends the tasks);
    the workers that run those tasks read the rest, so set those on the workers.
    """

    model_config = SettingsConfigDict(env_prefix="TREASURY_", env_file=".env", extra="ignore")

    # allows a visibility timeout below twice the default step time (tests shorten it)
    allow_short_visibility: bool = False
    # the queue every treasury task goes to (and workers consume by default)
    queue: str = Field("treasury", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    # prepended to every Redis key Celery uses, so several installations (or test runs) can
    # share one Redis database without seeing each other's queues
    broker_key_prefix: str = Field("", max_length=100, pattern=r"^[A-Za-z0-9_.:-]*$")
    # seconds before Redis hands an unacknowledged message to another worker (a worker that
    # died with it); duplicates are harmless, so this only bounds how fast redelivery is
    visibility_timeout: int = Field(3600, ge=1)
    # how often beat asks the database which schedules are due
    beat_interval: float = Field(15.0, gt=0)
    # catchup: all fires at most this many missed instants per schedule (the newest ones);
    # older ones are recorded as missed
    catchup_cap: int = Field(100, ge=1, le=10_000)
    # how often beat runs the sweeper (stale execution records, lost messages, expired approvals).
    # A killed worker's step is recovered within the lease (20 s) plus this, plus the step itself
    sweep_interval: float = Field(15.0, gt=0)
    # an execution record whose lease ran out is stale at once (its worker stopped renewing it);
    # a run, a step with no live lease, or an unleased record untouched this long counts as lost
    sweep_older_than: float = Field(45.0, ge=0)
    # overrides the execution lease (seconds; TREASURY_LEASE_SECONDS of the settings otherwise)
    lease_seconds: float | None = Field(None, gt=0)
    # warm shutdown waits for running steps; after a cold-shutdown request this grace period
    # still lets them finish before the worker gives up (Celery's soft shutdown)
    soft_shutdown_timeout: float = Field(60.0, ge=0)
    # how often beat sends the notification sender task (config/notify.yaml)
    notify_interval: float = Field(10.0, gt=0)
    # serve /metrics, /healthz and /readyz on this port (worker: the parent process, summing its
    # pool; beat: its own process). Unset: no server. See docs/operations.md.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("visibility_timeout")
    @classmethod
    def _visibility_above_steps(cls, value: int, info: ValidationInfo) -> int:
        if not info.data.get("allow_short_visibility") and value < 2 * DEFAULT_STEP_SECONDS:
            raise ValueError(
                f"{value}s is below twice the longest default step ({2 * DEFAULT_STEP_SECONDS:.0f}s): "
                "healthy steps would be redelivered while they run; "
                "TREASURY_ALLOW_SHORT_VISIBILITY=true allows it (tests only)"
            )
        return value

    @property
    def restore_interval(self) -> int:
        """Seconds between Redis scans for abandoned messages (a fifth of the timeout, 1–60 s)."""
        return int(min(60, max(1, self.visibility_timeout // 5)))
