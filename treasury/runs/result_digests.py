"""Stored step results are checked against the digest audited when each step succeeded.

An approval binds ``${{ steps.X.result.* }}`` as template text (the value is unknown when
approval is asked), so the stored result of step X decides what a later step sends. The
``step.state`` event that records X's success carries ``result_digest``, the digest of the
result as stored in the same transaction; before a step resolves templates that read
``steps.X.result``, the stored result must still hash to it. A success event without the
field was written before results were digested (nothing to compare against).

Parameters stored at a step's first start are re-resolved at every later start and must be
the same: a database owner cannot choose what a redelivered step sends either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from treasury.audit.events import STEP_PARAMS_CHANGED, STEP_RESULT_CHANGED, STEP_STATE
from treasury.audit.tables import audit_events, payload_text_column
from treasury.language.templates import TemplateError, find_refs
from treasury.people.decisions import digest_of

RESULT_CHANGED = STEP_RESULT_CHANGED
PARAMS_CHANGED = STEP_PARAMS_CHANGED
SUCCEEDED = "SUCCEEDED"


def result_digest(result: Any) -> str:
    """The digest of a step's stored result (``None`` included: an empty result is a value too)."""
    return digest_of(result)


def steps_read(params: Any) -> list[str]:
    """The step ids whose results ``params`` reads through templates (in order, once each)."""
    try:
        refs = find_refs(params or {})
    except TemplateError:
        return []
    return list(dict.fromkeys(r.step for r in refs if r.step is not None))


def audited_digests(conn: Connection, run_id: str | None,
                    step_ids: Iterable[str] | None = None) -> dict[tuple[str, str], str | None]:
    """(run id, step id) -> ``result_digest`` of the latest audited success (None: that event has
    none). A step absent from the answer has no audited success at all. ``run_id`` None: every run."""
    c = audit_events.c
    q = select(c.run_id, c.step_id, payload_text_column(conn)).where(c.type == STEP_STATE)
    if run_id is not None:
        q = q.where(c.run_id == run_id)
    if step_ids is not None:
        wanted = sorted(set(step_ids))
        if not wanted:
            return {}
        q = q.where(c.step_id.in_(wanted))
    out: dict[tuple[str, str], str | None] = {}
    for rid, step_id, text in conn.execute(q.order_by(c.seq)):
        payload = json.loads(text)
        if isinstance(payload, Mapping) and payload.get("to") == SUCCEEDED:
            digest = payload.get("result_digest")
            out[(str(rid), str(step_id))] = str(digest) if digest is not None else None
    return out


def changed_results(conn: Connection, run_id: str, stored: Mapping[str, Any],
                    step_ids: Sequence[str]) -> list[str]:
    """Those of ``step_ids`` whose stored result (``stored``: step id -> result) no longer
    hashes to the digest audited at its success, or whose success was never audited."""
    read = [s for s in step_ids if s in stored]
    audited = audited_digests(conn, run_id, read)
    missing = object()  # no audited success at all
    changed = []
    for step_id in read:
        want = audited.get((run_id, step_id), missing)
        if want is missing or (want is not None and result_digest(stored[step_id]) != want):
            changed.append(step_id)
    return changed


def changed_text(step_ids: Sequence[str]) -> str:
    """What is wrong, naming the steps: the form ``audit verify`` reports."""
    names = ", ".join(repr(s) for s in step_ids)
    return f"the stored result of step {names} is not the result recorded in the audit trail when it succeeded"


def changed_message(step_ids: Sequence[str]) -> str:
    """``changed_text`` and what was done about it: the parked step's reason."""
    return f"{changed_text(step_ids)} (edited in the database?); the parameters read from it were not used"


def params_changed_message(step_id: str) -> str:
    """The parked step's reason when its stored parameters are not what its templates resolve to."""
    return (f"the stored parameters of step {step_id!r} are not what its templates resolve to from the "
            "signed inputs and the audited results (edited in the database?)")
