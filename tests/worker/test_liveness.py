"""A RUNNING run on a broker with no live worker says so in ``treasury show``: when a worker last
saw each step (the lease heartbeat) and that nobody consumes the queue (workers' check-ins)."""

from __future__ import annotations

import json
import os
import secrets
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.identities import signed_config_copy
from tests.worker.conftest import Cluster, wait_for
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.execution import client_id_for
from treasury.execution import records as R
from treasury.settings import Settings
from treasury.worker.liveness import Beacon, consumers

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
ONE_TRANSFER = """\
name: one-transfer
description: one internal transfer
steps:
  - id: pay
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "10"}
"""


def _desk_without_workers(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path, Settings]:
    """A queue of its own with no worker on it, a one-transfer workflow and settings for them."""
    queue = f"t-{secrets.token_hex(4)}"
    monkeypatch.setenv("TREASURY_QUEUE", queue)
    monkeypatch.setenv("TREASURY_BROKER_KEY_PREFIX", f"{queue}:")
    workflow = tmp_path / "one-transfer.yaml"
    workflow.write_text(ONE_TRANSFER)
    settings = Settings(config_dir=signed_config_copy(tmp_path / "config"),
                        database_url=f"sqlite:///{tmp_path / 'desk.db'}",
                        broker_url=redis_url, base_url="http://127.0.0.1:9")  # no worker: never called
    return queue, workflow, settings


def test_show_says_when_a_worker_last_saw_the_step_and_that_nobody_consumes(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, workflow, settings = _desk_without_workers(tmp_path, redis_url, monkeypatch)
    app = AppContext(settings=settings)
    runner = CliRunner()

    def cli_(*args: str) -> str:
        result = runner.invoke(cli, list(args), obj=app, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run_id = json.loads(cli_("run", str(workflow), "--as", "erin", "--json"))["id"]
    out = cli_("show", run_id)
    assert "step pay: no worker has picked it up since it was dispatched at" in out
    assert f"no worker is consuming queue {queue!r} (none has checked in within 30 s)" in out

    # a worker took the step, renewed its lease for a while, and died 40 s ago
    cid = client_id_for(run_id, "pay")
    seen = app.clock.now() - timedelta(seconds=40)
    with app.engine().begin() as conn:
        R.insert_prepared(conn, run_id=run_id, step_id="pay", operation="asset_transfer", key_profile="transfers",
                          legs=[R.NewRecord(cid, 0, {"clientOrderId": cid})], at=seen - timedelta(seconds=30))
        R.claim(conn, R.load(conn, cid), owner="worker:deadhost:4242#ab12cd34", at=seen,  # type: ignore[arg-type]
                lease_seconds=20)
    out = cli_("show", run_id)
    assert f"step pay: worker:deadhost:4242 last saw it at {seen:%H:%M:%S} UTC (40 s ago); its lease ran out " \
           f"at {seen + timedelta(seconds=20):%H:%M:%S} UTC" in out
    assert f"no worker is consuming queue {queue!r}" in out

    # a worker checks in for the queue: it is consuming, the step's own history stays
    beacon = Beacon(redis_url, "w1@host", [queue], prefix=f"{queue}:")
    beacon.check_in()
    shown = json.loads(cli_("show", run_id, "--json"))
    workers = shown["workers"]
    assert workers["queue"] == queue and list(workers["consumers"]) == ["w1@host"]
    assert workers["steps"][0]["lease_owner"] == "worker:deadhost:4242" and not workers["steps"][0]["lease_live"]
    assert any(m.startswith(f"1 worker(s) consuming queue {queue!r}: w1@host") for m in workers["messages"])
    assert not any("no worker is consuming" in m for m in workers["messages"])
    beacon.stop()
    assert consumers(redis_url, queue, prefix=f"{queue}:", now=app.clock.time()) == {}


def test_run_wait_on_a_broker_with_no_worker_says_what_it_waits_for(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, workflow, settings = _desk_without_workers(tmp_path, redis_url, monkeypatch)
    result = CliRunner().invoke(cli, ["run", str(workflow), "--as", "erin", "--wait", "--timeout", "1", "--json"],
                                obj=AppContext(settings=settings), catch_exceptions=False)
    data = json.loads(result.stdout)  # stdout is the JSON alone
    assert data["state"] == "RUNNING"
    assert result.stderr.splitlines() == [
        f"waiting: run {data['id']}: waiting for the run to finish (RUNNING), step pay waits for a worker; "
        f"no worker is consuming queue {queue!r}, until {result.stderr.split('until ')[1].strip()}"]
    assert result.stderr.rstrip().endswith("UTC at the latest")


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.xdist_group("celery")
def test_a_worker_checks_in_while_it_runs_and_leaves_on_shutdown(cluster: Cluster, broker_url: str) -> None:
    (w1,) = cluster.start_ready("w1")
    prefix = f"{cluster.queue}:"
    import time

    names = wait_for(lambda: consumers(broker_url, cluster.queue, prefix=prefix, now=time.time()), 15,
                     "the worker to check in")
    assert list(names) == [f"w1-{cluster.queue}@{os.uname().nodename}"]
    os.kill(w1.proc.pid, signal.SIGTERM)
    assert w1.proc.wait(timeout=30) == 0
    assert consumers(broker_url, cluster.queue, prefix=prefix, now=time.time()) == {}
