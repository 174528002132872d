"""Appends from several processes at once keep one linear, verifiable chain."""

from __future__ import annotations

import itertools
import multiprocessing
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.audit.appender import append_many
from treasury.audit import query_events, verify_chain
from treasury.audit.checkpoint_verify import verify_with_checkpoints
from treasury.audit.checkpoints import CheckpointStore
from treasury.audit.server_key import ServerKey

PROCESSES = 4


def _run_appenders(url: str, count: int, checkpoints: tuple[str, str, int] | None = None) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=append_many, args=(url, f"p{n}", count, start, checkpoints))
             for n in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES


def _check(engine: Engine, count: int, *, interleaved: bool) -> None:
    total = PROCESSES * count
    result = verify_chain(engine)
    assert (result.ok, result.count, result.head_seq) == (True, total, total), result.reason
    records = list(query_events(engine))
    assert [r.seq for r in records] == list(range(1, total + 1))
    assert Counter(r.actor for r in records) == {f"worker:p{n}": count for n in range(PROCESSES)}
    for n in range(PROCESSES):  # each process's own events are in its order
        assert [r.payload["i"] for r in records if r.actor == f"worker:p{n}"] == list(range(count))
    if interleaved:  # the appends really contended (SQLite's lock tends to let one writer run on)
        switches = sum(1 for a, b in itertools.pairwise(records) if a.actor != b.actor)
        assert switches > PROCESSES


@pytest.mark.postgres
def test_four_processes_append_one_chain_on_postgres(pg_url: str, pg_engine: Engine) -> None:
    _run_appenders(pg_url, 150)
    _check(pg_engine, 150, interleaved=True)


def test_four_processes_append_one_chain_on_sqlite(sqlite_url: str, sqlite_engine: Engine) -> None:
    _run_appenders(sqlite_url, 25)
    _check(sqlite_engine, 25, interleaved=False)


def _check_checkpoints(engine: Engine, folder: Path, total: int, every: int) -> None:
    store = CheckpointStore(folder)
    seqs = store.seqs()
    # one per N-event window at least (a transaction's first append anchors the head before it)
    assert len(seqs) >= total // every - 1, seqs
    assert not list(folder.glob(".*"))
    result, report = verify_with_checkpoints(engine, store)
    assert result.ok, result.reason
    assert report.count == len(seqs) and report.latest_seq == seqs[-1]
    hashes = {r.seq: r.hash for r in query_events(engine)}
    assert all(store.read(s).hash == hashes[s] for s in seqs)  # each names a committed link


@pytest.mark.postgres
def test_concurrent_appenders_write_consistent_checkpoints_on_postgres(
    pg_url: str, pg_engine: Engine, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    ServerKey(key, create=True).load()
    _run_appenders(pg_url, 100, (str(tmp_path / "cp"), str(key), 7))
    _check(pg_engine, 100, interleaved=True)
    _check_checkpoints(pg_engine, tmp_path / "cp", PROCESSES * 100, 7)


def test_concurrent_appenders_write_consistent_checkpoints_on_sqlite(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    ServerKey(key, create=True).load()
    _run_appenders(sqlite_url, 25, (str(tmp_path / "cp"), str(key), 7))
    _check(sqlite_engine, 25, interleaved=False)
    _check_checkpoints(sqlite_engine, tmp_path / "cp", PROCESSES * 25, 7)
