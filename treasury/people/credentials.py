"""Passkey credentials: the stored WebAuthn credentials and the assertion that signs a decision.

A passkey signs a decision document by answering a WebAuthn ``navigator.credentials.get``
whose challenge is the SHA-256 of the document's exact text. The decision's signature is then
a self-describing JSON envelope (canonical: sorted keys, no spaces)::

    {"webauthn":{"authenticator_data":"…","client_data_json":"…","credential_id":"…",
     "origin":"http://localhost:8700","rp_id":"localhost","signature":"…","user_handle":null}}

(binary fields base64url without padding). ``verify_assertion`` re-checks it with the
``webauthn`` library against the stored credential: challenge = SHA-256 of the document, type
``webauthn.get``, the origin and rp id hash of the relying party the credential was enrolled
for, the user-present flag, and the signature under the credential's public key. The
credential must be enrolled to the document's person, no later than the document was issued.

User verification (PIN, biometric) is *preferred*, not required: a security key without a PIN
still proves possession and presence; whether the person was verified is in the stored
authenticator data for anyone who wants to see it.

The sign count (a cloned authenticator shows a count that goes back) can only be judged at
the door, against the last count seen (``advance_sign_count``); a later re-verification
cannot tell, since the counts seen in between are not part of the signed data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from webauthn import verify_authentication_response
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_authenticator_data
from webauthn.helpers.exceptions import InvalidAuthenticationResponse

from treasury.errors import DecisionRefused
from treasury.people.tables import passkeys

ENVELOPE_PREFIX = '{"webauthn":'
_FIELDS = ("authenticator_data", "client_data_json", "credential_id", "signature")


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the rp id (a host name) and the console's exact origin."""

    rp_id: str            # "localhost" in the demo
    rp_name: str          # "treasury"
    origin: str           # "http://localhost:8700"


@dataclass(frozen=True)
class Passkey:
    """A stored credential."""

    credential_id: str    # base64url, no padding
    person: str
    public_key: bytes     # COSE key as the webauthn library returns it
    sign_count: int
    created_at: datetime
    rp_id: str = "localhost"
    origin: str = "http://localhost:8700"


def is_passkey_signature(signature: str) -> bool:
    return signature.startswith(ENVELOPE_PREFIX)


def envelope_text(fields: dict[str, Any]) -> str:
    """The canonical envelope text for an assertion's fields."""
    return json.dumps({"webauthn": fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_envelope(signature: str) -> dict[str, Any]:
    """The assertion's fields.

    Raises:
        DecisionRefused: not a well-formed passkey envelope.
    """
    try:
        body = json.loads(signature)["webauthn"]
    except (ValueError, KeyError, TypeError):
        raise DecisionRefused("the passkey assertion is not a JSON {\"webauthn\": {...}} object") from None
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) and body[f] for f in _FIELDS):
        raise DecisionRefused(f"the passkey assertion needs {', '.join(_FIELDS)}")
    return body


def challenge_for(document: str) -> bytes:
    """The WebAuthn challenge that signs ``document``: the SHA-256 of its exact text."""
    return hashlib.sha256(document.encode()).digest()


# ---------------------------------------------------------------- storage


def _passkey(row: Any) -> Passkey:
    return Passkey(credential_id=row.credential_id, person=row.person,
                   public_key=base64url_to_bytes(row.public_key), sign_count=int(row.sign_count),
                   created_at=_aware(row.created_at), rp_id=row.rp_id, origin=row.origin)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def save_passkey(conn: Connection, passkey: Passkey, *, enrolled_by: str, invite_id: str | None) -> None:
    """Store a newly enrolled credential.

    Raises:
        DecisionRefused: that credential id is already enrolled.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        with conn.begin_nested():
            conn.execute(insert(passkeys).values(
                credential_id=passkey.credential_id, person=passkey.person,
                public_key=bytes_to_base64url(passkey.public_key), sign_count=passkey.sign_count,
                rp_id=passkey.rp_id, origin=passkey.origin, enrolled_by=enrolled_by, invite_id=invite_id,
                created_at=passkey.created_at, last_used_at=None))
    except IntegrityError:
        raise DecisionRefused(f"credential {passkey.credential_id} is already enrolled") from None


def passkeys_of(conn: Connection, person: str) -> list[Passkey]:
    q = select(passkeys).where(passkeys.c.person == person).order_by(passkeys.c.created_at)
    return [_passkey(r) for r in conn.execute(q)]


def passkey_by_id(conn: Connection, credential_id: str) -> Passkey | None:
    row = conn.execute(select(passkeys).where(passkeys.c.credential_id == credential_id)).first()
    return _passkey(row) if row is not None else None


def people_with_passkeys(conn: Connection) -> set[str]:
    return {str(p) for p in conn.execute(select(passkeys.c.person).distinct()).scalars()}


def advance_sign_count(conn: Connection, credential_id: str, new_count: int, *, at: datetime) -> None:
    """Record the count an assertion showed; refuse one that did not go up (a cloned authenticator).

    Authenticators that keep no count always say 0, which is accepted while the stored count is 0.

    Raises:
        DecisionRefused: the count is not above the last one seen.
    """
    current = passkey_by_id(conn, credential_id)
    if current is None:
        raise DecisionRefused(f"credential {credential_id} is not enrolled")
    if (new_count > 0 or current.sign_count > 0) and new_count <= current.sign_count:
        raise DecisionRefused(
            f"credential {credential_id} of {current.person!r} showed sign count {new_count}, not above the "
            f"{current.sign_count} already seen: the authenticator may have been cloned; refused")
    conn.execute(update(passkeys).where(passkeys.c.credential_id == credential_id)
                 .values(sign_count=new_count, last_used_at=at))


# ---------------------------------------------------------------- verification


def assertion_credential(body: dict[str, Any]) -> dict[str, Any]:
    """The envelope as the ``AuthenticationCredential`` JSON the webauthn library reads."""
    response: dict[str, Any] = {"authenticatorData": body["authenticator_data"],
                                "clientDataJSON": body["client_data_json"], "signature": body["signature"]}
    if body.get("user_handle"):
        response["userHandle"] = body["user_handle"]
    return {"id": body["credential_id"], "rawId": body["credential_id"], "response": response,
            "type": "public-key"}


def check_assertion(passkey: Passkey, challenge: bytes, body: dict[str, Any], *, current_sign_count: int = 0,
                    rp: RelyingParty | None = None) -> int:
    """Verify an assertion against ``passkey`` (and ``rp`` when given); the sign count it showed.

    Raises:
        DecisionRefused: naming what does not verify.
    """
    rp_id, origin = (rp.rp_id, rp.origin) if rp is not None else (passkey.rp_id, passkey.origin)
    for name, want in (("rp_id", rp_id), ("origin", origin)):
        if body.get(name) not in (None, want):
            raise DecisionRefused(f"the passkey assertion was made for {name} {body[name]!r}, not {want!r}")
    try:
        verified = verify_authentication_response(
            credential=assertion_credential(body), expected_challenge=challenge, expected_rp_id=rp_id,
            expected_origin=origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=current_sign_count, require_user_verification=False)
    except InvalidAuthenticationResponse as exc:
        raise DecisionRefused(f"passkey assertion of credential {body['credential_id']} refused: {exc}") from None
    except Exception as exc:  # malformed base64 or CBOR inside the assertion
        raise DecisionRefused(f"passkey assertion of credential {body['credential_id']} is malformed: "
                              f"{type(exc).__name__}") from None
    return int(verified.new_sign_count)


def verify_assertion(document: str, person: str, issued_at: datetime, signature: str,
                     lookup: Callable[[str], Passkey | None]) -> tuple[Passkey, int]:
    """A decision's passkey signature: (the credential that made it, the sign count it showed).

    The credential must be enrolled to ``person`` no later than ``issued_at`` (to the second).

    Raises:
        DecisionRefused: naming what is wrong.
    """
    body = parse_envelope(signature)
    credential_id = body["credential_id"]
    passkey = lookup(credential_id)
    if passkey is None:
        raise DecisionRefused(f"credential {credential_id} is not an enrolled passkey")
    if passkey.person != person:
        raise DecisionRefused(f"credential {credential_id} is enrolled to {passkey.person!r}, not {person!r}")
    if passkey.created_at.replace(microsecond=0) > issued_at:
        raise DecisionRefused(f"credential {credential_id} was enrolled at {passkey.created_at.isoformat()}, "
                              f"after the decision was issued ({issued_at.isoformat()})")
    return passkey, check_assertion(passkey, challenge_for(document), body)


def sign_count_of(signature: str) -> int:
    """The sign count in a passkey envelope's authenticator data."""
    return int(parse_authenticator_data(base64url_to_bytes(parse_envelope(signature)["authenticator_data"]))
               .sign_count)


CREDENTIAL_ENROLLED = "credential.enrolled"


def audited_passkeys(events: Iterable[Any]) -> dict[str, Passkey]:
    """Each credential as its ``credential.enrolled`` audit event recorded it: the person, the
    public key, the relying party, and the event's time as the enrolment time. Re-verification
    trusts these, not the ``passkeys`` rows a database owner could rewrite."""
    out: dict[str, Passkey] = {}
    for e in events:
        p = e.payload
        try:
            out[str(p["credential_id"])] = Passkey(
                credential_id=str(p["credential_id"]), person=str(p["person"]),
                public_key=base64url_to_bytes(str(p["public_key"])), sign_count=0, created_at=_aware(e.at),
                rp_id=str(p["rp_id"]), origin=str(p["origin"]))
        except (KeyError, ValueError):
            continue
    return out


def public_key_pem(public_key: bytes) -> str:
    """A COSE public key as PEM (SubjectPublicKeyInfo), for an auditor's own tools."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography

    key = decoded_public_key_to_cryptography(decode_credential_public_key(public_key))
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
