"""The hash chain: how one event's hash is computed and how a run of events is checked.

For event ``n``::

    body_digest = SHA-256(canonical_json({seq, at, actor, run_id, step_id, type, payload}))
    hash        = SHA-256(0x00 ‖ prev_hash ‖ body_digest)        (raw 32-byte values)

with ``prev_hash`` of seq 1 being 64 zeros. Keeping the body digest separate lets an evidence
bundle prove that its events sit in an unbroken chain while showing only the digests of other
runs' events. The 0x00 prefix separates chain links from any other hash we might publish
(RFC 6962 does the same for leaves).

Everything here is pure: no database, so the same checker serves the live table and bundles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from treasury.audit.canonical import canonical_json, format_at, utc

GENESIS_HASH = "0" * 64


def _s(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def body_text(
    *,
    seq: int,
    at: str,
    actor: str,
    run_id: str | None,
    step_id: str | None,
    type: str,
    payload_json: str,
) -> str:
    """The canonical JSON of an event body, given its payload already in canonical JSON.

    Equal, byte for byte, to ``canonical_json`` of the whole body (keys in sorted order);
    building it by concatenation keeps the verifier from parsing every payload.
    """
    before, after = body_parts(at=at, actor=actor, run_id=run_id, step_id=step_id, type=type, payload_json=payload_json)
    return f"{before}{int(seq)}{after}"


def body_parts(
    *, at: str, actor: str, run_id: str | None, step_id: str | None, type: str, payload_json: str
) -> tuple[str, str]:
    """The canonical body split around its seq: ``before + str(seq) + after``.

    Lets PostgreSQL hash an event whose seq is only known once the chain head is locked.
    """
    return (
        f'{{"actor":{_s(actor)},"at":{_s(at)},"payload":{payload_json},"run_id":{_s(run_id)},"seq":',
        f',"step_id":{_s(step_id)},"type":{_s(type)}}}',
    )


def body_digest(text: str) -> str:
    """SHA-256 (hex) of a canonical event body."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def link_hash(prev_hash: str, digest: str) -> str:
    """SHA-256(0x00 ‖ prev_hash ‖ body_digest) as hex; raises ValueError on non-hex input."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(prev_hash) + bytes.fromhex(digest)).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as stored: ``payload`` is already redacted plain JSON."""

    seq: int
    at: datetime
    actor: str
    run_id: str | None
    step_id: str | None
    type: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def body_digest(self) -> str:
        """The digest of this record's body, recomputed from its fields."""
        return body_digest(
            body_text(
                seq=self.seq,
                at=format_at(self.at),
                actor=self.actor,
                run_id=self.run_id,
                step_id=self.step_id,
                type=self.type,
                payload_json=canonical_json(self.payload),
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``at`` as UTC ISO 8601 with microseconds)."""
        return {
            "seq": self.seq,
            "at": format_at(self.at),
            "actor": self.actor,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "type": self.type,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        """Inverse of ``to_dict``; raises KeyError/ValueError/TypeError on a malformed dict."""
        payload = data["payload"]
        if not isinstance(payload, dict):
            raise TypeError("payload must be an object")
        return cls(
            seq=int(data["seq"]),
            at=utc(datetime.fromisoformat(data["at"])),
            actor=str(data["actor"]),
            run_id=data["run_id"],
            step_id=data["step_id"],
            type=str(data["type"]),
            payload=payload,
            prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]),
        )

    @classmethod
    def from_row(cls, row: Any) -> AuditRecord:
        """Build from a ``(seq, at, actor, run_id, step_id, type, payload_text, prev, hash)`` row."""
        seq, at, actor, run_id, step_id, type_, payload_text, prev_hash, hash_ = row
        return cls(
            seq=seq,
            at=utc(at),
            actor=actor,
            run_id=run_id,
            step_id=step_id,
            type=type_,
            payload=json.loads(payload_text),
            prev_hash=prev_hash,
            hash=hash_,
        )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a chain (or a bundle's segment of one).

    ``head_seq``/``head_hash`` are the last event that verified, which an operator can
    anchor outside the database. ``first_bad_seq`` names where the chain first breaks.
    """

    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None

    @property
    def anchor(self) -> str:
        """``"SEQ:HASH"``: the form ``--expect-head`` accepts to re-check later."""
        return f"{self.head_seq}:{self.head_hash}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "anchor": self.anchor,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


@dataclass
class ChainChecker:
    """Feed rows in seq order; the first break is kept and later rows are ignored.

    Starts from ``(start_seq, prev_hash)``: the genesis for a whole chain, or the link just
    before a bundle's segment.
    """

    next_seq: int = 1
    prev_hash: str = GENESIS_HASH
    count: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def fail(self, seq: int | None, reason: str) -> None:
        """Record a break (``seq`` None when it can't be located); only the first one counts."""
        if self.reason is None:
            self.first_bad_seq = seq
            self.reason = reason

    def result(self) -> VerifyResult:
        """What was checked so far, as a verification result."""
        return VerifyResult(
            ok=self.ok,
            count=self.count,
            head_seq=self.last_seq,
            head_hash=self.prev_hash,
            first_bad_seq=self.first_bad_seq,
            reason=self.reason,
        )

    def feed_digest(self, seq: int, prev_hash: str, digest: str, hash_: str) -> bool:
        """Check one link given its body digest; returns False once the chain is broken."""
        if self.reason is not None:
            return False
        if seq != self.next_seq:
            if seq > self.next_seq:
                self.fail(self.next_seq, f"seq {self.next_seq} is missing (deleted or renumbered)")
            else:
                self.fail(seq, f"seq {seq} is out of order (expected {self.next_seq})")
            return False
        if prev_hash != self.prev_hash:
            self.fail(seq, f"prev_hash does not match the hash of seq {seq - 1} (inserted or reordered)")
            return False
        try:
            expected = link_hash(self.prev_hash, digest)
        except ValueError:
            self.fail(seq, "body digest is not a SHA-256 hex value")
            return False
        if expected != hash_:
            self.fail(seq, "hash does not match the event's contents (modified)")
            return False
        self.prev_hash = hash_
        self.next_seq = seq + 1
        self.count += 1
        return True

    def feed(
        self,
        seq: int,
        at: datetime | str,
        actor: str,
        run_id: str | None,
        step_id: str | None,
        type_: str,
        payload_json: str,
        prev_hash: str,
        hash_: str,
    ) -> bool:
        """Check one stored event (payload as its stored canonical text; ``at`` a datetime or
        already in its hashed form)."""
        text = body_text(
            seq=seq,
            at=at if isinstance(at, str) else format_at(at),
            actor=actor,
            run_id=run_id,
            step_id=step_id,
            type=type_,
            payload_json=payload_json,
        )
        return self.feed_digest(seq, prev_hash, body_digest(text), hash_)

    def feed_rows(self, rows: Iterable[Sequence[Any]]) -> bool:
        """``feed`` for a batch of stored rows, in seq order; the verifier's hot loop.

        Same checks and hashes as ``feed`` (every verify test exercises both through
        append_event's SQL and Python hashing), minus the per-row call layers and hex
        round trips. On a bad row it hands over to ``feed`` to name the break.
        """
        if self.reason is not None:
            return False
        sha256 = hashlib.sha256
        enc = _s
        seq_expected, prev = self.next_seq, self.prev_hash
        prev_raw = bytes.fromhex(prev)
        count = 0
        for row in rows:
            seq, at, actor, run_id, step_id, type_, payload_json, prev_hash, hash_ = row
            if seq == seq_expected and prev_hash == prev:
                at_text = at if isinstance(at, str) else format_at(at)
                text = (
                    f'{{"actor":{enc(actor)},"at":"{at_text}","payload":{payload_json},'
                    f'"run_id":{enc(run_id)},"seq":{seq},"step_id":{enc(step_id)},"type":{enc(type_)}}}'
                )
                raw = sha256(b"\x00" + prev_raw + sha256(text.encode("utf-8")).digest()).digest()
                if raw.hex() == hash_:
                    seq_expected, prev, prev_raw = seq + 1, hash_, raw
                    count += 1
                    continue
            self.next_seq, self.prev_hash, self.count = seq_expected, prev, self.count + count
            return self.feed(*row)  # fails, and says why
        self.next_seq, self.prev_hash, self.count = seq_expected, prev, self.count + count
        return True


def parse_anchor(anchor: str) -> tuple[int | None, str]:
    """Parse ``"HASH"`` or ``"SEQ:HASH"``; raises ValueError naming what is wrong."""
    seq_text, sep, hash_ = anchor.strip().rpartition(":")
    hash_ = hash_.lower()
    if len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
        raise ValueError(f"expected a 64-digit hex hash or SEQ:HASH, got {anchor!r}")
    if not sep:
        return None, hash_
    if not seq_text.isdigit():
        raise ValueError(f"expected SEQ:HASH with a whole-number SEQ, got {anchor!r}")
    return int(seq_text), hash_
