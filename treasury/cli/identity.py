"""Who is deciding on the command line: ``--identity`` / ``TREASURY_IDENTITY``, with ``--as`` as a cross-check.

The identity (a key file or ``agent:COMMENT``) signs the decision; the person is whoever
registered that key in people.yaml. ``--as NAME`` must then name the same person. Without
an identity, only the simulator environment signs, with NAME's demo key (``treasury demo``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from treasury.cli.context import AppContext
from treasury.errors import DecisionRefused
from treasury.settings import Environment

F = TypeVar("F", bound=Callable[..., Any])


def identity_option(fn: F) -> F:
    """Adds ``--identity KEY`` (a private key file or ``agent:COMMENT``; default TREASURY_IDENTITY)."""
    return click.option(
        "--identity", default=None, metavar="KEY",
        help="your key: an OpenSSH private key file or agent:COMMENT (default: TREASURY_IDENTITY)",
    )(fn)


def who_signs(app: AppContext, people: Any, user: str | None, identity: str | None) -> tuple[str, Any | None]:
    """(person, signer). A signer of None means: the simulator's demo key for ``person``.

    Raises:
        DecisionRefused: an unregistered key, ``--as`` naming someone else, or no identity
            outside the simulator (audited as ``decision.refused``).
        click.UsageError: neither ``--as`` nor an identity.
    """
    try:
        return _who_signs(app, people, user, identity)
    except DecisionRefused as exc:
        from treasury.audit import append_event

        with app.engine().begin() as conn:
            append_event(conn, type="decision.refused", actor=user or "unknown", at=app.clock.now(),
                         payload={"kind": "identity", "reason": str(exc)})
        raise


def _who_signs(app: AppContext, people: Any, user: str | None, identity: str | None) -> tuple[str, Any | None]:
    spec = identity or app.settings.identity
    if spec:
        from treasury.people.identity import load_identity

        signer = load_identity(spec)
        owner = people.owner_of(signer.public)
        if owner is None:
            raise DecisionRefused(f"the identity key {signer.public.fingerprint} is not registered to anyone in "
                                  "people.yaml (`treasury people add-key NAME PUBKEY_FILE`)")
        if user is not None and user != owner:
            raise DecisionRefused(f"--as {user} does not match the identity key, which is {owner!r}'s")
        return owner, signer
    if user is None:
        raise click.UsageError("say who decides: --identity KEY (or TREASURY_IDENTITY), or --as NAME in the simulator")
    if app.settings.env != Environment.SIMULATOR:
        raise DecisionRefused(f"no identity to sign as {user!r}: outside the simulator every decision is signed "
                              "with the person's own key; set TREASURY_IDENTITY or pass --identity")
    return user, None


def decision_service(app: AppContext, *, require_credentials: bool = True) -> Any:
    """A run service for decisions that need no exchange (schedules, halts, invitations): registry,
    keyring, clock. ``require_credentials=False`` lets production invite a person with no credential yet."""
    from treasury.runs.service import InlineDispatcher, RunContext, RunService
    from treasury.runtime import demo_keyring, load_config

    keys, people, policy = load_config(app.settings, require_credentials=require_credentials)
    ctx = RunContext(keys=keys, approvers=people, policy=policy, executor=None, dispatcher=InlineDispatcher(),
                     clock=app.clock, keyring=demo_keyring(app.settings),
                     decision_max_age=app.settings.decision_max_age, workflows_dir=app.settings.workflows_dir)
    return RunService(app.engine(), ctx)
