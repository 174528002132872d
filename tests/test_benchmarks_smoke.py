"""The benchmark scripts still run: each one with ``--quick`` (seconds, not minutes).

The scripts are started side by side and their JSON results read back. The figures of a
quick run mean little, so only what must hold at any size is checked: the shared limiter
never draws a 429, every run finishes, the fault campaign neither duplicates nor loses
money and its audit chain verifies.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _unavailable

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _require_services() -> None:
    for what, port in (("Redis", 6379), ("PostgreSQL", 5432)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            _unavailable(f"{what} at 127.0.0.1:{port}", exc)


def _run_side_by_side(tmp_path: Path, scripts: dict[str, list[str]], timeout: float = 120) -> dict[str, Any]:
    """Start every script at once; return name -> parsed JSON result. Fails with the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    procs = {}
    for name, argv in scripts.items():
        out = tmp_path / f"{name}.json"
        procs[name] = (out, subprocess.Popen([sys.executable, *argv, "--out", str(out)], env=env, cwd=BENCH.parent,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    results = {}
    for name, (out, proc) in procs.items():
        text, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{text.decode(errors='replace')[-4000:]}"
        results[name] = json.loads(out.read_text())
        assert results[name]["machine"]["cores"] >= 1
    return results


@pytest.mark.slow
@pytest.mark.xdist_group("benchmarks-inline")  # never beside the sweep: see below
def test_benchmarks_without_celery_run_quick(tmp_path: Path) -> None:
    _require_services()
    got = _run_side_by_side(tmp_path, {
        "ratelimit": [str(BENCH / "ratelimit_bench.py"), "--quick"],
        "batch": [str(BENCH / "batch_bench.py"), "--quick"],
        "scheduler": [str(BENCH / "scheduler_bench.py"), "--quick"],
        "engine": [str(BENCH / "engine_bench.py"), "--quick"],
        "memory": [str(BENCH / "memory_bench.py"), "--quick"],
    })
    ours = [r for r in got["ratelimit"]["rows"] if r["limiter"] == "treasury"]
    assert ours and all(r["total_429"] == 0 and r["total_418"] == 0 and r["order_admitted"] > 0 for r in ours)
    assert all(r["orders_failed"] == 0 and r["orders_accepted"] > 0 for r in got["batch"]["rows"])
    assert got["scheduler"]["runs_created"] == got["scheduler"]["runs_expected"] > 0
    inline = got["engine"]["results"][0]
    assert inline["plain"]["runs_succeeded"] == inline["plain"]["runs"]
    assert got["memory"]["simulator"]["effects"] == 2000
    assert got["memory"]["audit_cli"]["all"]["peak_rss_mb"] > 0


@pytest.mark.slow
@pytest.mark.xdist_group("benchmarks-inline")
def test_sweep_benchmark_runs_quick(tmp_path: Path) -> None:
    """Alone: its threads beside the others would starve the batch benchmark's short rows."""
    _require_services()
    got = _run_side_by_side(tmp_path, {"sweep": [str(BENCH / "sweep_bench.py"), "--quick"]})["sweep"]
    for sweep in (got["per_key"], got["shared_key"]):
        assert sweep["answers_429"] == sweep["answers_418"] == 0, sweep
        assert sweep["duplicates"] == sweep["lost"] == sweep["failed_with_effect"] == 0, sweep
        assert sweep["outcomes"] == {"SUCCEEDED": sweep["transfers"]} and sweep["master_balance_ok"], sweep
    assert got["per_key"]["keys"] == 10 and got["shared_key"]["keys"] == 1


@pytest.mark.slow
@pytest.mark.celery
@pytest.mark.xdist_group("celery")
def test_benchmarks_with_celery_run_quick(tmp_path: Path) -> None:
    _require_services()
    got = _run_side_by_side(tmp_path, {
        "approval": [str(BENCH / "approval_bench.py"), "--quick"],
        "campaign": [str(BENCH / "fault_campaign.py"), "--quick"],
        "celery_baseline": [str(BENCH / "ratelimit_bench.py"), "--duration", "2", "--processes", "1",
                            "--limiters", "celery"],
    })
    assert got["approval"]["missing"] == 0 and got["approval"]["arrived"] == 5
    campaign = got["campaign"]
    assert campaign["duplicates"] == 0 and campaign["lost"] == 0, campaign
    assert campaign["audit_chain_ok"] is True
    assert campaign["answers_418"] == 0
    row = got["celery_baseline"]["rows"][0]
    assert row["limiter"] == "celery" and row["order_admitted"] + row["order_429"] > 0


def test_benchmark_redis_databases_are_apart_from_the_suites() -> None:
    """A test flushes its worker's database before it starts; a benchmark run beside the suite
    must not lose its limiter windows to that (it did: batch legs drew 429s)."""
    import importlib.util

    from tests import conftest

    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = common  # its dataclasses look their module up while being built
    try:
        spec.loader.exec_module(common)
    finally:
        del sys.modules[spec.name]
    suite = set(conftest._WORKER_DB.values()) | {9, 13, 14}
    assert len(set(common.REDIS_DB.values())) == len(common.REDIS_DB)
    assert not set(common.REDIS_DB.values()) & suite
