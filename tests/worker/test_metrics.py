"""A real prefork worker (two children) and beat serve metrics, /healthz and /readyz; JSON logs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.worker.conftest import TWO_TRANSFERS, Cluster, Worker, wait_for
from treasury.worker.process import build_worker_runtime

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("celery")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def _start_worker(cluster: Cluster, port: int, metrics_dir: Path | None, concurrency: int = 2) -> Worker:
    log = cluster.tmp / "metrics-worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "treasury.worker", "worker", "--pool=prefork", "-c",
           str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", cluster.queue,
           "-n", f"metrics-{cluster.queue}@%h", "-l", "DEBUG"]  # per-request lines are DEBUG
    env = {**cluster.env, "TREASURY_METRICS_PORT": str(port), "TREASURY_LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cluster.tmp, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    worker = Worker("metrics-worker", proc, log)
    cluster.workers.append(worker)
    wait_for(worker.ready, 60, "the worker to be ready", detail=cluster.diagnostics)
    return worker


@pytest.mark.parametrize("given_dir", [True, False], ids=["PROMETHEUS_MULTIPROC_DIR", "a-folder-of-its-own"])
def test_a_prefork_worker_sums_its_children_and_serves_health(cluster: Cluster, workflows_dir: Path,
                                                              given_dir: bool) -> None:
    port = _free_port()
    metrics_dir = cluster.tmp / "metrics"
    worker = _start_worker(cluster, port, metrics_dir if given_dir else None)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(url + "/healthz") == 200, 30, "/healthz", detail=worker.text)
    wrt = build_worker_runtime(cluster.settings, cluster.options, engine=cluster.engine)
    loaded = wrt.runtime.service.load_and_check(TWO_TRANSFERS, source=str(workflows_dir / "two-transfers.yaml"))
    runs = [wrt.runtime.service.start(loaded, {}, requested_by="alice") for _ in range(3)]
    for run_id in runs:
        wait_for(lambda r=run_id: cluster.run_state(r) == "SUCCEEDED", 60, f"run {run_id}",
                 detail=cluster.diagnostics)

    text = httpx.get(url + "/metrics", timeout=10).text
    # six transfer steps ran in the two children; the parent's /metrics adds their counts up
    assert _sample(text, "treasury_steps_total", operation="asset_transfer", outcome="SUCCEEDED") == 6, text
    # ...which both children counted into the multiprocess folder (one file per process)
    if given_dir:
        pids = {f.stem.rsplit("_", 1)[1] for f in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2, sorted(f.name for f in metrics_dir.iterdir())
    assert _sample(text, "treasury_rate_limit_weight_total", rate_class="transfer") >= 6
    assert _sample(text, "treasury_rate_limit_wait_seconds_count", rate_class="transfer") >= 6
    assert _sample(text, "treasury_runs", state="SUCCEEDED") == 3
    assert _sample(text, "treasury_execution_records", state="SUCCEEDED") == 6
    assert _sample(text, "treasury_execution_records", state="NEEDS_ATTENTION") == 0
    assert _sample(text, "treasury_audit_chain_length") > 20
    assert _sample(text, "treasury_database_up") == 1
    assert _sample(text, "treasury_rate_limit_budget_per_second", rate_class="transfer") == 1

    ready = httpx.get(url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert {c["name"]: c["status"] for c in ready.json()["checks"]}["redis"] == "ok"

    # JSON log lines from the children carry the step's ids
    lines = [json.loads(ln) for ln in worker.text().splitlines() if ln.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(ln) for ln in lines)
    posts = [ln for ln in lines if ln["logger"] == "httpx" and "POST" in ln["message"]
             and "assetTransfer" in ln["message"]]
    assert len(posts) == 6, worker.text()[-3000:]
    assert {ln["run_id"] for ln in posts} == set(runs)
    assert all(ln["operation"] == "asset_transfer" and ln["step_id"] in ("first", "second")
               and ln["client_order_id"].startswith("T" + ln["run_id"]) for ln in posts)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_readyz_fails_when_the_database_is_gone_and_beat_serves_too(cluster: Cluster) -> None:
    port = _free_port()
    beat = cluster.start_beat(TREASURY_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(url + "/healthz") == 200, 30, "beat's /healthz", detail=beat.text)
    assert httpx.get(url + "/readyz", timeout=10).status_code == 200
    text = httpx.get(url + "/metrics", timeout=10).text
    assert "treasury_runs" in text and "treasury_audit_chain_length" in text
    beat.kill9()

    bad_port = _free_port()
    bad = cluster.start_beat(TREASURY_METRICS_PORT=str(bad_port),
                             TREASURY_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:9/none")
    bad_url = f"http://127.0.0.1:{bad_port}"
    wait_for(lambda: _get(bad_url + "/healthz") == 200, 30, "beat's /healthz", detail=bad.text)
    ready = httpx.get(bad_url + "/readyz", timeout=30)
    assert ready.status_code == 503
    assert {c["name"]: c["status"] for c in ready.json()["checks"]}["database"] == "FAIL"
    assert _sample(httpx.get(bad_url + "/metrics", timeout=30).text, "treasury_database_up") == 0
