"""Signed checkpoints outside the database: wiping, truncating or rewriting the chain is caught.

An attacker here owns the database (triggers bypassed: dropped on SQLite, or
``session_replication_role = replica`` on PostgreSQL) but neither the checkpoint directory
nor the server key.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, text

from tests.audit.helpers import disable_guards, rehash_from, seed
from treasury.audit import append_event, read_head, verify_chain
from treasury.audit.anchoring import Checkpointer, install
from treasury.audit.checkpoint_verify import verify_with_checkpoints
from treasury.audit.checkpoints import Checkpoint, CheckpointError, CheckpointStore, file_name
from treasury.audit.server_key import ServerKey, public_pem
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.clock import ManualClock
from treasury.errors import ChainBroken
from treasury.settings import Settings

N = 5  # a checkpoint every 5 events
M = 60.0  # and every 60 s


class Anchored:
    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        self.engine = engine
        self.dir = tmp_path / "checkpoints"
        self.key_file = tmp_path / "server.key"
        self.clock = ManualClock()
        self.store = CheckpointStore(self.dir)
        self.checkpointer = self.fresh_checkpointer()
        install(engine, self.checkpointer)

    def fresh_checkpointer(self) -> Checkpointer:
        """A checkpointer as another process (or a restarted one) would build it."""
        return Checkpointer(CheckpointStore(self.dir), ServerKey(self.key_file, create=True), clock=self.clock,
                            every_events=N, every_seconds=M)

    def seqs(self) -> list[int]:
        return self.store.seqs()

    def verify(self, **kwargs: object) -> object:
        result, _ = verify_with_checkpoints(self.engine, self.store, **kwargs)  # type: ignore[arg-type]
        return result

    def cli(self, *args: str) -> Result:
        group = click.Group()
        register(group)
        settings = Settings(database_url=self.engine.url.render_as_string(hide_password=False),
                            checkpoint_dir=self.dir, checkpoint_every_events=N)
        app = AppContext(settings=settings, clock=self.clock, _engine=self.engine)
        return CliRunner().invoke(group, ["audit", *args], obj=app, catch_exceptions=False)


@pytest.fixture
def anchored(engine: Engine, tmp_path: Path) -> Anchored:
    a = Anchored(engine, tmp_path)
    seed(engine, 12, clock=a.clock)  # checkpoints at seq 1 (the first chance), 5 and 10
    return a


def _bypass(conn: Connection) -> None:
    """Switch the guards off the way an owner would: replica role on PostgreSQL, file access on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET session_replication_role = replica"))
    else:
        disable_guards(conn)


def _wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        _bypass(conn)
        conn.execute(text("DELETE FROM audit_events"))
        conn.execute(text("DELETE FROM audit_head"))


def _append(engine: Engine, i: int = 0) -> None:
    with engine.begin() as conn:
        append_event(conn, type="step.state", actor="mallory", at=ManualClock().now(), run_id="r9", payload={"i": i})


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one())


# ------------------------------------------------------------------------------- writing


def test_a_checkpoint_every_n_events_and_every_m_seconds(anchored: Anchored) -> None:
    assert anchored.seqs() == [1, 5, 10]
    assert anchored.verify().ok  # type: ignore[attr-defined]
    anchored.clock.advance(M)  # M since the latest: the next append anchors the head before it
    seed(anchored.engine, 1, clock=anchored.clock)
    assert anchored.seqs() == [1, 5, 10, 12]
    # a quiet log: tick anchors the committed head once it is due, not before
    assert anchored.checkpointer.tick(anchored.engine) is None
    anchored.clock.advance(M - 2)  # seed moved the clock 1 s past checkpoint 12
    assert anchored.checkpointer.tick(anchored.engine) is None
    anchored.clock.advance(1)
    written = anchored.checkpointer.tick(anchored.engine)
    assert written is not None and (written.seq, written.hash) == read_head(anchored.engine)
    assert anchored.seqs() == [1, 5, 10, 12, 13]
    cp = anchored.store.read(13)
    assert cp.at == anchored.clock.now() and cp.verifies_with(anchored.checkpointer._signing_key().public_key())


def test_checkpoint_files_are_create_only_and_readable_keys_private(anchored: Anchored) -> None:
    path = anchored.dir / file_name(5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(anchored.key_file.stat().st_mode) == 0o600
    assert not list(anchored.dir.glob(".*"))  # no temporary files left behind
    key = anchored.checkpointer._signing_key()
    same = Checkpoint.sign(5, anchored.store.read(5).hash, anchored.clock.now(), key)
    assert anchored.store.write(same) is False  # the same statement again: idempotent
    before = path.read_bytes()
    with pytest.raises(ChainBroken, match="recorded hash"):
        anchored.store.write(Checkpoint.sign(5, "ab" * 32, anchored.clock.now(), key))
    assert path.read_bytes() == before


def test_a_checkpoint_describes_a_committed_head(engine: Engine, tmp_path: Path) -> None:
    a = Anchored(engine, tmp_path)
    seed(engine, 4, clock=a.clock)
    assert a.seqs() == [1]
    # one transaction appends seq 5 and 6, then rolls back: seq 5 was never committed
    with engine.connect() as conn, conn.begin() as txn:
        for i in (5, 6):
            append_event(conn, type="step.state", actor="alice", at=a.clock.now(), payload={"i": i, "gone": True})
        txn.rollback()
    assert a.seqs() == [1]
    seed(engine, 2, clock=a.clock)  # seq 5 and 6 for real
    assert a.seqs() == [1, 5]
    result = a.verify()
    assert result.ok, result.reason  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- verifying


def test_wiping_events_and_head_is_broken_without_expect_head(anchored: Anchored) -> None:
    anchor = verify_chain(anchored.engine).anchor
    _wipe(anchored.engine)
    assert verify_chain(anchored.engine).ok  # from inside the database an empty log looks fine
    result = anchored.verify()
    assert (result.ok, result.first_bad_seq, result.count) == (False, 1, 0)  # type: ignore[attr-defined]
    assert file_name(10) in result.reason and "the chain is empty" in result.reason  # type: ignore[attr-defined]
    out = anchored.cli("verify")
    assert out.exit_code == 1
    assert out.output.startswith("BROKEN at seq 1: checkpoint ") and file_name(10) in out.output
    # an anchor saved by hand catches it too, head row or not
    with_anchor = verify_chain(anchored.engine, expect_head=anchor)
    assert (with_anchor.ok, with_anchor.first_bad_seq) == (False, 1)
    assert "truncated" in (with_anchor.reason or "")
    assert anchored.cli("verify", "--expect-head", anchor).exit_code == 1


def test_an_emptied_checkpoint_folder_is_broken_once_the_chain_outgrew_the_interval(anchored: Anchored) -> None:
    for path in anchored.dir.iterdir():  # every checkpoint and the public key beside them
        path.unlink()
    assert verify_chain(anchored.engine).ok  # the database itself is intact (12 events)
    result = anchored.verify(every_events=N)
    assert not result.ok  # type: ignore[attr-defined]
    assert result.reason.startswith(f"the checkpoints are missing: {anchored.dir} holds none, but the chain "  # type: ignore[attr-defined]
                                    f"has 12 events and one is written every {N}")
    out = anchored.cli("verify")
    assert out.exit_code == 1
    assert "BROKEN" in out.output and "the checkpoints are missing" in out.output


def test_a_fresh_short_chain_without_checkpoints_is_ok(engine: Engine, tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    seed(engine, N)  # no checkpointer installed: nothing written, and none due yet at N events
    result, report = verify_with_checkpoints(engine, store, every_events=N)
    assert result.ok and report.count == 0
    assert report.notes == ["no checkpoint written yet: nothing outside the database vouches for the log"]
    seed(engine, 1)
    result, _ = verify_with_checkpoints(engine, store, every_events=N)
    assert not result.ok and "the checkpoints are missing" in (result.reason or "")


def test_truncating_the_tail_below_a_checkpoint_is_broken(anchored: Anchored) -> None:
    with anchored.engine.begin() as conn:
        _bypass(conn)
        conn.execute(text("DELETE FROM audit_events WHERE seq > 7"))
        seven = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 7")).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = 7, hash = :h"), {"h": seven})  # a consistent cut
    assert verify_chain(anchored.engine).ok
    result = anchored.verify()
    assert (result.ok, result.first_bad_seq, result.count) == (False, 8, 7)  # type: ignore[attr-defined]
    assert "covers seq 10" in result.reason and "8..10 were deleted" in result.reason  # type: ignore[attr-defined]


def test_a_consistent_rewrite_under_a_checkpoint_is_broken(anchored: Anchored) -> None:
    with anchored.engine.begin() as conn:
        _bypass(conn)
        conn.exec_driver_sql("""UPDATE audit_events SET payload = '{"i":2,"state":"CANCELLED"}' WHERE seq = 3""")
        rehash_from(conn, 3)
    assert verify_chain(anchored.engine).ok  # every link recomputed
    result = anchored.verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)  # type: ignore[attr-defined]
    reason = result.reason  # type: ignore[attr-defined]
    assert file_name(5) in reason and "rewritten after seq 1" in reason
    assert anchored.store.read(5).hash in reason
    assert anchored.cli("verify").exit_code == 1


def test_a_forged_checkpoint_is_broken(anchored: Anchored) -> None:
    forger = Ed25519PrivateKey.generate()
    head_seq, head_hash = read_head(anchored.engine)
    forged = Checkpoint.sign(head_seq, head_hash, anchored.clock.now(), forger)
    (anchored.dir / forged.name).write_text(forged.to_json())
    result = anchored.verify()
    assert not result.ok and "does not verify" in result.reason and forged.name in result.reason  # type: ignore[attr-defined]
    assert anchored.cli("verify").exit_code == 1
    # the runner (here as a process starting now) will not append under evidence it cannot trust
    install(anchored.engine, anchored.fresh_checkpointer())
    with pytest.raises(ChainBroken, match="does not verify"):
        _append(anchored.engine)


def test_an_altered_checkpoint_is_broken(anchored: Anchored) -> None:
    path = anchored.dir / file_name(5)
    data = json.loads(path.read_text())
    data["hash"] = "0" * 64
    path.write_text(json.dumps(data))
    result = anchored.verify()
    assert not result.ok and file_name(5) in result.reason  # type: ignore[attr-defined]


def test_a_replaced_public_key_fails_against_the_pinned_one(anchored: Anchored, tmp_path: Path) -> None:
    pinned = tmp_path / "pinned.pub"
    pinned.write_bytes(anchored.store.public_key_path.read_bytes())
    assert anchored.cli("verify", "--public-key", str(pinned)).exit_code == 0
    forger = Ed25519PrivateKey.generate()  # re-sign everything with a new key and swap the .pub
    for seq in anchored.seqs():
        cp = anchored.store.read(seq)
        (anchored.dir / cp.name).write_text(Checkpoint.sign(cp.seq, cp.hash, cp.at, forger).to_json())
    anchored.store.public_key_path.write_bytes(public_pem(forger.public_key()))
    assert anchored.verify().ok  # type: ignore[attr-defined]  # self-consistent without a pin
    out = anchored.cli("verify", "--public-key", str(pinned))
    assert out.exit_code == 1 and "not the pinned key" in out.output


# ------------------------------------------------------------------------------- refusing


def test_appending_after_a_wipe_is_refused(anchored: Anchored) -> None:
    _wipe(anchored.engine)
    with pytest.raises(ChainBroken, match="refusing to append"):
        _append(anchored.engine)
    assert _count(anchored.engine) == 0  # nothing of a new chain was kept
    # a process that starts afresh refuses as well
    other = anchored.fresh_checkpointer()
    install(anchored.engine, other)
    with pytest.raises(ChainBroken, match=f"{file_name(10)} covers seq 10 but the log is empty"):
        _append(anchored.engine)
    assert _count(anchored.engine) == 0


def test_appending_after_a_truncation_or_rewrite_is_refused(anchored: Anchored) -> None:
    with anchored.engine.begin() as conn:
        _bypass(conn)
        conn.exec_driver_sql("""UPDATE audit_events SET payload = '{"i":9}' WHERE seq = 9""")
        rehash_from(conn, 9)
        conn.execute(text("DELETE FROM audit_events WHERE seq > 10"))
        ten = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 10")).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = 10, hash = :h"), {"h": ten})
    with pytest.raises(ChainBroken, match="rewritten"):
        _append(anchored.engine)
    with anchored.engine.begin() as conn:
        _bypass(conn)
        conn.execute(text("DELETE FROM audit_events WHERE seq > 6"))
        six = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 6")).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = 6, hash = :h"), {"h": six})
    with pytest.raises(ChainBroken, match="chain head is seq 6"):
        _append(anchored.engine)
    assert _count(anchored.engine) == 6


def test_a_checkpoint_that_cannot_be_written_stops_the_next_due_append(
    anchored: Anchored, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = anchored.checkpointer.store

    def full(*_args: object) -> bool:
        raise CheckpointError(f"cannot write {store.path} (No space left on device)")

    monkeypatch.setattr(store, "_link_new", full)
    seed(anchored.engine, 4, clock=anchored.clock)  # seq 13..16: the checkpoint of 15 is due and fails
    assert "checkpoint of seq 15 not written" in caplog.text
    with pytest.raises(CheckpointError, match=r"nothing more is appended.*No space left"):
        _append(anchored.engine)  # due again: written in the transaction, or no append
    assert _count(anchored.engine) == 16
    monkeypatch.undo()
    _append(anchored.engine)
    assert anchored.seqs() == [1, 5, 10, 16] and _count(anchored.engine) == 17
