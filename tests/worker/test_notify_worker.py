"""Beat sends the notification task and a real worker delivers the outbox to a local receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.notify.receiver import Receiver
from tests.worker.conftest import Cluster, wait_for
from treasury.audit import append_event

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("celery")]

SECRET = "worker-notify-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode()).start()
    yield r
    r.stop()


def test_beat_and_a_worker_deliver_notifications(cluster: Cluster, config_dir: Path, receiver: Receiver) -> None:
    (config_dir / "notify.yaml").write_text(
        f"channels:\n  ops: {{type: webhook, url: '{receiver.url}/hook', secret_env: TREASURY_TEST_HOOK_SECRET}}\n"
        "routes:\n  - {events: ['*'], channels: [ops]}\n")
    env = {"TREASURY_TEST_HOOK_SECRET": SECRET, "TREASURY_NOTIFY_INTERVAL": "0.5"}
    cluster.start_ready("w1", **env)
    cluster.start_beat(**env)
    with cluster.engine.begin() as conn:
        banned = append_event(conn, type="exchange.banned", actor="system", at=datetime.now(UTC),
                              payload={"reason": "HTTP 418 on asset_transfer"})
    wait_for(lambda: receiver.deduplicated("/hook"), 30, "the notification", detail=cluster.diagnostics)
    got = receiver.deduplicated("/hook")
    assert list(got) == [f"audit-{banned.seq}"] and receiver.bad_signatures == 0
    assert got[f"audit-{banned.seq}"].json()["type"] == "exchange.banned"
    assert all(SECRET not in w.text() for w in cluster.workers)
    assert os.environ.get("TREASURY_TEST_HOOK_SECRET") is None
