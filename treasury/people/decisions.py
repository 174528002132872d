"""Signed decision documents: build, verify at the door, record.

A document is canonical JSON (sorted keys, no spaces, amounts as strings)::

    {"v":1,"kind":"approve","person":"alice","run":"R…","step":"ok","workflow_digest":"sha256:…",
     "params_digest":"sha256:…","policy_digest":"sha256:…","issued_at":"…Z","nonce":"…"}

The person signs the document's exact bytes with SSHSIG, namespace ``treasury`` (what
``ssh-keygen -Y sign -n treasury decision.json`` does), or with a passkey: a WebAuthn assertion
whose challenge is the document's SHA-256 (``treasury.people.credentials``). The document's
SHA-256 is its id.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, desc, insert, select

from treasury.audit.tables import audit_events, payload_text_column
from treasury.canonical import canonical_json
from treasury.errors import DecisionRefused
from treasury.models import format_amount
from treasury.people import credentials, sshsig
from treasury.people.registry import People, canonical_registry, people_from_dict
from treasury.people.tables import decisions

VERSION = 1
# the role each kind needs
ROLE_FOR: dict[str, str] = {
    "request": "requester",
    "approve": "approver",
    "reject": "approver",
    "cancel": "operator",
    "resolve": "operator",
    "schedule.pause": "operator",
    "schedule.resume": "operator",
    "exchange.resume": "operator",
    "credential.enrol": "operator",  # an invitation to enrol a passkey (`treasury people invite`)
}
PEOPLE_CHANGED = "people.changed"
DECISION_REFUSED = "decision.refused"
FUTURE_SKEW = timedelta(minutes=2)


def digest_of(value: Any) -> str:
    """``sha256:`` + hex of the canonical JSON of ``value`` (a str or bytes is hashed as is)."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = canonical_json(value, amounts=format_amount).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_document(kind: str, person: str, *, at: datetime, **fields: Any) -> dict[str, Any]:
    """A fresh document of ``kind`` by ``person`` (fields that are None are left out)."""
    if kind not in ROLE_FOR:
        raise ValueError(f"unknown decision kind {kind!r}")
    doc: dict[str, Any] = {"v": VERSION, "kind": kind, "person": person, "issued_at": _iso(at),
                           "nonce": secrets.token_hex(16)}
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def document_text(doc: Mapping[str, Any]) -> str:
    return canonical_json(dict(doc), amounts=format_amount)


@dataclass(frozen=True)
class SignedDecision:
    """A document's exact text and its signature: armored SSHSIG, or a passkey assertion envelope."""

    document: str
    signature: str

    @property
    def is_passkey(self) -> bool:
        return credentials.is_passkey_signature(self.signature)

    @property
    def doc_id(self) -> str:
        return digest_of(self.document.encode())

    def parsed(self) -> dict[str, Any]:
        """The document as a dict.

        Raises:
            DecisionRefused: not JSON, not canonical, or not a version 1 decision document.
        """
        try:
            doc = json.loads(self.document)
        except ValueError:
            raise DecisionRefused("the decision document is not JSON") from None
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise DecisionRefused("not a version 1 decision document")
        if document_text(doc) != self.document:
            raise DecisionRefused("the decision document is not in canonical form (sorted keys, no spaces); "
                                  "sign the exported text exactly as it is")
        for name in ("kind", "person", "issued_at", "nonce"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise DecisionRefused(f"the decision document has no {name!r}")
        return doc


def sign_document(doc: Mapping[str, Any], signer: Any) -> SignedDecision:
    """Sign ``doc`` with ``signer`` (a ``treasury.people.identity.Signer``)."""
    text = document_text(doc)
    return SignedDecision(text, signer.sign(text.encode()))


@dataclass(frozen=True)
class Verified:
    """A decision whose signature verified: who, with which key, and the document."""

    signed: SignedDecision
    doc: dict[str, Any]
    person: str
    key_fp: str  # an SSH key's fingerprint, or a passkey's credential id
    sign_count: int | None = None  # the count a passkey assertion showed


def issued_at(doc: Mapping[str, Any]) -> datetime:
    """The document's ``issued_at``.

    Raises:
        DecisionRefused: not written YYYY-MM-DDTHH:MM:SSZ.
    """
    try:
        return datetime.strptime(str(doc["issued_at"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise DecisionRefused("issued_at must be written YYYY-MM-DDTHH:MM:SSZ") from None


def check_signature(signed: SignedDecision, people: People, *, kind: str | None = None,
                    role: str | None = None, check_role: bool = True, conn: Connection | None = None,
                    passkeys: Callable[[str], credentials.Passkey | None] | None = None) -> Verified:
    """The signature verifies against one of the named person's keys, or one of their passkeys
    enrolled no later than the document was issued (looked up with ``passkeys`` when given, else
    read through ``conn``); the person holds the kind's role (or ``role`` when given).

    Raises:
        DecisionRefused: naming what is wrong.
    """
    doc = signed.parsed()
    if kind is not None and doc["kind"] != kind:
        raise DecisionRefused(f"this is a {doc['kind']!r} document, not {kind!r}")
    if doc["kind"] not in ROLE_FOR:
        raise DecisionRefused(f"unknown decision kind {doc['kind']!r}")
    person_id = doc["person"]
    person = people.persons.get(person_id)
    if person is None:
        raise DecisionRefused(f"{person_id!r} is not in the people registry ({people.source or 'people.yaml'})")
    if passkeys is None and conn is not None:
        passkeys = functools.partial(credentials.passkey_by_id, conn)
    key_fp, sign_count = _verify(signed, doc, person_id, person.keys, passkeys)
    role = role or ROLE_FOR[doc["kind"]]
    if check_role and role not in person.roles:
        raise DecisionRefused(f"{person_id!r} does not hold the {role!r} role that {doc['kind']!r} needs "
                              f"(roles: {', '.join(sorted(person.roles))})")
    return Verified(signed, doc, person_id, key_fp, sign_count)


def _verify(signed: SignedDecision, doc: Mapping[str, Any], person_id: str, keys: Any,
            passkeys: Callable[[str], credentials.Passkey | None] | None) -> tuple[str, int | None]:
    """(key fingerprint or credential id, passkey sign count) of a signature that verifies."""
    if signed.is_passkey:
        if passkeys is None:
            raise DecisionRefused("a passkey decision is verified against the enrolled passkeys: no database "
                                  "connection was given")
        passkey, count = credentials.verify_assertion(
            signed.document, person_id, issued_at(doc), signed.signature, passkeys)
        return passkey.credential_id, count
    if not keys:
        raise DecisionRefused(f"{person_id!r} has no registered key; `treasury people add-key {person_id} FILE`")
    try:
        key = sshsig.verify(signed.signature, signed.document.encode(), list(keys))
    except sshsig.SignatureError as exc:
        raise DecisionRefused(f"signature for {person_id!r} refused: {exc}") from None
    return key.fingerprint, None


def verify_at_door(
    signed: SignedDecision, people: People, *, kind: str, now: datetime, max_age: timedelta,
    expect: Mapping[str, Any], conn: Connection | None = None, role: str | None = None,
) -> Verified:
    """Accept a decision only if signature, role, every expected field, age and nonce hold.

    ``expect`` maps document fields to their current values (run, step, digests).

    Raises:
        DecisionRefused: the first condition that fails, in plain words.
    """
    verified = check_signature(signed, people, kind=kind, role=role, conn=conn)
    doc = verified.doc
    for name, value in expect.items():
        if doc.get(name) != value:
            raise DecisionRefused(
                f"the document's {name} is {doc.get(name)!r} but the current one is {value!r}: what you signed "
                "is not what is waiting now; export the decision again and re-sign it")
    issued = issued_at(doc)
    if issued > now + FUTURE_SKEW:
        raise DecisionRefused(f"the document was issued in the future ({doc['issued_at']})")
    if now - issued > max_age:
        raise DecisionRefused(f"the document was issued at {doc['issued_at']}, more than "
                              f"{int(max_age.total_seconds())} s ago (TREASURY_DECISION_MAX_AGE); sign a fresh one")
    if conn is not None and nonce_used(conn, doc["nonce"]):
        raise DecisionRefused(f"nonce {doc['nonce']} was already used: a decision counts once")
    if conn is not None and verified.sign_count is not None:
        # a cloned authenticator: only judged here, against the last count seen
        credentials.advance_sign_count(conn, verified.key_fp, verified.sign_count, at=now)
    return verified


def nonce_used(conn: Connection, nonce: str) -> bool:
    return conn.execute(select(decisions.c.nonce).where(decisions.c.nonce == nonce)).first() is not None


def record(conn: Connection, verified: Verified, *, registry_digest: str, at: datetime) -> None:
    """Store an accepted decision (its nonce can never be accepted again).

    Raises:
        DecisionRefused: the nonce was used meanwhile.
    """
    from sqlalchemy.exc import IntegrityError

    doc = verified.doc
    try:
        with conn.begin_nested():
            conn.execute(insert(decisions).values(
                nonce=doc["nonce"], doc_id=verified.signed.doc_id, kind=doc["kind"], person=verified.person,
                run_id=doc.get("run"), step_id=doc.get("step"), document=verified.signed.document,
                signature=verified.signed.signature, key_fp=verified.key_fp, registry_digest=registry_digest,
                created_at=at))
    except IntegrityError:
        raise DecisionRefused(f"nonce {doc['nonce']} was already used: a decision counts once") from None


def stored(conn: Connection, run_id: str, *, kind: str, step_id: str | None = None) -> list[SignedDecision]:
    """The stored signed decisions of one kind for a run (and step)."""
    c = decisions.c
    q = select(c.document, c.signature).where(c.run_id == run_id, c.kind == kind)
    if step_id is not None:
        q = q.where(c.step_id == step_id)
    return [SignedDecision(r.document, r.signature) for r in conn.execute(q.order_by(c.created_at, c.nonce))]


def audit_payload(verified: Verified) -> dict[str, Any]:
    """What an audit event keeps of a decision: document, signature (``sshsig``, or ``webauthn``:
    the passkey assertion) and the key's fingerprint (a passkey's credential id)."""
    signed = verified.signed
    signature: dict[str, Any] = ({"webauthn": credentials.parse_envelope(signed.signature)} if signed.is_passkey
                                 else {"sshsig": signed.signature})
    return {"decision": {"id": signed.doc_id, "document": signed.document, **signature, "key": verified.key_fp}}


def recorded_registry_digest(conn: Connection) -> str | None:
    """The digest in the newest ``people.changed`` event, if any."""
    row = conn.execute(
        select(payload_text_column(conn)).where(audit_events.c.type == PEOPLE_CHANGED)
        .order_by(desc(audit_events.c.seq)).limit(1)
    ).first()
    if row is None:
        return None
    payload = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return str(payload.get("digest"))


def ensure_registry_recorded(conn: Connection, people: People, audit: Any, at: datetime) -> str:
    """Record the registry in the audit history when it differs from the last one recorded.

    ``audit`` is ``append_event``-shaped. Returns the registry's digest.
    """
    digest = people.digest
    if recorded_registry_digest(conn) != digest:
        audit(conn, type=PEOPLE_CHANGED, actor="system", at=at, run_id=None, step_id=None,
              payload={"digest": digest, "file": people.source, "people": people.as_dict()})
    return digest


def registries_in_history(events: Any) -> dict[str, People]:
    """Every registry recorded in ``people.changed`` events, by digest."""
    out: dict[str, People] = {}
    for e in events:
        body = e.payload.get("people") or {}
        digest = e.payload.get("digest")
        if digest and "sha256:" + hashlib.sha256(canonical_registry(body).encode()).hexdigest() == digest:
            out[str(digest)] = people_from_dict(body)
    return out
