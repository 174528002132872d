"""A software WebAuthn authenticator for tests: an ES256 key, and the JSON a browser returns.

``create`` answers ``navigator.credentials.create`` (attestation "none") and ``get`` answers
``navigator.credentials.get``, byte for byte as a browser builds them: clientDataJSON with
type, base64url challenge and origin; authenticator data with the rp id hash, flags and sign
count; the assertion signed over authenticatorData || SHA-256(clientDataJSON).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_data(kind: str, challenge: bytes, origin: str) -> bytes:
    return json.dumps({"type": kind, "challenge": b64url(challenge), "origin": origin, "crossOrigin": False},
                      separators=(",", ":")).encode()


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator, for ``rp_id``."""

    rp_id: str = "localhost"
    origin: str = "http://localhost:8700"
    user_verified: bool = True
    sign_count: int = 0
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def credential_id(self) -> str:
        return b64url(self.credential)

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + self.sign_count.to_bytes(4, "big") + attested

    def _flags(self, present: bool) -> int:
        return (UP if present else 0) | (UV if self.user_verified else 0)

    def create(self, challenge: bytes, *, origin: str | None = None, rp_id: str | None = None,
               present: bool = True) -> str:
        """The registration response JSON for ``challenge``."""
        attested = bytes(16) + len(self.credential).to_bytes(2, "big") + self.credential + self._cose_key()
        auth = self._auth_data(rp_id or self.rp_id, self._flags(present) | AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return json.dumps({
            "id": self.credential_id, "rawId": self.credential_id, "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data("webauthn.create", challenge, origin or self.origin)),
                         "attestationObject": b64url(attestation), "transports": ["internal"]},
            "clientExtensionResults": {}, "authenticatorAttachment": "platform"})

    def get(self, challenge: bytes, *, origin: str | None = None, rp_id: str | None = None, present: bool = True,
            kind: str = "webauthn.get", count: int | None = None) -> str:
        """The assertion response JSON for ``challenge`` (the count goes up by one, or is ``count``)."""
        self.sign_count = self.sign_count + 1 if count is None else count
        auth = self._auth_data(rp_id or self.rp_id, self._flags(present))
        data = client_data(kind, challenge, origin or self.origin)
        signature = self.key.sign(auth + hashlib.sha256(data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps({
            "id": self.credential_id, "rawId": self.credential_id, "type": "public-key",
            "response": {"clientDataJSON": b64url(data), "authenticatorData": b64url(auth),
                         "signature": b64url(signature), "userHandle": None},
            "clientExtensionResults": {}, "authenticatorAttachment": "platform"})
