"""Signed checkpoints of the audit chain, kept in a directory outside the database.

A checkpoint says "the chain had hash H at seq S at time T", signed with the server's
Ed25519 key. The runner writes one every N events and every M minutes (``anchoring.py``);
``treasury audit verify`` checks the database against all of them (``checkpoint_verify.py``).

The directory holds::

    server-ed25519.pub                          the signing key's public half (PEM)
    checkpoint-00000000000000000100.json        one file per checkpointed seq

Files are written to a temporary name and hard-linked into place, so a checkpoint appears
whole or not at all and an existing one is never replaced: two processes writing the same
seq agree (the chain is append-only), and a different hash for a seq already written is
refused as evidence of a rewritten chain.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from treasury.audit.canonical import canonical_json, format_at, utc
from treasury.audit.server_key import key_id, load_public_key, public_pem, verifies
from treasury.errors import AuditError, ChainBroken, ConfigError

VERSION = 1
PUBLIC_KEY_FILE = "server-ed25519.pub"
DIR_SETTING = "TREASURY_CHECKPOINT_DIR"
# Domain separation: a checkpoint signature can never be replayed as any other signed thing.
_CONTEXT = b"treasury audit checkpoint v1\x00"
_NAME = re.compile(r"^checkpoint-(\d{20})\.json$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(AuditError):
    """A checkpoint cannot be written, or a checkpoint file is not what it claims."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement: the chain's hash at ``seq`` was ``hash`` at time ``at``."""

    seq: int
    hash: str
    at: datetime
    key_id: str
    signature: str  # hex

    @property
    def name(self) -> str:
        return file_name(self.seq)

    def body(self) -> dict[str, Any]:
        return {"version": VERSION, "seq": self.seq, "hash": self.hash, "at": format_at(self.at), "key_id": self.key_id}

    def message(self) -> bytes:
        """The exact bytes signed."""
        return _CONTEXT + canonical_json(self.body()).encode("utf-8")

    def to_json(self) -> str:
        return json.dumps({**self.body(), "signature": self.signature}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def sign(cls, seq: int, hash_: str, at: datetime, key: Ed25519PrivateKey) -> Checkpoint:
        unsigned = cls(seq=seq, hash=hash_, at=utc(at), key_id=key_id(key.public_key()), signature="")
        return cls(seq=seq, hash=hash_, at=unsigned.at, key_id=unsigned.key_id,
                   signature=key.sign(unsigned.message()).hex())

    def verifies_with(self, public: Ed25519PublicKey) -> bool:
        """Signed by ``public`` (and naming it)?"""
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            return False
        return self.key_id == key_id(public) and verifies(public, signature, self.message())

    @classmethod
    def parse(cls, text: str, source: str) -> Checkpoint:
        """Read a checkpoint file's text; raises CheckpointError naming ``source`` and the field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object")
        if data.get("version") != VERSION:
            raise CheckpointError(f"{source}: unknown version {data.get('version')!r}")
        seq, hash_, at, kid, sig = (data.get(k) for k in ("seq", "hash", "at", "key_id", "signature"))
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise CheckpointError(f"{source}: seq must be a positive whole number")
        if not isinstance(hash_, str) or not _HEX64.match(hash_):
            raise CheckpointError(f"{source}: hash must be 64 lowercase hex digits")
        if not isinstance(kid, str) or not isinstance(sig, str) or not isinstance(at, str):
            raise CheckpointError(f"{source}: at, key_id and signature must be strings")
        try:
            when = utc(datetime.fromisoformat(at))
        except ValueError:
            raise CheckpointError(f"{source}: at is not an ISO 8601 time") from None
        return cls(seq=seq, hash=hash_, at=when, key_id=kid, signature=sig)


def file_name(seq: int) -> str:
    """``checkpoint-<seq, 20 digits>.json``: names sort in seq order."""
    return f"checkpoint-{seq:020d}.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointStore:
    """A directory of checkpoints. Reading never creates it; the first write does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def public_key_path(self) -> Path:
        return self.path / PUBLIC_KEY_FILE

    def seqs(self) -> list[int]:
        """The seqs that have a checkpoint file, ascending (empty when the directory is absent)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot list the checkpoints ({exc.strerror})") from None
        return sorted(int(m[1]) for m in map(_NAME.match, names) if m)

    def read(self, seq: int) -> Checkpoint:
        """The checkpoint of ``seq``; raises CheckpointError when it is unreadable or misnamed."""
        path = self.path / file_name(seq)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read ({exc})") from None
        cp = Checkpoint.parse(text, str(path))
        if cp.seq != seq:
            raise CheckpointError(f"{path}: the file says seq {cp.seq} (renamed)")
        return cp

    def latest(self) -> Checkpoint | None:
        seqs = self.seqs()
        return self.read(seqs[-1]) if seqs else None

    def all(self) -> Iterator[Checkpoint]:
        for seq in self.seqs():
            yield self.read(seq)

    def public_key(self) -> Ed25519PublicKey | None:
        """The public key stored beside the checkpoints (None when there is none)."""
        if not self.public_key_path.exists():
            return None
        return load_public_key(self.public_key_path)

    def claim(self, public: Ed25519PublicKey) -> None:
        """Make sure the directory exists and names ``public`` as its signer.

        Raises:
            ConfigError: the directory belongs to another key (its checkpoints would not verify
                with this one), or cannot be created.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.path} ({exc.strerror})", source="environment",
                              field=DIR_SETTING) from None
        existing = self.public_key()
        if existing is None:
            self._link_new(PUBLIC_KEY_FILE, public_pem(public), 0o644)
            existing = self.public_key()
        if existing is None or key_id(existing) != key_id(public):
            raise ConfigError(
                f"{self.path} holds checkpoints signed by {key_id(existing) if existing else 'no key'}, "
                f"but this server's key (TREASURY_SERVER_KEY_FILE) is {key_id(public)}",
                source="environment", field=DIR_SETTING,
            )

    def write(self, cp: Checkpoint) -> bool:
        """Add ``cp``; True if written, False if the same statement was already there.

        Raises:
            ChainBroken: a checkpoint of the same seq with another hash exists (the chain was
                rewritten since it was written).
            CheckpointError: the file cannot be written.
        """
        if self._link_new(cp.name, cp.to_json().encode("utf-8"), 0o644):
            return True
        existing = self.read(cp.seq)
        if existing.hash != cp.hash:
            raise ChainBroken(
                cp.seq,
                f"checkpoint {self.path / cp.name} recorded hash {existing.hash} at {format_at(existing.at)}, "
                f"the chain now has {cp.hash} (rewritten)",
            )
        return False

    def _link_new(self, name: str, data: bytes, mode: int) -> bool:
        """Create ``name`` with ``data`` atomically; False (and nothing changed) if it exists."""
        final = self.path / name
        tmp = self.path / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)  # the umask may have narrowed it
                os.link(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CheckpointError(f"cannot write {final} ({exc.strerror})") from None
        _fsync_dir(self.path)
        return True
