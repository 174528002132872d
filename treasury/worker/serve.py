"""``treasury serve``: one process for a small desk, with no broker.

It does on one machine what beat and the Celery workers do together:

- the scheduler tick: beat's own :class:`~treasury.schedules.beat.Beat`, so each (schedule,
  due time) fires exactly once, also with two ``serve`` processes (or a ``serve`` and a beat)
  on one database;
- the sweeper: :func:`~treasury.worker.process.sweep_pass`, as beat runs it;
- the steps of the runs it starts and recovers, inline (the run service's
  ``InlineDispatcher``), on one executor thread.

The ticks run on the calling thread and never wait for a step, so a step that takes minutes
(a settle window, a reconciliation) does not make a schedule late; the executor thread takes
the started runs and the sweeps from a queue, one after another.

Stopping (``stop`` set, by SIGTERM or SIGINT in the command): a tick under way finishes (each
schedule's tick is one transaction), the executor finishes the step it is on within ``grace``
seconds and starts nothing else. A run left in the queue stays PENDING in the database, where
the next sweep (of this or any process) starts it. A step abandoned after the grace period is
safe like a killed worker's: its execution record is leased and is reconciled by client id,
never sent again blindly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from treasury.broker.options import WorkerOptions
from treasury.errors import TreasuryError
from treasury.runtime import Runtime
from treasury.schedules.beat import Beat
from treasury.worker.process import sweep_pass

log = logging.getLogger("treasury.serve")

_SWEEP = "__sweep__"  # a queued job that is not a run id (run ids are [a-z0-9])


@dataclass(frozen=True)
class ServeOptions:
    """How often ``serve`` ticks and sweeps, and how long it lets a step finish when stopped."""

    tick_interval: float = 15.0
    sweep_interval: float = 60.0
    sweep_older_than: float = 120.0
    catchup_cap: int = 100
    grace: float = 60.0

    @classmethod
    def from_worker(cls, options: WorkerOptions) -> ServeOptions:
        """The same tunables beat and the workers read (``TREASURY_BEAT_INTERVAL``, …)."""
        return cls(tick_interval=options.beat_interval, sweep_interval=options.sweep_interval,
                   sweep_older_than=options.sweep_older_than, catchup_cap=options.catchup_cap,
                   grace=options.soft_shutdown_timeout)


class Server:
    """The scheduler tick, the sweeper and inline execution over one runtime.

    ``runtime`` executes steps (its dispatcher must be inline); ``beat`` fires schedules. Give
    ``beat`` a run service of its own (see :func:`build_server`): it is used from the ticking
    thread while ``runtime``'s service runs steps on the executor thread.
    """

    def __init__(self, runtime: Runtime, beat: Beat, options: ServeOptions) -> None:
        self.runtime = runtime
        self.beat = beat
        self.options = options
        self.clock = runtime.clock
        self._jobs: queue.Queue[str | None] = queue.Queue()
        self._sweep_queued = threading.Event()
        self._busy = threading.Event()  # the executor is carrying out a job

    # ------------------------------------------------------------------ the parts

    def tick(self) -> list[str]:
        """One scheduler tick; queues each run it started. Returns their ids.

        Never raises: a folder that cannot be read or a database that is down is logged, and
        the next tick tries again (no schedule is touched meanwhile).
        """
        try:
            report = self.beat.tick()
        except TreasuryError as exc:
            log.error("schedule tick skipped: %s", exc)
            return []
        except Exception:
            log.exception("schedule tick failed; the next tick tries again")
            return []
        run_ids = [fired.run_id for fired in report.fired]
        for run_id in run_ids:
            self._jobs.put(run_id)
        return run_ids

    def request_sweep(self) -> None:
        """Queue a sweeper pass, unless one is already waiting."""
        if not self._sweep_queued.is_set():
            self._sweep_queued.set()
            self._jobs.put(_SWEEP)

    def work(self, job: str) -> None:
        """Carry out one queued job: start a run (and run its steps inline), or sweep. Never raises."""
        try:
            if job == _SWEEP:
                self._sweep_queued.clear()
                sweep_pass(self.runtime, older_than=self.options.sweep_older_than)
            else:
                self.runtime.service.kick(job)
                log.info("run %s: %s", job, self.runtime.service.state_of(job))
        except Exception:
            # the run's state is in the database: the sweeper comes back to it
            log.exception("%s failed; the sweeper will come back to it", "sweep" if job == _SWEEP else f"run {job}")

    def drain(self) -> int:
        """Carry out every queued job now, on this thread; returns how many."""
        done = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return done
            if job is not None:
                self.work(job)
                done += 1

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, *, wait: Callable[[float], Any] | None = None,
            threaded: bool = True, hurry: threading.Event | None = None) -> None:
        """Tick and sweep on schedule until ``stop`` is set; returns once stopped cleanly.

        ``wait(seconds)`` waits until the next tick or sweep is due (default ``stop.wait``);
        time is read from the runtime's clock, so a test passes a wait that advances a manual
        clock. ``threaded=False`` carries out the queued jobs on this thread after each tick
        instead of on the executor thread. ``hurry`` (a second signal) stops waiting for the
        step under way.
        """
        wait = wait if wait is not None else stop.wait
        executor: threading.Thread | None = None
        if threaded:
            executor = threading.Thread(target=self._executor, args=(stop,), name="treasury-serve-steps",
                                        daemon=True)
            executor.start()
        next_tick = next_sweep = self.clock.monotonic()
        try:
            while not stop.is_set():
                now = self.clock.monotonic()
                if now >= next_tick:
                    self.tick()
                    next_tick = now + self.options.tick_interval
                if now >= next_sweep:
                    self.request_sweep()
                    next_sweep = now + self.options.sweep_interval
                if not threaded:
                    self.drain()
                if stop.is_set():
                    break
                wait(max(0.0, min(next_tick, next_sweep) - self.clock.monotonic()))
        finally:
            stop.set()
            if executor is not None:
                self._jobs.put(None)  # wakes the executor if it is waiting for work
                self._join(executor, hurry)

    def _executor(self, stop: threading.Event) -> None:
        while not stop.is_set():
            job = self._jobs.get()
            if job is None or stop.is_set():
                return
            self._busy.set()
            try:
                self.work(job)
            finally:
                self._busy.clear()

    def _join(self, executor: threading.Thread, hurry: threading.Event | None) -> None:
        # real time: this waits for a real thread, whatever clock the schedules use
        deadline = time.monotonic() + self.options.grace
        if self._busy.is_set():
            log.info("stopping: letting the step under way finish (up to %.0f s)", self.options.grace)
        while executor.is_alive() and time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
            executor.join(timeout=0.2)
        if executor.is_alive():
            log.warning("stopping without waiting for the step under way: its execution record is leased "
                        "and will be reconciled by client id (never sent again blindly) by the next sweep")
        else:
            log.info("stopped")


def build_server(runtime: Runtime, options: ServeOptions) -> Server:
    """A server over ``runtime``, with a beat that has a run service of its own.

    The beat's service validates the workflow files and creates the scheduled runs; it has
    no executor, so it never sends anything.
    """
    from treasury.policy.watch import PolicyWatch
    from treasury.runs.service import InlineDispatcher, RunContext, RunService
    from treasury.runtime import load_config

    settings = runtime.settings
    keys, approvers, policy = load_config(settings)
    ctx = RunContext(keys=keys, approvers=approvers, policy=policy, executor=None, dispatcher=InlineDispatcher(),
                     clock=runtime.clock, step_start_limit=settings.step_start_limit,
                     policy_watch=PolicyWatch(settings.policy_file, policy))
    beat = Beat(runtime.engine, RunService(runtime.engine, ctx), settings.workflows_dir, clock=runtime.clock,
                catchup_cap=options.catchup_cap)
    return Server(runtime, beat, options)
