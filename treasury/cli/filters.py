"""Checking the values of filter options: a value that cannot match is a usage error (exit 2).

``treasury runs --state BOGUS`` used to print an empty list and exit 0, which reads as "no
such runs" when the truth is "no such state". Each check here matches without regard to
case, and refuses an unknown value with the valid ones listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import click
from sqlalchemy import Engine, select

from treasury.errors import UnknownRun
from treasury.models import RunState
from treasury.store.tables import runs


def _listed(values: Iterable[str], limit: int = 30) -> str:
    items = sorted(set(values))
    more = f", … ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more if items else "(none yet)"


def run_state(value: str | None, option: str = "--state") -> str | None:
    """The run state named by ``value`` (any case), or None for no filter.

    Raises:
        click.BadParameter: not a run state; lists the states.
    """
    if value is None:
        return None
    wanted = value.strip().upper()
    states = [s.value for s in RunState]
    if wanted not in states:
        raise click.BadParameter(f"{value!r} is not a run state; valid states: {', '.join(states)}",
                                 param_hint=option)
    return wanted


def workflow_name(engine: Engine, value: str | None, option: str = "--workflow") -> str | None:
    """The workflow named by ``value`` (any case) among those that have runs, or None.

    Raises:
        click.BadParameter: no run of that workflow; lists the workflows that have runs.
    """
    if value is None:
        return None
    with engine.connect() as conn:
        known = [r[0] for r in conn.execute(select(runs.c.workflow).distinct())]
    for name in known:
        if name.lower() == value.strip().lower():
            return str(name)
    raise click.BadParameter(f"no run of a workflow named {value!r}; workflows with runs: {_listed(known)}",
                             param_hint=option)


def event_types(engine: Engine, values: Sequence[str], option: str = "--type") -> list[str]:
    """The audit event types named by ``values`` (any case).

    Known types are the audit vocabulary (``treasury.audit.events``) and any type already in
    the log.

    Raises:
        click.BadParameter: an unknown type; lists the known ones.
    """
    if not values:
        return []
    from treasury.audit.events import ALL_TYPES
    from treasury.audit.tables import audit_events

    known = set(ALL_TYPES)
    out: list[str] = []
    for value in values:
        wanted = value.strip().lower()
        if wanted not in known:
            with engine.connect() as conn:
                known |= {r[0] for r in conn.execute(select(audit_events.c.type).distinct())}
        if wanted not in known:
            raise click.BadParameter(f"{value!r} is not an audit event type; valid types: {_listed(known, 100)}",
                                     param_hint=option)
        out.append(wanted)
    return out


def existing_run(engine: Engine, run_id: str | None) -> str | None:
    """``run_id`` when such a run exists (or None for no filter).

    Raises:
        UnknownRun: no run has this id (exit 2).
    """
    if run_id is None:
        return None
    with engine.connect() as conn:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise UnknownRun(run_id)
    return run_id
