"""Passkeys (WebAuthn) as a person's credential: enrolment, sign-in, and signing a decision.

The ceremonies use the ``webauthn`` library. Registration asks for attestation "none" (the
desk trusts the invitation, not the authenticator's maker), a resident key and user
verification where the authenticator can ("preferred"); user presence is always required.
A decision is signed by an assertion whose challenge is the SHA-256 of the decision
document's exact text (``treasury.people.credentials``): ``webauthn_signed`` wraps the
browser's answer as a ``SignedDecision`` that the run service accepts like an SSHSIG one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, generate_challenge, parse_client_data_json
from webauthn.helpers.exceptions import InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from treasury.errors import DecisionRefused
from treasury.people.credentials import (
    CREDENTIAL_ENROLLED,
    Passkey,
    RelyingParty,
    advance_sign_count,
    check_assertion,
    envelope_text,
    parse_envelope,
    passkey_by_id,
    passkeys_of,
    save_passkey,
)
from treasury.people.decisions import SignedDecision
from treasury.people.invites import redeem_invite
from treasury.people.tables import invites

__all__ = [
    "CREDENTIAL_ENROLLED", "Passkey", "RelyingParty", "authentication_options", "enrol", "passkey_by_id",
    "passkeys_of", "registration_options", "save_passkey", "verify_registration", "verify_sign_in",
    "webauthn_signed",
]


def registration_options(rp: RelyingParty, person: str, display_name: str,
                         exclude: Sequence[str]) -> tuple[str, bytes]:
    """(options JSON for ``navigator.credentials.create``, the challenge to keep for the answer)."""
    challenge = generate_challenge()
    options = generate_registration_options(
        rp_id=rp.rp_id, rp_name=rp.rp_name, user_name=person, user_id=person.encode(),
        user_display_name=display_name, challenge=challenge,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in exclude])
    return options_to_json(options), challenge


def verify_registration(rp: RelyingParty, person: str, challenge: bytes, response_json: str, *,
                        now: datetime | None = None) -> Passkey:
    """The credential a ``navigator.credentials.create`` answer enrolls (not yet stored).

    Raises:
        DecisionRefused: naming what is wrong (challenge, origin, rp id, presence, malformed).
    """
    try:
        verified = verify_registration_response(
            credential=response_json, expected_challenge=challenge, expected_rp_id=rp.rp_id,
            expected_origin=rp.origin, require_user_presence=True, require_user_verification=False)
    except InvalidRegistrationResponse as exc:
        raise DecisionRefused(f"passkey registration for {person!r} refused: {exc}") from None
    except Exception as exc:  # malformed JSON, base64 or CBOR
        raise DecisionRefused(f"passkey registration for {person!r} is malformed: {type(exc).__name__}") from None
    return Passkey(credential_id=bytes_to_base64url(verified.credential_id), person=person,
                   public_key=verified.credential_public_key, sign_count=verified.sign_count,
                   created_at=now or datetime.now(UTC), rp_id=rp.rp_id, origin=rp.origin)


def enrol(conn: Connection, rp: RelyingParty, token: str, challenge: bytes, response_json: str, *,
          now: datetime, audit: Any, display_name: str | None = None) -> Passkey:
    """Redeem an invitation and store the credential it enrolls, audited ``credential.enrolled``.

    All in ``conn``'s transaction: a refused registration leaves the invitation unused when the
    caller rolls back. ``audit`` is ``append_event``-shaped.

    Raises:
        DecisionRefused: the invitation is unknown, used or expired, or the registration is refused.
    """
    from sqlalchemy import select

    person, invite_id = redeem_invite(conn, token, now=now)
    passkey = verify_registration(rp, person, challenge, response_json, now=now)
    by = conn.execute(select(invites.c.created_by).where(invites.c.id == invite_id)).scalar_one()
    save_passkey(conn, passkey, enrolled_by=str(by), invite_id=invite_id)
    audit(conn, type=CREDENTIAL_ENROLLED, actor=person, at=now, run_id=None, step_id=None,
          payload={"person": person, "credential_id": passkey.credential_id, "invite": invite_id,
                   "invited_by": str(by), "rp_id": passkey.rp_id, "origin": passkey.origin,
                   "public_key": bytes_to_base64url(passkey.public_key)})
    return passkey


def authentication_options(rp: RelyingParty, challenge: bytes, allow: Sequence[str]) -> str:
    """Options JSON for ``navigator.credentials.get``. For a decision the challenge is
    ``hashlib.sha256(document_text.encode()).digest()``."""
    return options_to_json(generate_authentication_options(
        rp_id=rp.rp_id, challenge=challenge, user_verification=UserVerificationRequirement.PREFERRED,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in allow]))


def _browser_fields(response_json: str) -> dict[str, Any]:
    """An ``AuthenticationCredential`` JSON (what the browser returns) as envelope fields."""
    try:
        cred = json.loads(response_json)
        response = cred["response"]
        fields: dict[str, Any] = {
            "credential_id": str(cred.get("rawId") or cred["id"]),
            "authenticator_data": str(response["authenticatorData"]),
            "client_data_json": str(response["clientDataJSON"]),
            "signature": str(response["signature"]),
            "user_handle": response.get("userHandle") or None,
        }
        client = parse_client_data_json(base64url_to_bytes(fields["client_data_json"]))
    except (ValueError, KeyError, TypeError):
        raise DecisionRefused("the passkey answer is not a WebAuthn assertion (id, response.authenticatorData, "
                              "response.clientDataJSON, response.signature)") from None
    fields["origin"] = client.origin
    return fields


def verify_sign_in(rp: RelyingParty, conn: Connection, challenge: bytes, response_json: str, *,
                   now: datetime | None = None) -> str:
    """The person a sign-in assertion proves; its sign count is recorded.

    Raises:
        DecisionRefused: unknown credential, a wrong challenge/origin/rp, or a count that went back.
    """
    fields = _browser_fields(response_json)
    body = parse_envelope(envelope_text(fields))
    passkey = passkey_by_id(conn, body["credential_id"])
    if passkey is None:
        raise DecisionRefused(f"credential {body['credential_id']} is not an enrolled passkey")
    count = check_assertion(passkey, challenge, body, rp=rp)
    advance_sign_count(conn, passkey.credential_id, count, at=now or datetime.now(UTC))
    return passkey.person


def webauthn_signed(document: str, response_json: str, rp: RelyingParty | None = None) -> SignedDecision:
    """A ``SignedDecision`` whose signature is the passkey assertion (a JSON string starting with
    ``{"webauthn":``), accepted wherever an SSHSIG-signed decision is.

    Raises:
        DecisionRefused: the answer is not a WebAuthn assertion.
    """
    fields = _browser_fields(response_json)
    if rp is not None:
        fields["rp_id"] = rp.rp_id
    return SignedDecision(document, envelope_text(fields))
