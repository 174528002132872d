"""Verify the chain against the signed checkpoints kept outside the database.

``verify_chain`` proves the stored events link up; it cannot see a log that was wiped, cut
short, or rewritten and re-hashed from some seq on. Every checkpoint names a (seq, hash) the
chain had; the chain must still have it:

- a checkpoint whose file does not parse, is misnamed, or whose signature does not verify
  with the server's public key: BROKEN (forged or damaged evidence);
- a checkpoint beyond the chain's end: BROKEN (the tail, or everything, was deleted);
- a checkpoint whose hash differs from the chain's at its seq: BROKEN (rewritten);
- no checkpoint at all while the chain is longer than the checkpoint interval
  (``TREASURY_CHECKPOINT_EVERY_EVENTS``), so one must have been written: BROKEN (the
  checkpoints are missing: the folder was emptied, or is not the one this database writes to).

The checkpoints are read before the chain, so every one of them describes a head that was
committed before the verifier read the database's head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, select

from treasury.audit.canonical import format_at
from treasury.audit.chain import VerifyResult
from treasury.audit.checkpoints import Checkpoint, CheckpointError, CheckpointStore
from treasury.audit.server_key import key_id
from treasury.audit.tables import audit_events
from treasury.audit.verify import verify_chain
from treasury.errors import ConfigError


@dataclass(frozen=True)
class CheckpointReport:
    """What the checkpoints contributed to a verification (printed beside the result)."""

    dir: str | None
    count: int = 0
    latest_seq: int | None = None
    latest_at: str | None = None
    key_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dir": self.dir, "count": self.count, "latest_seq": self.latest_seq, "latest_at": self.latest_at,
                "key_id": self.key_id, "notes": list(self.notes)}


def _broken(seq: int | None, reason: str, chain: VerifyResult | None = None) -> VerifyResult:
    if chain is None:
        return VerifyResult(ok=False, count=0, head_seq=0, head_hash="0" * 64, first_bad_seq=seq, reason=reason)
    return VerifyResult(ok=False, count=chain.count, head_seq=chain.head_seq, head_hash=chain.head_hash,
                        first_bad_seq=seq, reason=reason)


def _load(store: CheckpointStore, pinned: Ed25519PublicKey | None) -> tuple[list[Checkpoint], str | None, str | None]:
    """(checkpoints in seq order, key id, or the reason they cannot be trusted)."""
    try:
        stored = store.public_key()
    except ConfigError as exc:
        return [], None, f"the public key beside the checkpoints is unusable: {exc}"
    public = pinned or stored
    if pinned is not None and stored is not None and key_id(stored) != key_id(pinned):
        return [], None, (f"{store.public_key_path} is {key_id(stored)}, not the pinned key {key_id(pinned)} "
                          "(replaced)")
    try:
        checkpoints = list(store.all())
    except CheckpointError as exc:
        return [], None, f"checkpoint unreadable: {exc}"
    if checkpoints and public is None:
        return checkpoints, None, f"{store.public_key_path} is missing: the checkpoints cannot be checked"
    for cp in checkpoints:
        assert public is not None
        if not cp.verifies_with(public):
            return checkpoints, key_id(public), (
                f"checkpoint {store.path / cp.name} (seq {cp.seq}) does not verify with {key_id(public)} "
                "(forged or altered)"
            )
    return checkpoints, None if public is None else key_id(public), None


def _chain_hashes(engine: Engine, seqs: list[int]) -> dict[int, str]:
    c = audit_events.c
    out: dict[int, str] = {}
    for i in range(0, len(seqs), 1000):
        with engine.connect() as conn:
            rows = conn.execute(select(c.seq, c.hash).where(c.seq.in_(seqs[i:i + 1000])))
            out.update((int(s), str(h)) for s, h in rows)
    return out


def verify_with_checkpoints(
    engine: Engine,
    store: CheckpointStore | None,
    *,
    expect_head: str | None = None,
    public_key: Ed25519PublicKey | None = None,
    every_events: int | None = None,
) -> tuple[VerifyResult, CheckpointReport]:
    """``verify_chain`` plus every checkpoint in ``store``; BROKEN names the checkpoint and the difference.

    ``store`` None means no checkpoint directory is configured (only ``expect_head`` anchors).
    ``public_key`` pins the signer (otherwise the key stored beside the checkpoints is used).
    ``every_events``: the checkpoint interval; a chain longer than it with no checkpoint is BROKEN.
    Raises ParameterError for a malformed ``expect_head``.
    """
    if store is None:
        report = CheckpointReport(dir=None, notes=["no checkpoint directory is configured (TREASURY_CHECKPOINT_DIR)"])
        return verify_chain(engine, expect_head=expect_head), report
    checkpoints, kid, problem = _load(store, public_key)
    chain = verify_chain(engine, expect_head=expect_head)
    latest = checkpoints[-1] if checkpoints else None
    report = CheckpointReport(
        dir=str(store.path), count=len(checkpoints), key_id=kid,
        latest_seq=latest.seq if latest else None, latest_at=format_at(latest.at) if latest else None,
        notes=[] if checkpoints else ["no checkpoint written yet: nothing outside the database vouches for the log"],
    )
    if problem is not None:
        return _broken(None, problem, chain), report
    if not chain.ok:
        return chain, report
    if not checkpoints and every_events is not None and chain.head_seq > every_events and store.latest() is None:
        # (read again: a writer that appended past the interval may have written its file since)
        return _broken(None, (
            f"the checkpoints are missing: {store.path} holds none, but the chain has {chain.head_seq} events "
            f"and one is written every {every_events} (TREASURY_CHECKPOINT_EVERY_EVENTS): the folder was "
            "emptied, or is not the one this database writes to"), chain), report
    present = _chain_hashes(engine, [cp.seq for cp in checkpoints if cp.seq <= chain.head_seq])
    matched = 0
    for cp in checkpoints:
        where = f"checkpoint {store.path / cp.name} (written {format_at(cp.at)})"
        if cp.seq > chain.head_seq:
            last = checkpoints[-1]  # the latest shows how much is gone
            where = f"checkpoint {store.path / last.name} (written {format_at(last.at)})"
            gone = ("the chain is empty (every event and the head were deleted)" if chain.head_seq == 0
                    else f"the chain ends at seq {chain.head_seq} (events {chain.head_seq + 1}..{last.seq} "
                         "were deleted: truncated)")
            return _broken(chain.head_seq + 1, f"{where} covers seq {last.seq} but {gone}", chain), report
        have = present.get(cp.seq)
        if have != cp.hash:
            since = f"after seq {matched}, the last checkpoint that matches" if matched else "at or before it"
            return _broken(cp.seq, f"{where} recorded hash {cp.hash} for seq {cp.seq}, the chain has {have} "
                                   f"(rewritten {since})", chain), report
        matched = cp.seq
    return chain, report
