"""``treasury audit verify`` records its outcome, and a broken chain is notified once per break."""

from __future__ import annotations

import click
from click.testing import CliRunner
from sqlalchemy import Engine, select

from tests.audit.helpers import disable_guards, make_run, seed
from treasury.audit.outbox import notify_outbox
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.clock import ManualClock
from treasury.monitoring.marks import get_mark
from treasury.observe.tables import AUDIT_VERIFY
from treasury.settings import Settings


def test_a_broken_chain_is_notified_once_and_marked(engine: Engine) -> None:
    with engine.begin() as conn:
        make_run(conn, "r1")
    seed(engine, 4, runs_=("r1",))
    group = click.Group()
    register(group)
    clock = ManualClock()

    def verify() -> int:
        app = AppContext(settings=Settings(database_url=str(engine.url)), clock=clock, _engine=engine)
        return CliRunner().invoke(group, ["audit", "verify"], obj=app, catch_exceptions=False).exit_code

    assert verify() == 0
    with engine.connect() as conn:
        assert get_mark(conn, AUDIT_VERIFY).ok is True
        assert conn.execute(select(notify_outbox)).all() == []
    with engine.begin() as conn:
        disable_guards(conn)
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    clock.advance(60)
    assert verify() == 1
    assert verify() == 1  # the same break again: no second notification
    with engine.connect() as conn:
        mark = get_mark(conn, AUDIT_VERIFY)
        rows = conn.execute(select(notify_outbox)).all()
    assert mark.ok is False and "first bad seq 3" in mark.detail
    assert [(r.type, r.event_id.startswith("audit-verify-failed-3-")) for r in rows] == [("audit.verify_failed", True)]
