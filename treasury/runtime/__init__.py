"""Wiring: turn ``Settings`` into a working run service (engine, exchange, executor, dispatcher).

This is the only place that decides *which* implementations are used: the in-process
simulator or a URL, an inline dispatcher or Celery, a local or a Redis rate limiter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from treasury.audit import append_event
from treasury.audit.anchoring import Checkpointer, install, installed
from treasury.audit.checkpoints import CheckpointStore
from treasury.audit.server_key import ServerKey
from treasury.clock import Clock, SystemClock
from treasury.errors import ConfigError
from treasury.execution import ExecutionSettings, StepExecutor
from treasury.execution.progress import NO_PROGRESS
from treasury.keys import load_key_specs
from treasury.people.credentials import people_with_passkeys
from treasury.people.keyring import load_keyring
from treasury.people.registry import People, check_production, load_people
from treasury.people.watch import PeopleWatch
from treasury.policy.model import check_environment, load_policy
from treasury.policy.watch import PolicyWatch
from treasury.runs.service import Dispatcher, InlineDispatcher, RunContext, RunService
from treasury.runtime.exchange import build_client, build_simulator, load_profile
from treasury.schema import create_schema
from treasury.settings import Environment, Settings
from treasury.store.db import make_engine


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock
    service: RunService
    executor: Any
    client: Any
    simulator: Any | None
    checkpointer: Any | None = None  # treasury.audit.anchoring.Checkpointer


def checkpoint_dir(settings: Settings, engine: Engine) -> Path | None:
    """Where the audit checkpoints live, or None when this database has no such place.

    ``TREASURY_CHECKPOINT_DIR`` wins; otherwise a SQLite file database keeps them beside it
    (``treasury.db.checkpoints/``); any other database has none outside production.

    Raises:
        ConfigError: in production without ``TREASURY_CHECKPOINT_DIR``.
    """
    if settings.checkpoint_dir is not None:
        return settings.checkpoint_dir
    if settings.env is Environment.PRODUCTION:
        raise ConfigError("production needs a checkpoint directory that the database's owner cannot "
                          "rewrite (audit anchoring)", source="environment", field="TREASURY_CHECKPOINT_DIR")
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.checkpoints")


def server_key_file(settings: Settings, folder: Path) -> Path:
    """The server key: ``TREASURY_SERVER_KEY_FILE``, else ``<checkpoint dir>.key`` (beside the
    directory, never in it: the directory is public).

    Raises:
        ConfigError: in production without ``TREASURY_SERVER_KEY_FILE``.
    """
    if settings.server_key_file is not None:
        return settings.server_key_file
    if settings.env is Environment.PRODUCTION:
        raise ConfigError("production needs the server's Ed25519 key, which signs audit checkpoints",
                          source="environment", field="TREASURY_SERVER_KEY_FILE")
    return folder.with_name(folder.name + ".key")


def attach_checkpointer(settings: Settings, engine: Engine, clock: Clock) -> Any | None:
    """Install audit checkpointing on ``engine`` (once); returns the Checkpointer, or None.

    Raises:
        ConfigError: see ``checkpoint_dir`` and ``server_key_file``.
    """

    existing = installed(engine)
    if existing is not None:
        return existing
    folder = checkpoint_dir(settings, engine)
    if folder is None:
        return None
    production = settings.env is Environment.PRODUCTION
    key = ServerKey(server_key_file(settings, folder), create=not production, production=production)
    checkpointer = Checkpointer(CheckpointStore(folder), key,
                                clock=clock, every_events=settings.checkpoint_every_events,
                                every_seconds=settings.checkpoint_every_seconds)
    install(engine, checkpointer)
    return checkpointer


def open_engine(settings: Settings, clock: Clock) -> Engine:
    """The database engine with the schema created and audit checkpointing installed."""
    engine = make_engine(settings.database_url)
    create_schema(engine)
    attach_checkpointer(settings, engine, clock)
    return engine


def passkey_holders(settings: Settings) -> set[str]:
    """The people with an enrolled passkey (none while the database has no passkeys table yet)."""
    from sqlalchemy import inspect
    from sqlalchemy.pool import NullPool


    engine = make_engine(settings.database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("passkeys"):
                return set()
            return people_with_passkeys(conn)
    finally:
        engine.dispose()


def load_config(settings: Settings, *, require_credentials: bool = True) -> tuple[dict[str, Any], Any, Any | None]:
    """Key profiles, the people registry and policy from the config folder.

    An absent keys or people file means none. An absent policy file gives ``None``: reads
    still work, but the run service refuses every money-moving step until there is one
    (``PolicyWatch``); ``policy: none`` is the explicit opt-out, in the simulator only.

    Raises:
        ConfigError: a file is invalid, or says ``policy: none`` outside the simulator; an old
            approvers.yaml without people.yaml; in production, a person without a credential
            (an SSH key in people.yaml or an enrolled passkey), unless ``require_credentials``
            is False (inviting someone to enrol their first passkey).
    """

    keys = load_key_specs(settings.keys_file) if settings.keys_file.exists() else {}
    if settings.people_file.exists() or settings.people_file.with_name("approvers.yaml").exists():
        approvers = load_people(settings.people_file)
    else:
        approvers = People(users={}, source=str(settings.people_file))
    if settings.env == Environment.PRODUCTION and require_credentials:
        check_production(approvers, passkey_holders(settings))
    policy = None
    if settings.policy_file.exists():

        policy = check_environment(load_policy(settings.policy_file), settings.env.value)
    return keys, approvers, policy


def demo_keyring(settings: Settings) -> Any | None:
    """The demo keys that sign for people: only in the simulator environment, else None."""

    if settings.env != Environment.SIMULATOR:
        return None

    return load_keyring(settings.config_dir)


def people_watch(settings: Settings, people: Any) -> Any | None:
    """A watch on people.yaml, when there is one (long-running processes reload it)."""
    if not settings.people_file.exists():
        return None

    return PeopleWatch(settings.people_file, people)


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    simulator: Any | None = None,
    dispatcher: Dispatcher | None = None,
    http: Any | None = None,
    progress: Any | None = None,
) -> Runtime:
    """Build everything a command or a worker needs, from settings passed in explicitly.

    ``progress``: a ``treasury.execution.progress.ProgressListener`` told what each step waits
    for (the CLI's display); None tells nobody.
    """

    settings.check()
    clock = clock or SystemClock()
    if engine is None:
        engine = open_engine(settings, clock)

    checkpointer = installed(engine)
    if checkpointer is None and settings.env is Environment.PRODUCTION:
        checkpointer = attach_checkpointer(settings, engine, clock)  # never without anchoring
    if checkpointer is not None:
        checkpointer.ready()  # a missing key or a directory of another key fails here, not mid-run
    keys, approvers, policy = load_config(settings)
    if simulator is None and settings.exchange_url() is None:

        simulator = build_simulator(settings, clock)  # persisted next to a SQLite file database

    # the halt guard records bans and suspensions in the database (they outlive this process)
    # and audits them, alongside the rate limiter that every call passes through
    client = build_client(settings, clock=clock, simulator=simulator, http=http, engine=engine, audit=append_event)
    profiles: dict[str, Any] = {}
    lock = threading.Lock()

    def clients(name: str) -> tuple[Any, Any]:
        with lock:
            if name not in profiles:
                profiles[name] = load_profile(settings, name)
        return client, profiles[name]


    executor = StepExecutor(
        engine, clients=clients, clock=clock, policy=policy,
        progress=progress if progress is not None else NO_PROGRESS,
        settings=ExecutionSettings(settle_seconds=settings.settle_seconds,
                                   deadline_seconds=settings.reconcile_deadline_seconds,
                                   lease_seconds=settings.lease_seconds,
                                   renew_seconds=settings.lease_seconds / 4),
    )
    if dispatcher is None:
        if settings.broker_url is not None:
            # Celery is imported only when a broker is configured (CLI start-up speed)
            from treasury.broker.dispatch import CeleryDispatcher

            dispatcher = CeleryDispatcher(settings)
        else:
            dispatcher = InlineDispatcher()

    watch = PolicyWatch(settings.policy_file, policy, env=settings.env.value)
    ctx = RunContext(keys=keys, approvers=approvers, policy=policy, executor=executor,
                     step_start_limit=settings.step_start_limit,
                     dispatcher=dispatcher, clock=clock, policy_watch=watch,
                     keyring=demo_keyring(settings), decision_max_age=settings.decision_max_age,
                     workflows_dir=settings.workflows_dir, people_watch=people_watch(settings, approvers))
    service = RunService(engine, ctx)
    return Runtime(settings=settings, engine=engine, clock=clock, service=service, executor=executor,
                   client=client, simulator=simulator, checkpointer=checkpointer)
