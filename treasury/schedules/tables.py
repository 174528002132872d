"""Schedule tables: per-schedule state, one row per handled due instant, reported invalid files.

``schedule_ticks`` has one row per (schedule, due instant), whatever happened to it; its primary
key is what makes two beats, a restarted beat or a replayed tick agree. ``runs`` carries the
same guard as ``uq_runs_schedule_due``.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, PrimaryKeyConstraint, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

TICK_FIRED = "fired"
TICK_MISSED = "missed"
# due while the workflow file was invalid: held, not decided. Once the file is mended the
# schedule's catch-up policy decides it (fired or missed) like any instant the scheduler did
# not see in time; one still held when the schedule starts afresh (a new cron or timezone, a
# resume) never runs and counts as missed
TICK_SKIPPED_INVALID = "skipped_invalid"

schedule_state = Table(
    "schedule_state",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("workflow_file", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    # cron and timezone as last seen valid: a changed one restarts the schedule, and while the
    # file is invalid they still say which instants were skipped
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_by", String(100), nullable=True),
    Column("paused_at", UTCDateTime, nullable=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    # nothing at or before this fires: first seen, resumed, cron/timezone changed, re-added
    Column("effective_at", UTCDateTime, nullable=False),
    Column("last_due_at", UTCDateTime, nullable=True),  # the last due instant handled
    Column("removed_at", UTCDateTime, nullable=True),  # its file is gone (not merely invalid)
    Column("updated_at", UTCDateTime, nullable=False),
)

schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    Column("schedule", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # fired | missed | skipped_invalid (held)
    Column("run_id", String(16), nullable=True),
    # why it did not fire on time: the workflow file's problem while it was invalid, or that no
    # scheduler was running; None for an instant that fired on time
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("schedule", "due_at", name="pk_schedule_ticks"),
)

schedule_invalid = Table(
    "schedule_invalid",
    metadata,
    Column("file", String(1024), primary_key=True),
    Column("message", Text, nullable=False),  # as reported; a different message is reported again
    Column("reported_at", UTCDateTime, nullable=False),
)
