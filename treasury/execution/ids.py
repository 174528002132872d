"""Deterministic identifiers: run ids, and client ids derived from (run, step, leg).

A client id is written in the PREPARED record before any byte is sent, and every
attempt for the same (run, step, leg) reuses it. It is at most 32 characters of
``[A-Za-z0-9]``, which every HashKey endpoint accepts.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_RUN_ID = re.compile(r"^r[0-9a-z]{11}$")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_run_id() -> str:
    """A fresh run id: ``r`` + 11 random base-36 characters (about 57 bits)."""
    return "r" + "".join(secrets.choice(_ALPHABET) for _ in range(11))


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


def client_id_for(run_id: str, step_id: str, leg: int | None = None) -> str:
    """The client id for one request: ``T`` + run id + 8 hex of the step id (+ ``L`` + leg).

    Deterministic: the same (run, step, leg) always gives the same id; different steps
    or legs give different ids. At most 25 characters, alphanumeric only.
    """
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    if leg is not None and not 0 <= leg < 100:
        raise ValueError(f"leg out of range: {leg}")
    step_hash = hashlib.sha256(step_id.encode()).hexdigest()[:8]
    cid = f"T{run_id}{step_hash}"
    if leg is not None:
        cid += f"L{leg:02d}"
    return cid
