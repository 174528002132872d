"""Why a RUNNING run is not moving: when a worker last saw its steps, and whether any consumes.

Only for runs on Celery workers (``TREASURY_BROKER_URL`` set): the lease heartbeat says when a
worker last touched each step's execution records, and the workers' check-ins in Redis
(``treasury.worker.liveness``) say whether anyone consumes the queue at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from treasury.execution.progress import seconds_text
from treasury.settings import Settings


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def worker_status(settings: Settings, data: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """For a RUNNING run with a broker: what its steps last heard from a worker, and who consumes.

    Returns None when there is no broker or the run is not RUNNING; otherwise a JSON-ready dict
    with ``queue``, ``consumers`` (name -> last check-in; None when the broker did not answer),
    ``steps`` and the ``messages`` a person reads.
    """
    if settings.broker_url is None or data.get("state") != "RUNNING":
        return None
    from treasury.broker.app import load_options
    from treasury.worker.liveness import STALE_AFTER, consumers

    options = load_options()
    queue = options.queue
    messages: list[str] = []
    steps: list[dict[str, Any]] = []
    for step in data.get("steps", []):
        if step.get("kind") != "operation" or step.get("state") != "RUNNING":
            continue
        execs = step.get("executions") or []
        seen = max((t for t in (_when(e.get("last_seen")) for e in execs) if t is not None), default=None)
        held = [e for e in execs if e.get("lease_owner")]
        until = max((t for t in (_when(e.get("lease_until")) for e in held) if t is not None), default=None)
        owner = str(held[0]["lease_owner"]).split("#")[0] if held else None
        live = until is not None and until > now
        steps.append({"id": step["id"], "last_seen": seen, "lease_owner": owner, "lease_until": until,
                      "lease_live": live})
        if seen is None:
            since = _when(step.get("started_at"))
            messages.append(f"step {step['id']}: no worker has picked it up"
                            + (f" since it was dispatched at {since:%H:%M:%S} UTC" if since else ""))
        elif owner is None:
            messages.append(f"step {step['id']}: a worker last worked on it at {seen:%H:%M:%S} UTC "
                            f"({seconds_text((now - seen).total_seconds())} ago) and left it for later")
        else:
            lease = (f"it holds the lease until {until:%H:%M:%S} UTC" if live else
                     f"its lease ran out at {until:%H:%M:%S} UTC" if until else "it holds no lease")
            messages.append(f"step {step['id']}: {owner} last saw it at {seen:%H:%M:%S} UTC "
                            f"({seconds_text((now - seen).total_seconds())} ago); {lease}")
    url = settings.broker_url.get_secret_value()
    live_workers: dict[str, float] | None
    try:
        live_workers = consumers(url, queue, prefix=options.broker_key_prefix, now=now.timestamp())
    except Exception:
        live_workers = None
        messages.append(f"cannot tell whether a worker consumes queue {queue!r}: the broker "
                        "(TREASURY_BROKER_URL) did not answer within 1 s")
    if live_workers is not None and not live_workers:
        messages.append(f"no worker is consuming queue {queue!r} (none has checked in within "
                        f"{STALE_AFTER:.0f} s): start one with `treasury worker`")
    elif live_workers:
        latest = max(live_workers.values())
        messages.append(f"{len(live_workers)} worker(s) consuming queue {queue!r}: "
                        f"{', '.join(sorted(live_workers))} (last check-in "
                        f"{seconds_text(now.timestamp() - latest)} ago)")
    return {"queue": queue,
            "consumers": None if live_workers is None else
            {name: datetime.fromtimestamp(t, tz=now.tzinfo) for name, t in live_workers.items()},
            "steps": steps, "messages": messages}
