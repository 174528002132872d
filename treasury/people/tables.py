"""The people tables: accepted signed decisions, passkeys, and enrolment invitations.

``decisions``: the primary key on ``nonce`` is the replay guard: a nonce can be accepted once.
Each row keeps the exact document text, the signature (SSHSIG armor, or a passkey assertion as
JSON) and the key's fingerprint (a passkey's credential id), so any decision can be re-verified
later without trusting the other tables.

``passkeys``: each enrolled WebAuthn credential, its COSE public key and the relying party it
was made for. ``invites``: one-time enrolment links; only the SHA-256 of a token is stored.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

# a WebAuthn credential id is at most 1023 bytes: 1364 characters in base64url
CREDENTIAL_ID_CHARS = 1400

decisions = Table(
    "decisions",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("doc_id", String(80), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("person", String(100), nullable=False),
    Column("run_id", String(16), nullable=True),
    Column("step_id", String(100), nullable=True),
    Column("document", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_fp", String(CREDENTIAL_ID_CHARS), nullable=False),
    Column("registry_digest", String(80), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_decisions_run", "run_id", "step_id", "kind"),
)

passkeys = Table(
    "passkeys",
    metadata,
    Column("credential_id", String(CREDENTIAL_ID_CHARS), primary_key=True),
    Column("person", String(100), nullable=False),
    Column("public_key", Text, nullable=False),  # the COSE key, base64url
    Column("sign_count", BigInteger, nullable=False),
    Column("rp_id", String(255), nullable=False),
    Column("origin", String(255), nullable=False),
    Column("enrolled_by", String(100), nullable=False),
    Column("invite_id", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index("ix_passkeys_person", "person"),
)

invites = Table(
    "invites",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(80), nullable=False, unique=True),  # sha256: + hex; never the token
    Column("person", String(100), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("decision", String(80), nullable=True),  # the doc id of the operator's signed decision
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)
