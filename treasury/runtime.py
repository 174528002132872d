"""Wiring: turn ``Settings`` into a working run service (engine, exchange, executor, dispatcher).

This is the only place that decides *which* implementations are used: the in-process
simulator or a URL, an inline dispatcher or Celery, a local or a Redis rate limiter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from treasury.clock import Clock, SystemClock
from treasury.settings import Settings
from treasury.store.db import create_schema, make_engine
from treasury.workflow.service import Dispatcher, InlineDispatcher, RunContext, RunService


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock
    service: RunService
    executor: Any
    client: Any
    simulator: Any | None


def load_config(settings: Settings) -> tuple[dict[str, Any], Any, Any | None]:
    """Key profiles, the people registry and policy from the config folder (absent files mean none).

    Raises:
        ConfigError: a file is invalid; an old approvers.yaml without people.yaml; in
            production, a person without a credential.
    """
    from treasury.keys import load_key_specs
    from treasury.people.registry import People, check_production, load_people
    from treasury.settings import Environment

    keys = load_key_specs(settings.keys_file) if settings.keys_file.exists() else {}
    if settings.people_file.exists() or settings.people_file.with_name("approvers.yaml").exists():
        approvers = load_people(settings.people_file)
    else:
        approvers = People(users={}, source=str(settings.people_file))
    if settings.env == Environment.PRODUCTION:
        check_production(approvers)
    policy = None
    if settings.policy_file.exists():
        from treasury.policy import load_policy

        policy = load_policy(settings.policy_file)
    return keys, approvers, policy


def demo_keyring(settings: Settings) -> Any | None:
    """The demo keys that sign for people: only in the simulator environment, else None."""
    from treasury.settings import Environment

    if settings.env != Environment.SIMULATOR:
        return None
    from treasury.people.keyring import load_keyring

    return load_keyring(settings.config_dir)


def people_watch(settings: Settings, people: Any) -> Any | None:
    """A watch on people.yaml, when there is one (long-running processes reload it)."""
    if not settings.people_file.exists():
        return None
    from treasury.people.watch import PeopleWatch

    return PeopleWatch(settings.people_file, people)


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    simulator: Any | None = None,
    dispatcher: Dispatcher | None = None,
    http: Any | None = None,
) -> Runtime:
    """Build everything a command or a worker needs, from settings passed in explicitly."""
    from treasury.exchange.factory import build_client, load_profile
    from treasury.execution import ExecutionSettings, StepExecutor

    settings.check()
    clock = clock or SystemClock()
    if engine is None:
        engine = make_engine(settings.database_url)
        create_schema(engine)
    keys, approvers, policy = load_config(settings)
    if simulator is None and settings.exchange_url() is None:
        from treasury.exchange.factory import build_simulator

        simulator = build_simulator(settings, clock)  # persisted next to a SQLite file database
    from treasury.audit import append_event

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
        settings=ExecutionSettings(settle_seconds=settings.settle_seconds,
                                   deadline_seconds=settings.reconcile_deadline_seconds,
                                   lease_seconds=settings.lease_seconds),
    )
    if dispatcher is None:
        if settings.broker_url is not None:
            from treasury.worker.dispatch import CeleryDispatcher

            dispatcher = CeleryDispatcher(settings)
        else:
            dispatcher = InlineDispatcher()
    from treasury.policy.watch import PolicyWatch

    ctx = RunContext(keys=keys, approvers=approvers, policy=policy, executor=executor,
                     step_start_limit=settings.step_start_limit,
                     dispatcher=dispatcher, clock=clock, policy_watch=PolicyWatch(settings.policy_file, policy),
                     keyring=demo_keyring(settings), decision_max_age=settings.decision_max_age,
                     workflows_dir=settings.workflows_dir, people_watch=people_watch(settings, approvers))
    service = RunService(engine, ctx)
    return Runtime(settings=settings, engine=engine, clock=clock, service=service, executor=executor,
                   client=client, simulator=simulator)
