"""When the runner writes checkpoints, and its refusal to append to a chain that lost history.

A ``Checkpointer`` is installed on an engine (``install``); ``append_event`` then calls
``on_append`` with the link it just made, inside the appender's transaction and while it
holds the chain head's lock. At that moment the previous link (``seq - 1``, ``prev_hash``)
is the committed head: nobody else can move it, and the first append of a transaction sees
only what other transactions committed. So the checkpoint is taken of that link:

- every ``every_events`` events (the previous link reached a multiple the latest known
  checkpoint had not), and
- every ``every_seconds`` since the latest checkpoint (on an append, or on ``tick`` for a log
  that went quiet: the worker's sweeper calls it, so does ``treasury audit checkpoint``).

Exactly one transaction appends each seq, and a seq's hash never changes, so processes
writing concurrently cannot disagree; the store's create-only write makes a repeat harmless.

The same hook refuses (``ChainBroken``) an append whose previous link lies below the latest
checkpoint, or differs from it at its seq: the log was wiped, truncated or rewritten, and
continuing would start a second history beside the evidence of the first.

The checkpoint found due is written once the appender's transaction is over (when its
connection goes back to the pool or begins again; ``install`` adds the listeners), so the
head lock is not held over the file's fsync. A write that fails is logged and remembered;
the next due append then writes its checkpoint inside its transaction or fails with it.

Costs on the hot path: an integer comparison, a clock read and a note on the connection
(about 1-5 us); a checkpoint (a directory listing, one signature, one fsync'd file, about
10-15 ms on a slow disk) once per ``every_events``, outside the lock.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, event

from treasury.audit.checkpoints import Checkpoint, CheckpointError, CheckpointStore, file_name
from treasury.audit.server_key import ServerKey
from treasury.audit.tables import read_head
from treasury.clock import Clock
from treasury.errors import ChainBroken
from treasury.store.db import sync_committed

log = logging.getLogger("treasury.audit")

OPTION = "treasury_checkpointer"  # the engine execution option that carries the checkpointer
_TXN = "treasury.audit.txn"  # conn.info: (weakref to the transaction, its first appended seq)
_PENDING = "treasury.audit.checkpoint"  # conn.info: (checkpointer, seq, hash) to write after the transaction
_LISTENING = "_treasury_checkpoint_listeners"


def installed(bind: Engine | Connection) -> Checkpointer | None:
    """The checkpointer installed on ``bind``'s engine, if any."""
    cp = bind.get_execution_options().get(OPTION)
    return cp if isinstance(cp, Checkpointer) else None


def install(engine: Engine, checkpointer: Checkpointer) -> None:
    """Make every append through ``engine`` (and its connections) feed ``checkpointer``.

    A due checkpoint is written once the appender's transaction is over (the connection goes
    back to the pool, or begins its next transaction), so the head lock is not held meanwhile.
    """
    engine.update_execution_options(**{OPTION: checkpointer})
    # a checkpoint vouches for a committed head: it must be on disk before the file is
    checkpointer.make_durable = lambda: sync_committed(engine)
    if not getattr(engine, _LISTENING, False):
        setattr(engine, _LISTENING, True)

        def on_checkin(_dbapi: Any, record: Any) -> None:
            _flush(record.info)

        def on_begin(conn: Connection) -> None:
            _flush(conn.info)

        event.listen(engine, "checkin", on_checkin)
        event.listen(engine, "begin", on_begin, insert=True)  # before SQLite's BEGIN IMMEDIATE


def _flush(info: dict[Any, Any]) -> None:
    pending = info.pop(_PENDING, None)
    if pending is not None:
        checkpointer, seq, hash_ = pending
        checkpointer.write_pending(seq, hash_)


def _first_in_transaction(conn: Connection, seq: int) -> bool:
    """Whether ``seq`` is the first event this transaction appends (so ``seq - 1`` is committed)."""
    txn = conn.get_transaction()
    if txn is None:  # no transaction: each statement committed on its own
        return True
    info = conn.info
    mark = info.get(_TXN)
    if mark is not None and mark[0]() is txn:
        return False
    info[_TXN] = (weakref.ref(txn), seq)
    return True


class Checkpointer:
    """Writes checkpoints for one chain into one store. Thread-safe; one per process and engine."""

    def __init__(
        self,
        store: CheckpointStore,
        key: ServerKey | Callable[[], Ed25519PrivateKey],
        *,
        clock: Clock,
        every_events: int = 100,
        every_seconds: float = 300.0,
    ) -> None:
        if every_events < 1 or every_seconds <= 0:
            raise ValueError("every_events must be at least 1 and every_seconds positive")
        self.store = store
        self._key_source = key.load if isinstance(key, ServerKey) else key
        self._key: Ed25519PrivateKey | None = None
        self.clock = clock
        self.every_events = every_events
        self.every_seconds = every_seconds
        self._lock = threading.Lock()
        self._loaded = False
        self._latest_seq = 0
        self._latest_hash: str | None = None
        self._due_at = -math.inf  # no checkpoint yet: anchor the chain at the first chance
        self.written = 0  # checkpoints this process wrote (for tests and benchmarks)
        self._failure: Exception | None = None
        # makes the committed head durable before a file vouches for it (``install`` sets it:
        # SQLite's synchronous=NORMAL leaves recent commits unsynced)
        self.make_durable: Callable[[], None] = lambda: None

    # -- state ---------------------------------------------------------------------------

    def ready(self) -> None:
        """Load the key and claim the directory now (a runtime does this at start).

        Raises:
            ConfigError: the key is missing (production), unreadable, or the directory belongs
                to another key or cannot be created.
        """
        with self._lock:
            self._signing_key()

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            key = self._key_source()
            self.store.claim(key.public_key())
            self._key = key
        return self._key

    def _refresh(self) -> None:
        """Re-read the latest checkpoint (another process may have written one). Lock held."""
        public = self._signing_key().public_key()
        latest = self.store.latest()
        self._loaded = True
        if latest is None or latest.seq < self._latest_seq:
            return
        if not latest.verifies_with(public):
            raise ChainBroken(latest.seq, f"checkpoint {self.store.path / latest.name} does not verify with "
                                          "this server's key (forged or replaced); refusing to append")
        self._note(latest)

    def _note(self, cp: Checkpoint) -> None:
        if cp.seq >= self._latest_seq:
            self._latest_seq, self._latest_hash = cp.seq, cp.hash
            self._due_at = cp.at.timestamp() + self.every_seconds

    def _check_extends(self, seq: int, hash_: str) -> None:
        """Refuse a committed head (``seq``, ``hash_``) that does not extend the latest checkpoint."""
        latest, name = self._latest_seq, self.store.path / file_name(self._latest_seq)
        if latest == 0:
            return
        if seq < latest:
            what = "the log is empty" if seq == 0 else f"the chain head is seq {seq}"
            raise ChainBroken(seq + 1, f"checkpoint {name} covers seq {latest} but {what}: events were deleted; "
                                       "refusing to append (a new chain would hide the loss)")
        if seq == latest and hash_ != self._latest_hash:
            raise ChainBroken(seq, f"seq {seq} has hash {hash_} but checkpoint {name} recorded "
                                   f"{self._latest_hash} (rewritten); refusing to append")

    def _due(self, seq: int) -> bool:
        if seq <= self._latest_seq:
            return False
        return seq // self.every_events > self._latest_seq // self.every_events or self.clock.time() >= self._due_at

    # -- the hooks -----------------------------------------------------------------------

    def on_append(self, conn: Connection, seq: int, prev_hash: str) -> None:
        """Called by ``append_event`` after inserting ``seq``, in its transaction (head locked).

        Raises:
            ChainBroken: the chain does not extend the latest checkpoint (see module doc).
            ConfigError: the server key or the directory is unusable.
            CheckpointError: the last due checkpoint failed and this one cannot be written
                either (no money moves while its history cannot be anchored).
        """
        prev = seq - 1
        first = _first_in_transaction(conn, seq)
        if not self._loaded or seq == 1 or prev < self._latest_seq:
            with self._lock:
                self._refresh()
        if prev <= self._latest_seq:
            self._check_extends(prev, prev_hash)
        if not first or not self._due(prev):
            return
        if self._failure is not None:
            # the last due checkpoint failed: write this one now, or refuse the append
            try:
                self._write_due(prev, prev_hash)
            except CheckpointError as exc:
                raise CheckpointError(f"no checkpoint can be written, so nothing more is appended: {exc}") from None
            self._failure = None
            return
        conn.info[_PENDING] = (self, prev, prev_hash)  # written when this transaction is over

    def write_pending(self, seq: int, hash_: str) -> None:
        """Write the checkpoint ``on_append`` found due, once the appender's transaction ended.

        Never raises (the transaction it follows is over): a failure is logged and kept, and
        the next due append must then write its checkpoint itself or fail.
        """
        try:
            self._write_due(seq, hash_)
        except Exception as exc:
            log.error("audit checkpoint of seq %d not written: %s", seq, exc)
            self._failure = exc
        else:
            self._failure = None

    def _write_due(self, seq: int, hash_: str) -> None:
        with self._lock:
            self._refresh()  # another process may have checkpointed meanwhile
            if seq <= self._latest_seq:
                self._check_extends(seq, hash_)
            elif self._due(seq):
                self._write(seq, hash_)

    def tick(self, engine: Engine, *, force: bool = False) -> Checkpoint | None:
        """Checkpoint the committed head if it is due (or ``force``); returns what was written.

        For a log that went quiet before the next N-event checkpoint. Raises as ``on_append``.
        """
        seq, hash_ = read_head(engine)  # its own short transaction: a committed head
        with self._lock:
            self._refresh()
            if seq <= self._latest_seq:
                self._check_extends(seq, hash_)
            elif force or self._due(seq):
                return self._write(seq, hash_)
        return None

    def _write(self, seq: int, hash_: str) -> Checkpoint:
        try:
            self.make_durable()  # a power loss must not leave a checkpoint ahead of the chain
        except OSError as exc:
            raise CheckpointError(f"the database could not be synced before checkpoint {seq}: {exc}") from exc
        cp = Checkpoint.sign(seq, hash_, self.clock.now(), self._signing_key())
        if self.store.write(cp):
            self.written += 1
        self._note(cp)
        return cp
