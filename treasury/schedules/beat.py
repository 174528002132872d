"""Beat's side of schedules: workflow files in, ``ScheduleSpec``s and runs out.

Every tick re-reads ``TREASURY_WORKFLOWS_DIR``, so added, changed and removed files take
effect without a restart. Reading a few small files is cheap; validating them is not, so the
result is cached per (file, content digest) and a file is validated again only when its bytes
change. A file that fails validation is reported as ``(file, message)``: the scheduler audits
it once per distinct message and skips the schedule it used to define, while every other
schedule keeps firing.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from treasury.audit import append_event
from treasury.clock import Clock
from treasury.errors import ConfigError, FileRefused, TreasuryError, WorkflowInvalid
from treasury.files import decode_text
from treasury.language.loader import read_workflow_bytes
from treasury.language.timing import CatchUp, ScheduleSpec
from treasury.schedules.tick import AuditSink, Scheduler, TickReport

log = logging.getLogger("treasury.beat")

SCHEDULER_ACTOR = "scheduler"
WORKFLOW_SUFFIXES = (".yaml", ".yml")


@dataclass
class _Entry:
    """What one version (digest) of one file amounts to."""

    digest: str
    loaded: Any | None = None  # a validated LoadedWorkflow with a schedule block
    spec: ScheduleSpec | None = None  # its schedule, built once per version
    error: str | None = None  # why the file was skipped
    stamp: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) when it was read


class ScheduleLoader:
    """Loads the schedules in a workflows folder, validating each file with ``service``.

    ``service`` is a ``RunService``: its ``load_and_check`` applies the same validation as
    ``treasury run`` (keys, approvers and policy included), and its ``create_run`` starts
    the scheduled runs.
    """

    def __init__(self, workflows_dir: Path, service: Any) -> None:
        self.workflows_dir = Path(workflows_dir)
        self.service = service
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _listing(self) -> list[tuple[str, os.stat_result | None]]:
        """The workflow files in the folder (not its subfolders), in name order, with their stat.

        One ``scandir`` pass: the file type comes from the listing and each file costs one
        ``stat``. A file removed between listing and ``stat`` comes back with ``None``.

        Raises:
            ConfigError: the folder does not exist or cannot be listed. Treating that as
                "no schedules" would retire every schedule because of a missing mount.
        """
        try:
            with os.scandir(self.workflows_dir) as it:
                entries = sorted((e for e in it if e.name.endswith(WORKFLOW_SUFFIXES)
                                  and not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the workflows folder {self.workflows_dir}: {exc.strerror or type(exc).__name__}",
                source="environment", field="TREASURY_WORKFLOWS_DIR",
            ) from None
        found: list[tuple[str, os.stat_result | None]] = []
        for e in entries:
            try:
                if not e.is_file():
                    continue
                st: os.stat_result | None = e.stat()
            except OSError:
                st = None  # removed between listing and reading: it is simply gone
            found.append((e.path, st))  # a string: 10,000 Path objects a tick cost ~50 ms
        return found

    def files(self) -> list[Path]:
        """The workflow files in the folder (not its subfolders), in name order.

        Raises:
            ConfigError: the folder cannot be read (see ``_listing``).
        """
        return [Path(path) for path, _ in self._listing()]

    def _entry(self, source: str, st: os.stat_result | None) -> _Entry | None:
        cached = self._cache.get(source)
        if st is None:
            return None  # removed between listing and reading: it is simply gone
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if cached is not None and cached.stamp == stamp:
            return cached  # unchanged since the last tick: no read, no hash, no validation
        try:
            data = read_workflow_bytes(source)  # the size limit applies while reading
        except WorkflowInvalid as exc:
            if not Path(source).exists():
                return None  # removed between listing and reading: it is simply gone
            return _Entry("", error=str(exc))
        digest = hashlib.sha256(data).hexdigest()
        if cached is not None and cached.digest == digest:
            cached.stamp = stamp
            return cached
        try:
            text = decode_text(data, source)
        except FileRefused as exc:
            entry = _Entry(digest, error=str(exc))
        else:
            try:
                loaded = self.service.load_and_check(text, source=source)
            except TreasuryError as exc:
                entry = _Entry(digest, error=str(exc))
            else:
                if loaded.spec.schedule is not None:
                    entry = _Entry(digest, loaded=loaded, spec=spec_of(loaded))
                else:
                    entry = _Entry(digest)
        entry.stamp = stamp
        self._cache[source] = entry
        return entry

    def load(self) -> tuple[list[ScheduleSpec], list[tuple[str, str]]]:
        """Every schedule in the folder and ``(file, message)`` for every file that is skipped.

        Raises:
            ConfigError: the folder cannot be read (see ``files``).
        """
        with self._lock:
            specs: list[ScheduleSpec] = []
            invalid: list[tuple[str, str]] = []
            seen: set[str] = set()
            for path, st in self._listing():
                entry = self._entry(path, st)
                if entry is None:
                    continue
                seen.add(path)
                if entry.error is not None:
                    invalid.append((path, entry.error))
                elif entry.spec is not None:
                    specs.append(entry.spec)
            for gone in set(self._cache) - seen:
                del self._cache[gone]
            return specs, invalid

    def start_run(self, conn: Connection, spec: ScheduleSpec, due_at: datetime) -> str:
        """The scheduler's ``StartRun``: insert the PENDING run for ``due_at`` inside ``conn``.

        The run records ``schedule=spec.name``, ``due_at`` and ``requested_by="scheduler"``.
        An approval step in the workflow makes it wait for approval like any other run.

        Raises:
            ConfigError: the file changed since ``spec`` was loaded (the next tick reloads it).
            ParameterError: the schedule's inputs do not fit the workflow.
        """
        with self._lock:
            entry = self._cache.get(spec.workflow_file)
        if entry is None or entry.loaded is None or entry.digest != spec.digest:
            raise ConfigError(f"changed since it was loaded; schedule {spec.name!r} fires on the next tick",
                              source=spec.workflow_file)
        run_id: str = self.service.create_run(conn, entry.loaded, dict(spec.inputs), requested_by=SCHEDULER_ACTOR,
                                              schedule=spec.name, due_at=due_at)
        return run_id


def spec_of(loaded: Any) -> ScheduleSpec:
    """The ``ScheduleSpec`` of a validated workflow with a ``schedule:`` block (named after the workflow)."""
    block = loaded.spec.schedule
    inputs: Mapping[str, Any] = dict(block.inputs)
    return ScheduleSpec(
        name=loaded.spec.name, cron=block.cron, timezone=block.timezone, catchup=CatchUp(block.catchup),
        inputs=inputs, workflow_file=loaded.source, digest=loaded.digest,
    )


def load_schedules(workflows_dir: Path, service: Any) -> tuple[list[ScheduleSpec], list[tuple[str, str]]]:
    """Load every workflow file in ``workflows_dir``: (schedules, [(file, message)] skipped).

    A one-off call; beat keeps a ``ScheduleLoader`` so unchanged files are not validated again.

    Raises:
        ConfigError: the folder cannot be read.
    """
    return ScheduleLoader(workflows_dir, service).load()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off for one tick.

    A tick over 10,000 schedules allocates rows and tuples by the ten thousand while the
    validated workflows of the cache (hundreds of thousands of objects) stay alive, so the
    collector's full passes kept re-scanning that cache: 220 of 550 ms per idle tick in
    ``benchmarks/scheduler_bench.py``. A tick is bounded and its garbage is freed by reference
    counting as it goes; whatever cycles it leaves are collected once the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _default_audit() -> AuditSink:
    hook: AuditSink = append_event
    return hook


class Beat:
    """One beat tick: load the workflow files, then fire what is due, once per due instant."""

    def __init__(self, engine: Engine, service: Any, workflows_dir: Path, *, clock: Clock,
                 audit: AuditSink | None = None, catchup_cap: int = 100) -> None:
        self.loader = ScheduleLoader(workflows_dir, service)
        self.scheduler = Scheduler(engine, start_run=self.loader.start_run, clock=clock, actor=SCHEDULER_ACTOR,
                                   audit=audit if audit is not None else _default_audit(), catchup_cap=catchup_cap)

    def tick(self) -> TickReport:
        """Fire due schedules; the report lists the runs created (PENDING, to be kicked).

        Raises:
            ConfigError: the workflows folder cannot be read (no schedule is touched).
        """
        with collector_paused():
            specs, invalid = self.loader.load()
            report = self.scheduler.tick(specs, invalid=invalid)
        for fired in report.fired:
            log.info("schedule %s fired for %s: run %s", fired.schedule, fired.due_at.isoformat(), fired.run_id)
        return report
