"""The Celery app's delivery settings, the messages it sends, and the commands that start it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import inspect, text

from treasury.broker.app import (
    BEAT_TICK,
    EXECUTE_STEP,
    KICK_RUN,
    NOTIFY,
    NOTIFY_ENTRY,
    SWEEP,
    SWEEP_ENTRY,
    TICK_ENTRY,
    celery_config,
    load_options,
)
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.errors import ConfigError
from treasury.settings import Settings
from treasury.store.db import make_engine
from treasury.worker import CeleryDispatcher, WorkerOptions, create_app
from treasury.worker.process import _SCHEMA_LOCK

SECRET_DB = "postgresql+psycopg://treasury:db-canary-7f3a@db.internal/treasury"


def test_delivery_settings_follow_the_reliability_baseline() -> None:
    conf = celery_config(Settings(broker_url="redis://127.0.0.1:6379/14"), WorkerOptions())
    assert (conf["task_acks_late"], conf["task_reject_on_worker_lost"], conf["worker_prefetch_multiplier"]) == (
        True, True, 1)
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["task_ignore_result"] is True and conf["result_backend"] is None
    assert conf["beat_schedule"][TICK_ENTRY]["schedule"] == 15.0
    assert conf["beat_schedule"][SWEEP_ENTRY]["schedule"] == 15.0  # a dead worker is noticed within 60 s


def test_tasks_never_retry_on_their_own() -> None:
    app = create_app(Settings(broker_url="redis://127.0.0.1:6379/14"), WorkerOptions())
    for name in (EXECUTE_STEP, KICK_RUN, BEAT_TICK, SWEEP):
        task = app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
        assert not getattr(task, "autoretry_for", ()), name  # one retry layer: tenacity in the step


def test_each_app_runs_its_own_task_callables() -> None:
    # Shared tasks would hand the second app the first app's closures, and so its runtime.
    first = create_app(Settings(broker_url="redis://127.0.0.1:6379/14"), WorkerOptions())
    second = create_app(Settings(broker_url="redis://127.0.0.1:6379/14"), WorkerOptions())
    for name in (EXECUTE_STEP, KICK_RUN, BEAT_TICK, SWEEP):
        mine, theirs = second.tasks[name], first.tasks[name]
        assert mine is not theirs and mine.app is second, name
        captured = [cell.cell_contents for cell in mine.run.__closure__ or ()]
        assert second in captured and first not in captured, name


def test_options_refuse_a_visibility_timeout_below_twice_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_VISIBILITY_TIMEOUT", "60")
    with pytest.raises(ConfigError, match=r"TREASURY_VISIBILITY_TIMEOUT: 60s is below twice"):
        load_options()
    monkeypatch.setenv("TREASURY_ALLOW_SHORT_VISIBILITY", "true")
    assert load_options().visibility_timeout == 60


def test_a_step_message_carries_ids_only(redis_url: str) -> None:
    settings = Settings(broker_url=redis_url, database_url=SECRET_DB, base_url="http://127.0.0.1:1")
    dispatcher = CeleryDispatcher(settings, options=WorkerOptions(queue="ids-only"))
    dispatcher.dispatch("r0123456789a", "pay")
    raw = redis.Redis.from_url(redis_url).lpop("ids-only")
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == EXECUTE_STEP
    assert message["headers"]["id"].startswith("step-r0123456789a-pay-")
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == (["r0123456789a", "pay"], {})
    assert b"canary" not in raw and b"amount" not in raw.lower()


def test_a_failed_publish_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # the state change is committed already; the sweeper re-dispatches from the database
    settings = Settings(broker_url="redis://127.0.0.1:1/0", base_url="http://127.0.0.1:1")
    dispatcher = CeleryDispatcher(settings, options=WorkerOptions())
    dispatcher.app.conf.task_publish_retry = False
    dispatcher.dispatch("r0123456789a", "pay")
    assert "the sweeper will re-dispatch it" in caplog.text


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_refuse_to_start_without_a_broker_or_an_exchange_url(command: str) -> None:
    def run(**settings: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, [command], obj=AppContext(settings=Settings(**settings)))
        exc = result.exception
        return (exc.exit_code, str(exc)) if isinstance(exc, ConfigError) else (result.exit_code, result.output)

    code, message = run()
    assert code == 2 and "TREASURY_BROKER_URL: is not set" in message
    code, message = run(broker_url="redis://127.0.0.1:6379/14")
    assert code == 2 and "TREASURY_BASE_URL" in message


def test_celery_finds_the_app_in_the_package(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(TREASURY_BROKER_URL="redis://127.0.0.1:6379/14", TREASURY_BASE_URL="http://127.0.0.1:1",
               TREASURY_QUEUE="found-it")
    code = ("from celery.app.utils import find_app\n"
            "import treasury.worker.app\n"  # even with the submodule imported, -A treasury.worker works
            "app = find_app('treasury.worker')\n"
            "print(type(app).__name__, app.conf.task_default_queue, sorted(app.tasks)[-5:])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split(" ", 2)[:2] == ["TreasuryCelery", "found-it"]
    assert all(name in out for name in (EXECUTE_STEP, KICK_RUN, BEAT_TICK, SWEEP, NOTIFY))


def test_worker_processes_create_the_schema_one_at_a_time(pg_url: str, tmp_path: Path) -> None:
    # every worker child and beat builds its runtime at once on PostgreSQL: without the
    # advisory lock some fail with "relation already exists"
    code = ("import sys\nfrom treasury.settings import Settings\nfrom treasury.worker.process import schema_engine\n"
            "schema_engine(Settings(database_url=sys.argv[1])).dispose()\nprint('ok')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(out.strip().endswith("ok") for out in outputs), outputs
    engine = make_engine(pg_url)
    try:
        assert {"runs", "steps", "schedule_state"} <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:  # and the lock was given back
            assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SCHEMA_LOCK}).scalar() is True
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK})
    finally:
        engine.dispose()


@pytest.mark.parametrize(("command", "ready"), [("worker", " ready."), ("beat", "beat: Starting")])
def test_worker_and_beat_commands_start_on_a_real_broker_and_stop_on_sigterm(
    redis_url: str, tmp_path: Path, command: str, ready: str
) -> None:
    import signal
    import threading
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(TREASURY_BROKER_URL=redis_url, TREASURY_BASE_URL="http://127.0.0.1:1",
               TREASURY_DATABASE_URL=f"sqlite:///{tmp_path / 't.db'}", TREASURY_QUEUE=f"smoke-{command}",
               TREASURY_CONFIG_DIR=str(Path(__file__).resolve().parents[2] / "config"))
    extra = ["-P", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat"] if command == "worker" \
        else ["--schedule", str(tmp_path / "beat-schedule")]
    with subprocess.Popen([sys.executable, "-m", "treasury.cli.main", command, *extra], env=env, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines: list[str] = []
        out = proc.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not any(ready in line for line in lines):
                assert proc.poll() is None, "".join(lines)[-3000:]
                assert time.monotonic() < deadline, f"no {ready!r} within 60 s:\n" + "".join(lines)[-3000:]
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            assert proc.wait(timeout=30) == 0, "".join(lines)[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            reader.join(timeout=10)


def test_beat_entries_are_named_as_internal_not_like_a_workflow() -> None:
    """Beat logs "Sending due task <entry> (<task>)": an entry named like a workflow
    (``treasury-sweep``, which is also a demo workflow) reads as that workflow firing."""
    import re

    from treasury.language.spec import NAME_PATTERN

    entries = celery_config(Settings(broker_url="redis://127.0.0.1:6379/14"), WorkerOptions())["beat_schedule"]
    assert set(entries) == {TICK_ENTRY, SWEEP_ENTRY, NOTIFY_ENTRY}
    for name in entries:
        assert name.startswith("internal: ") and not re.fullmatch(NAME_PATTERN, name)
