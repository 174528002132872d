"""What one plain money-moving step costs the database, counted so that a regression fails.

A listener on ``before_cursor_execute`` sees every statement SQLAlchemy sends: on SQLite that
includes our ``BEGIN IMMEDIATE`` and the ``PRAGMA synchronous`` of the commit that guards the
send; on PostgreSQL psycopg sends BEGIN and COMMIT itself, so they are not seen (each
transaction costs those two round trips on top). The budget is what the step costs now: it
may only go down.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

from treasury.models import ExecState, StepState

from .harness import effects, make_world

# statements per plain transfer step, through the executor alone (no policy)
BUDGET = {"sqlite": 15, "postgresql": 10}
TRANSACTIONS = 3  # PREPARED (leased), SENDING (durable), the answer


class Statements:
    """Every statement (and transaction) an engine sends while counting."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[str] = []
        self.commits = 0

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def _commit(self, _conn: Any) -> None:
        self.commits += 1


def test_a_plain_transfer_step_stays_within_its_statement_budget(engine: Engine) -> None:
    world = make_world(engine)
    req = world.request("asset_transfer")
    with Statements(engine) as counted:
        out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED and effects(world.sim.state(), out.client_ids[0]) == 1
    dialect = engine.dialect.name
    listing = "\n".join(counted.seen)
    assert len(counted.seen) <= BUDGET[dialect], f"{len(counted.seen)} statements:\n{listing}"
    assert counted.commits <= TRANSACTIONS, listing
    # the audit trail of the step is whole: every transition with its events
    types = [e["type"] for e in world.events(run_id=req.run_id)]
    assert types == ["execution.state", "request.sent", "execution.state", "response.received",
                     "execution.state"]
    with engine.connect() as conn:
        from treasury.execution import records as R

        rec = R.load(conn, out.client_ids[0])
    assert rec is not None and rec.state is ExecState.SUCCEEDED
    assert rec.lease_owner is None and rec.lease_until is None  # the last change gave the lease up


def test_only_the_commit_that_guards_the_send_runs_with_synchronous_full(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    arrived: list[int] = []  # how many statements had run when the request reached the exchange
    handle = world.sim.handle
    with Statements(sqlite_engine) as counted:
        def spying(request: Any) -> Any:
            arrived.append(len(counted.seen))
            return handle(request)

        world.sim.handle = spying  # type: ignore[method-assign]
        out = world.executor.execute(world.request("withdraw"))
    assert out.state is StepState.SUCCEEDED and len(arrived) == 1
    seen = counted.seen
    fulls = [i for i, s in enumerate(seen) if s == "PRAGMA synchronous=FULL"]
    assert len(fulls) == 1, seen
    # FULL is set just before the transaction that writes SENDING (with request.sent), and
    # that transaction is over before the request leaves
    start = fulls[0] + 1
    assert seen[start] == "BEGIN IMMEDIATE"
    end = next((i for i in range(start + 1, len(seen)) if seen[i] == "BEGIN IMMEDIATE"), len(seen))
    guarded = seen[start:end]
    assert any(s.startswith("UPDATE execution_records SET state") for s in guarded), guarded
    assert any(s.startswith("INSERT INTO audit_events") for s in guarded), guarded
    assert end <= arrived[0]
    # no other transaction asks for FULL, and the pooled connection is back at NORMAL
    assert not any(s.startswith("PRAGMA synchronous") for s in seen[:fulls[0]] + seen[start:])
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_sqlite_connections_run_wal_with_synchronous_normal(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
