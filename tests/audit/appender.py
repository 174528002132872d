"""Child-process entry for the concurrency tests (kept free of pytest so children start fast)."""

from __future__ import annotations

from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier


def append_many(
    url: str, tag: str, count: int, start: Barrier, checkpoints: tuple[str, str, int] | None = None
) -> None:
    """Append ``count`` events as ``worker:<tag>``, one transaction each, after everyone is ready.

    ``checkpoints`` (directory, key file, every N events): checkpoint as a runner process does.
    """
    from treasury.audit import append_event
    from treasury.store.db import make_engine

    engine = make_engine(url)
    if checkpoints is not None:
        from pathlib import Path

        from treasury.audit.anchoring import Checkpointer, install
        from treasury.audit.checkpoints import CheckpointStore
        from treasury.audit.server_key import ServerKey
        from treasury.clock import SystemClock

        folder, key, every = checkpoints
        install(engine, Checkpointer(CheckpointStore(Path(folder)), ServerKey(Path(key), create=False),
                                     clock=SystemClock(), every_events=every, every_seconds=3600))
    with engine.connect() as conn:  # connect before the start line so all begin together
        start.wait(timeout=60)
        for i in range(count):
            with conn.begin():
                append_event(
                    conn,
                    type="request.sent",
                    actor=f"worker:{tag}",
                    at=datetime.now(UTC),
                    run_id=f"run-{tag}",
                    step_id="pay",
                    payload={"i": i},
                )
    engine.dispose()
