"""Recompute the audit chain from the database and say where it first breaks.

What each kind of tampering looks like to the verifier:

- a modified row: its hash no longer matches its contents;
- a deleted row: a gap in seq;
- an inserted or reordered row: its ``prev_hash`` is not the previous row's hash (or its
  seq, which is hashed, changed);
- a truncated tail: the head row still names a later seq than the last row;
- a row added past the head: it is outside the chain the head vouches for;
- a re-hashed suffix (rows edited, every later hash recomputed, head rewritten), or every
  row and the head deleted: invisible from inside the database. Only an anchor kept
  elsewhere catches it: ``expect_head``, or the signed checkpoints that
  ``checkpoint_verify.verify_with_checkpoints`` checks on top of this.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from treasury.audit.chain import GENESIS_HASH, ChainChecker, VerifyResult, parse_anchor
from treasury.audit.tables import SELECT_HEAD, audit_events, audit_head, chain_columns
from treasury.errors import ParameterError


def verify_chain(engine: Engine, *, expect_head: str | None = None, batch: int = 10000) -> VerifyResult:
    """Stream every event in seq order, recompute each hash and check the links and the head.

    ``expect_head`` is an anchor saved earlier (``"HASH"`` or ``"SEQ:HASH"``): the chain must
    still contain that hash (at that seq). Returns a VerifyResult; ``ok`` is False with the
    first bad seq and a reason on any break. Raises ParameterError for a malformed anchor
    or batch size.
    """
    if batch < 1:
        raise ParameterError("batch", "must be at least 1")
    anchor_seq: int | None = None
    anchor_hash: str | None = None
    if expect_head is not None:
        try:
            anchor_seq, anchor_hash = parse_anchor(expect_head)
        except ValueError as exc:
            raise ParameterError("expect_head", str(exc)) from None

    c = audit_events.c
    with engine.connect() as conn:
        head = conn.execute(SELECT_HEAD).first()
    head_seq = None if head is None else int(head.seq)
    columns = chain_columns(engine)
    checker = ChainChecker()
    # An empty log's head is the genesis hash at seq 0: anchoring it is trivially satisfied.
    anchor_found = anchor_hash == GENESIS_HASH and anchor_seq in (None, 0)


    last = 0
    while True:
        # Bounded by the head read first: events appended while we verify are not ours to judge.
        bound = [c.seq <= head_seq] if head_seq is not None else []
        stmt = select(*columns).where(c.seq > last, *bound).order_by(c.seq).limit(batch)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not checker.feed_rows(rows):
            return checker.result()
        if anchor_hash is not None and not anchor_found:
            anchor_found = any(r[8] == anchor_hash and anchor_seq in (None, r[0]) for r in rows)
        if len(rows) < batch:
            break
        last = rows[-1][0]

    if head is None:  # no head row: only an empty log may lack one, and an anchor still applies
        if checker.count:
            checker.fail(checker.last_seq + 1, "the chain head row is missing; the tail may be truncated")
    elif checker.last_seq < int(head.seq):
        checker.fail(
            checker.last_seq + 1,
            f"events after seq {checker.last_seq} are missing; the head says {head.seq} (tail truncated)",
        )
    elif checker.prev_hash != head.hash:
        checker.fail(checker.last_seq, "the head hash differs from the last event's hash")
    else:
        _check_beyond_head(engine, checker)
    if checker.ok and anchor_hash is not None and not anchor_found:
        _fail_anchor(checker, anchor_seq, anchor_hash)
    return checker.result()


def _check_beyond_head(engine: Engine, checker: ChainChecker) -> None:
    """Rows past the head are outside the chain (inserted around the triggers).

    Head and rows are read in one statement, so an append committing meanwhile can't
    look like an intruder.
    """
    beyond = select(func.min(audit_events.c.seq)).where(audit_events.c.seq > audit_head.c.seq).scalar_subquery()
    with engine.connect() as conn:
        row = conn.execute(select(audit_head.c.seq, beyond).where(audit_head.c.id == 1)).one()
    if row[1] is not None and int(row[0]) == checker.last_seq:
        checker.fail(int(row[1]), f"seq {row[1]} lies beyond the chain head (inserted outside the chain)")


def _fail_anchor(checker: ChainChecker, anchor_seq: int | None, anchor_hash: str) -> None:
    if anchor_seq is None:
        # Without the anchor's seq we can't say where the rewrite starts, so name no seq.
        checker.fail(None, f"the anchored head {anchor_hash} is not in the chain (rewritten after it was anchored)")
    elif anchor_seq > checker.last_seq:
        checker.fail(
            checker.last_seq + 1,
            f"the chain ends at seq {checker.last_seq} but seq {anchor_seq} was anchored (truncated)",
        )
    else:
        checker.fail(
            anchor_seq,
            f"seq {anchor_seq} no longer has the anchored hash {anchor_hash} (re-hashed after anchoring)",
        )
