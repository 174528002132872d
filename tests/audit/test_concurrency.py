"""Appends from several processes at once keep one linear, verifiable chain."""

from __future__ import annotations

import itertools
import multiprocessing
from collections import Counter

import pytest
from sqlalchemy import Engine

from tests.audit.appender import append_many
from treasury.audit import query_events, verify_chain

PROCESSES = 4


def _run_appenders(url: str, count: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=append_many, args=(url, f"p{n}", count, start)) for n in range(PROCESSES)]
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
