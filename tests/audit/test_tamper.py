"""Tampering with the stored chain (triggers dropped first): verify names the first bad seq."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.audit.helpers import disable_guards, rehash_from, seed
from treasury.audit import read_head, verify_chain
from treasury.audit.chain import ChainChecker, parse_anchor
from treasury.errors import ParameterError

N = 12


@pytest.fixture
def chain(engine: Engine) -> Engine:
    seed(engine, N)
    assert verify_chain(engine).ok
    return engine


def _tamper(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        disable_guards(conn)
        for sql in statements:
            conn.exec_driver_sql(sql)


def test_modified_payload(chain: Engine) -> None:
    _tamper(chain, """UPDATE audit_events SET payload = '{"i":4,"state":"SUCCEEDED"}' WHERE seq = 5""")
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq, result.count, result.head_seq) == (False, 5, 4, 4)
    assert "modified" in (result.reason or "")


def test_modified_actor_or_time(chain: Engine) -> None:
    _tamper(chain, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 7")
    assert verify_chain(chain).first_bad_seq == 7


def test_deleted_row(chain: Engine) -> None:
    _tamper(chain, "DELETE FROM audit_events WHERE seq = 6")
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "missing" in (result.reason or "")


def test_swapped_rows(chain: Engine) -> None:
    _tamper(
        chain,
        "UPDATE audit_events SET seq = -1 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = 8",
        "UPDATE audit_events SET seq = 8 WHERE seq = -1",
    )
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_adjacent_rows_swapped_with_their_seq_kept(chain: Engine) -> None:
    # swap contents, keeping each position's seq: the hashed seq no longer matches
    _tamper(
        chain,
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    )
    assert verify_chain(chain).first_bad_seq == 3


def test_row_inserted_in_the_middle(chain: Engine) -> None:
    # make room after seq 5 by renumbering the rest, then insert a forged, well-linked row at 6
    with chain.begin() as conn:
        disable_guards(conn)
        for seq in range(N, 5, -1):
            conn.execute(text("UPDATE audit_events SET seq = :n WHERE seq = :o"), {"n": seq + 1, "o": seq})
        prev = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 5")).scalar_one()
        from treasury.audit.chain import body_digest, body_text, link_hash

        body = body_text(
            seq=6, at="2026-01-01T00:00:05.000000+00:00", actor="mallory", run_id="r1", step_id="pay",
            type="step.state", payload_json='{"i":99}',
        )  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO audit_events (seq, at, actor, run_id, step_id, type, payload, prev_hash, hash) "
                "VALUES (6, :at, 'mallory', 'r1', 'pay', 'step.state', :payload, :prev, :hash)"
            ),
            {
                "at": "2026-01-01 00:00:05+00:00",
                "payload": '{"i":99}',
                "prev": prev,
                "hash": link_hash(prev, body_digest(body)),
            },
        )
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq) == (False, 7)  # the forged row links; the next does not


def test_row_added_beyond_the_head(chain: Engine) -> None:
    _tamper(
        chain,
        f"INSERT INTO audit_events (seq, at, actor, type, payload, prev_hash, hash) "
        f"VALUES ({N + 1}, CURRENT_TIMESTAMP, 'mallory', 'x', '{{}}', '{'0' * 64}', '{'0' * 64}')",
    )
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq) == (False, N + 1)
    assert "beyond the chain head" in (result.reason or "")


def test_truncated_tail(chain: Engine) -> None:
    _tamper(chain, "DELETE FROM audit_events WHERE seq > 9")
    result = verify_chain(chain)
    assert (result.ok, result.first_bad_seq, result.count) == (False, 10, 9)
    assert "truncated" in (result.reason or "")


def test_truncated_tail_with_head_rewound_needs_the_anchor(chain: Engine) -> None:
    anchor = verify_chain(chain).anchor
    with chain.begin() as conn:
        disable_guards(conn)
        conn.execute(text("DELETE FROM audit_events WHERE seq > 9"))
        conn.execute(text("UPDATE audit_head SET seq = 9, hash = (SELECT hash FROM audit_events WHERE seq = 9)"))
    assert verify_chain(chain).ok  # consistent inside the database...
    result = verify_chain(chain, expect_head=anchor)  # ...but not with what was anchored
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_rehashed_suffix_is_caught_only_by_the_anchor(chain: Engine) -> None:
    anchored = verify_chain(chain)
    with chain.begin() as conn:
        disable_guards(conn)
        conn.exec_driver_sql("""UPDATE audit_events SET payload = '{"i":6,"state":"FORGED"}' WHERE seq = 7""")
        rehash_from(conn, 7)
    rewritten = verify_chain(chain)
    assert rewritten.ok and rewritten.head_seq == N and rewritten.head_hash != anchored.head_hash

    result = verify_chain(chain, expect_head=anchored.anchor)
    assert (result.ok, result.first_bad_seq) == (False, N)
    assert "re-hashed" in (result.reason or "")
    hash_only = verify_chain(chain, expect_head=anchored.head_hash)
    assert not hash_only.ok and "not in the chain" in (hash_only.reason or "")
    # an anchor taken before the forged row still holds
    early = verify_chain(chain, expect_head=f"6:{rewritten_hash_at(chain, 6)}")
    assert early.ok


def rewritten_hash_at(engine: Engine, seq: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": seq}).scalar_one())


def test_anchor_of_a_growing_chain_still_verifies(chain: Engine) -> None:
    anchor = verify_chain(chain).anchor
    seed(chain, 3)
    assert verify_chain(chain, expect_head=anchor).ok
    assert verify_chain(chain, expect_head=anchor.split(":")[1]).ok
    assert read_head(chain)[0] == N + 3


def test_empty_log_verifies_and_its_genesis_anchor_holds(sqlite_engine: Engine) -> None:
    result = verify_chain(sqlite_engine)
    assert (result.ok, result.count, result.head_seq) == (True, 0, 0)
    assert verify_chain(sqlite_engine, expect_head=result.anchor).ok
    assert not verify_chain(sqlite_engine, expect_head="3:" + "a" * 64).ok


def test_malformed_anchor_is_a_parameter_error(sqlite_engine: Engine) -> None:
    for bad in ["xyz", "12:abc", "x:" + "a" * 64, "a" * 63]:
        with pytest.raises(ParameterError) as info:
            verify_chain(sqlite_engine, expect_head=bad)
        assert info.value.param == "expect_head"
    assert parse_anchor(" 7:" + "AB" * 32) == (7, "ab" * 32)


def test_checker_stops_at_the_first_break() -> None:
    checker = ChainChecker()
    assert not checker.feed_digest(2, "0" * 64, "1" * 64, "2" * 64)
    assert not checker.feed_digest(1, "0" * 64, "1" * 64, "2" * 64)
    assert (checker.first_bad_seq, checker.count) == (1, 0)
    assert "missing" in (checker.reason or "")


def test_small_batches_verify_the_same(chain: Engine) -> None:
    assert verify_chain(chain, batch=5) == verify_chain(chain, batch=10_000)
    _tamper(chain, "UPDATE audit_events SET actor = 'x' WHERE seq = 11")
    assert verify_chain(chain, batch=5).first_bad_seq == 11
