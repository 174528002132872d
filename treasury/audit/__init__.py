"""The audit history: an append-only, hash-chained log of everything that moves money.

Write with ``append_event`` inside the transaction of the state change it records; check
with ``verify_chain``; read with ``query_events``; hand an auditor ``export_run``'s bundle,
which ``verify_bundle`` checks on its own. See ``treasury.audit.chain`` for the hash design.
"""

from __future__ import annotations

from treasury.audit.bundle import check_bundle_against_db
from treasury.audit.chain import GENESIS_HASH
from treasury.audit.log import (
    AuditRecord,
    NewEvent,
    VerifyResult,
    append_event,
    append_events,
    append_through,
    export_run,
    query_events,
    read_head,
    redact,
    verify_bundle,
    verify_chain,
)

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "NewEvent",
    "VerifyResult",
    "append_event",
    "append_events",
    "append_through",
    "check_bundle_against_db",
    "export_run",
    "query_events",
    "read_head",
    "redact",
    "verify_bundle",
    "verify_chain",
]
