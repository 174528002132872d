"""The lease heartbeat: a step call keeps its execution records' leases alive while it works.

A lease is short (``ExecutionSettings.lease_seconds``, 20 s in the runtime) so that a worker
that dies is noticed soon: the sweeper takes a record over as soon as its lease has run out.
A live worker therefore renews its leases every few seconds (``renew_seconds``) from a
background thread, and also before every wait of its own (so a test clock that jumps still
sees them renewed).

Every renewal is a compare-and-set on the record's version, on this holder and on the lease
still running (:func:`treasury.execution.records.renew`): it can never extend a lease that
ran out, or that another worker took. A renewal that fails marks the lease *lost*; the step
then sends nothing more (see :meth:`StepContext.before_sign`) and its next change fails with
``LeaseLost``.

The keeper's lock is also held by every change the step commits, so a renewal never reads a
version that a change is about to move, and the two never race for the same rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Engine

from treasury.clock import Clock
from treasury.execution import records as R
from treasury.execution.records import ExecRecord

log = logging.getLogger("treasury.execution")


class LeaseKeeper:
    """The leases one step call holds, what it last wrote about them, and their heartbeat.

    Args:
        engine: the database holding the records.
        clock: the time every renewal is stamped with.
        holder: the lease owner this call writes.
        lease_seconds: how long each renewal extends a lease.
        renew_seconds: how often the heartbeat renews (None: only before waits).
        legs: the call's current records (read under the keeper's lock).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        holder: str,
        *,
        lease_seconds: float,
        renew_seconds: float | None,
        legs: Callable[[], Iterable[ExecRecord]],
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._legs = legs
        self.lock = threading.RLock()
        self.until: dict[str, datetime] = {}  # client id -> the lease end this holder last wrote
        self.lost: set[str] = set()
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ what the call wrote

    def note(self, rec: ExecRecord) -> None:
        """Remember the lease end of a row this holder has just written (claim or change)."""
        with self.lock:
            if rec.lease_owner == self.holder and rec.lease_until is not None:
                self.until[rec.client_id] = rec.lease_until
                self.lost.discard(rec.client_id)
            else:
                self.until.pop(rec.client_id, None)

    def held(self, client_ids: Iterable[str], at: datetime) -> bool:
        """Whether every one of ``client_ids`` is still ours at ``at`` as far as we know."""
        with self.lock:
            return all(c not in self.lost and c in self.until and self.until[c] > at for c in client_ids)

    # ------------------------------------------------------------------ renewing

    def renew(self) -> bool:
        """Renew every lease this call holds on an unfinished record; False if one was lost.

        Never raises for a database error: the lease then simply runs out unless a later
        renewal gets through (a worker cut off from its database must stop sending anyway).
        """
        with self.lock:
            held = [r for r in self._legs() if not r.terminal and r.client_id in self.until
                    and r.client_id not in self.lost]
            if not held:
                return not self.lost
            at = self.clock.now()
            try:
                with self.engine.begin() as conn:
                    renewed = R.renew(conn, held, owner=self.holder, at=at, lease_seconds=self.lease_seconds)
            except Exception as exc:  # the lease runs out: that is the safe side
                log.warning("lease renewal failed (%s: %s); it runs out unless renewed in time",
                            type(exc).__name__, exc)
                return not self.lost
            self.renewals += 1
            for rec in held:
                if rec.client_id in renewed:
                    self.until[rec.client_id] = renewed[rec.client_id]
                else:
                    self.lost.add(rec.client_id)
                    log.warning("lease on %s lost (it ran out, or another worker took the record); "
                                "this worker sends nothing more for it", rec.client_id)
            return not self.lost

    def renew_if_due(self, within: float) -> None:
        """Renew now if some lease would end within ``within`` seconds (before a wait that long)."""
        with self.lock:
            if not self.until:
                return
            soonest = min(self.until.values()).timestamp()
        if soonest - self.clock.time() <= within:
            self.renew()

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` on the clock, renewing the leases before (and during) the wait."""
        margin = self.lease_seconds / 4
        remaining = max(0.0, seconds)
        while True:
            chunk = min(remaining, max(margin, self.lease_seconds - 2 * margin))
            self.renew_if_due(max(chunk + margin, self.lease_seconds / 2))
            self.clock.sleep(chunk)
            remaining -= chunk
            if remaining <= 0:
                return

    # ------------------------------------------------------------------ the background heartbeat

    def start(self) -> None:
        """Start the background heartbeat (when ``renew_seconds`` is set)."""
        if self.renew_seconds is None or self._thread is not None:
            return
        interval = self.renew_seconds

        def beat() -> None:
            while not self._stop.wait(interval):
                self.renew()

        self._thread = threading.Thread(target=beat, name=f"lease-heartbeat {self.holder}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background heartbeat (the call is about to release its leases)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)


class RenewingClock:
    """The keeper's clock, whose ``sleep`` renews the leases first (``LeaseKeeper.wait``).

    Handed to the retry policies of a step call, so that their back-offs renew like the call's
    own waits do.
    """

    def __init__(self, keeper: LeaseKeeper) -> None:
        self._keeper = keeper

    def now(self) -> datetime:
        return self._keeper.clock.now()

    def time(self) -> float:
        return self._keeper.clock.time()

    def monotonic(self) -> float:
        return self._keeper.clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self._keeper.wait(seconds)
