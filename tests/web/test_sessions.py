"""Server-side sessions: idle and absolute time-outs end a session for good; rows hold no token."""

from __future__ import annotations

from sqlalchemy import select

from tests.web.conftest import Console
from treasury.store.sessions import web_sessions


def test_an_idle_session_ends(console: Console) -> None:
    console.sign_in("alice")
    console.clock.advance(14 * 60)
    assert console.client.get("/inbox").status_code == 200  # used: the idle time starts again
    console.clock.advance(14 * 60)
    assert console.client.get("/inbox").status_code == 200
    console.clock.advance(15 * 60)
    response = console.client.get("/inbox")
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")
    console.clock.advance(-30 * 60)  # a clock set back does not revive it
    assert console.client.get("/inbox").status_code == 303
    with console.runtime.engine.connect() as conn:
        row = conn.execute(select(web_sessions)).one()
    assert row.end_reason == "idle"


def test_a_busy_session_still_ends_after_its_absolute_time(console: Console) -> None:
    console.sign_in("alice")
    for _ in range(8 * 6 - 1):
        console.clock.advance(10 * 60)
        assert console.client.get("/runs").status_code == 200
    console.clock.advance(10 * 60)
    assert console.client.get("/runs").status_code == 303
    with console.runtime.engine.connect() as conn:
        assert conn.execute(select(web_sessions.c.end_reason)).scalar_one() == "absolute"


def test_the_table_keeps_only_the_tokens_hash(console: Console) -> None:
    token = console.sign_in("alice")
    with console.runtime.engine.connect() as conn:
        row = conn.execute(select(web_sessions)).one()
    assert token not in tuple(str(v) for v in row)


def test_a_page_polling_for_changes_does_not_keep_its_session_alive(console: Console) -> None:
    console.sign_in("alice")
    for _ in range(7):
        console.clock.advance(2 * 60)
        assert console.client.get("/inbox?part=live").status_code == 200
    console.clock.advance(2 * 60)  # 16 minutes of polling, no use
    assert console.client.get("/inbox?part=live").status_code == 303
