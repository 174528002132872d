"""The passkey side of the console: what the pages ask of WebAuthn, as a small Protocol.

``Passkeys`` is what sign-in, enrolment and the decision pages need; ``PasskeyCeremony``
implements it over ``treasury.people.passkeys`` and ``treasury.people.invites`` with the
relying party from the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from treasury.clock import Clock
from treasury.people import passkeys
from treasury.people.decisions import SignedDecision
from treasury.people.invites import redeem_invite
from treasury.people.passkeys import RelyingParty


class Passkeys(Protocol):
    def has_passkey(self, person: str) -> bool: ...

    def assertion_options(self, person: str, challenge: bytes) -> str:
        """Options JSON for ``navigator.credentials.get``, limited to ``person``'s passkeys."""
        ...

    def signed(self, document: str, response_json: str) -> SignedDecision:
        """The decision signed by the passkey assertion (verified at the door, not here)."""
        ...

    def sign_in_options(self, challenge: bytes) -> str: ...

    def sign_in(self, challenge: bytes, response_json: str) -> str:
        """The person whose passkey answered ``challenge``; raises DecisionRefused otherwise."""
        ...

    def invited(self, token: str) -> str:
        """The person an unused, unexpired invitation is for (the invitation stays unused)."""
        ...

    def enrol_options(self, person: str, display_name: str) -> tuple[str, bytes]:
        """(options JSON for ``navigator.credentials.create``, the challenge to keep)."""
        ...

    def enrol(self, token: str, challenge: bytes, response_json: str) -> str:
        """Redeem the invitation and store the new passkey, in one transaction; returns the person."""
        ...


@dataclass(frozen=True)
class PasskeyCeremony:
    """``Passkeys`` over the stored credentials and invitations (``treasury.people``).

    ``audit`` is ``append_event``-shaped: an enrolment is audited in its own transaction.
    """

    engine: Engine
    rp: RelyingParty
    clock: Clock
    audit: Callable[..., Any]

    def _ids(self, person: str) -> list[str]:
        with self.engine.connect() as conn:
            return [p.credential_id for p in passkeys.passkeys_of(conn, person)]

    def has_passkey(self, person: str) -> bool:
        return bool(self._ids(person))

    def assertion_options(self, person: str, challenge: bytes) -> str:
        return passkeys.authentication_options(self.rp, challenge, self._ids(person))

    def signed(self, document: str, response_json: str) -> SignedDecision:
        return passkeys.webauthn_signed(document, response_json, self.rp)

    def sign_in_options(self, challenge: bytes) -> str:
        return passkeys.authentication_options(self.rp, challenge, [])  # any passkey of this site: it names its person

    def sign_in(self, challenge: bytes, response_json: str) -> str:
        with self.engine.begin() as conn:
            return passkeys.verify_sign_in(self.rp, conn, challenge, response_json, now=self.clock.now())

    def invited(self, token: str) -> str:
        with self.engine.connect() as conn:  # redeemed to read it, then rolled back: still unused
            person, _ = redeem_invite(conn, token, now=self.clock.now())
            conn.rollback()
        return person

    def enrol_options(self, person: str, display_name: str) -> tuple[str, bytes]:
        return passkeys.registration_options(self.rp, person, display_name, self._ids(person))

    def enrol(self, token: str, challenge: bytes, response_json: str) -> str:
        with self.engine.begin() as conn:
            passkey = passkeys.enrol(conn, self.rp, token, challenge, response_json, now=self.clock.now(),
                                     audit=self.audit)
        return passkey.person
