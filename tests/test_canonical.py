"""One canonical JSON, two documented Decimal forms, and digests that stored data already holds.

The pinned values below were computed with the code before canonical JSON was shared
(``treasury.audit.canonical``, ``treasury.engine.quorum``, ``treasury.people.registry``,
``treasury.execution.records``, ``treasury.cli.context``): a change to any of them would break
audit chains, approvals, signed decisions or leg checks already stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from treasury import canonical
from treasury.audit.canonical import canonical_json as audit_json
from treasury.audit.canonical import to_jsonable
from treasury.canonical import inputs_json
from treasury.cli.context import dumps
from treasury.engine.quorum import GuardedStep, approval_digest
from treasury.engine.quorum import params_digest as approval_params_digest
from treasury.execution.records import params_digest
from treasury.models import amount_value, format_amount
from treasury.people.decisions import digest_of, document_text
from treasury.people.registry import canonical_registry

HK = timezone(timedelta(hours=8))
PAYLOAD = {"amount": Decimal("1.50"), "big": Decimal("1E+3"), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=HK),
           "tags": {"b", "a"}, "name": "Zoë", "n": 3, "ok": True, "none": None, "list": [Decimal("0.000")]}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_audit_payload_hash_is_pinned() -> None:
    text = audit_json(to_jsonable(PAYLOAD))
    assert text == ('{"amount":"1.50","at":"2026-01-01T19:04:05+00:00","big":"1000","list":["0.000"],"n":3,'
                    '"name":"Zoë","none":null,"ok":true,"tags":["a","b"]}')
    assert _sha(text) == "c0798739aa942559c6eb482689787bb4e39f686cfd4787aae7ec490bf4c689a1"


def test_approval_digests_are_pinned() -> None:
    inputs = inputs_json({"amount": Decimal("100.50"), "to": "0xabc", "n": 2})
    assert inputs == {"amount": "100.5", "to": "0xabc", "n": 2}
    params = {"coin": "USDT", "quantity": Decimal("100.50"), "address": "0xabc"}
    guarded = [GuardedStep("pay", "withdraw", "ops", params, {"api_key": "sha256:ff", "account_id": "1001"})]
    assert approval_digest(approval_step="ok", workflow_digest="ab" * 32, inputs=inputs, guarded=guarded) == (
        "31b73fe70196396f5931aed1599f38e6f72c30ea99376e95a7d454287b8edd6a")
    assert approval_params_digest("withdraw", "ops", {"quantity": Decimal("2.500"), "s": {"y", "x"},
                                                      "at": datetime(2026, 1, 2, tzinfo=HK)}) == (
        "e06736836d1143cafe3d0ec2cd5f5cf070e3624bb498b93d8f86cf21765319e0")


def test_leg_registry_and_decision_digests_are_pinned() -> None:
    assert params_digest({"quantity": "2.500", "coin": "USDT", "note": "Zoë"}) == (
        "3af07dfd03827aef42a146231981b274d28f79865d5efe90057d1a16208def7e")
    body = {"bob": {"name": "Bøb", "roles": ["approver"], "ssh_keys": ["ssh-ed25519 AAAA"]}}
    assert _sha(canonical_registry(body)) == "7bacbbc28b3a4a4a6f73f8486483a0bac4a9625b5dcff60c78b69034e173dd68"
    doc = {"v": 1, "kind": "approve", "person": "bob", "issued_at": "2026-01-02T03:04:05Z", "nonce": "00" * 16,
           "params_digest": "sha256:" + "a" * 64, "amount": Decimal("5.0")}
    assert document_text(doc) == (
        '{"amount":"5","issued_at":"2026-01-02T03:04:05Z","kind":"approve","nonce":"' + "0" * 32
        + '","params_digest":"sha256:' + "a" * 64 + '","person":"bob","v":1}')
    assert digest_of({"amount": Decimal("5.10"), "x": [1, "é"]}) == (
        "sha256:c81029fd28d348bb4fc737b1fc34a4cafa2c6960e1f0758f4753ae72c4090b20")


def test_cli_json_keeps_decimals_as_written_and_offsets() -> None:
    out = dumps({"amount": Decimal("1.50"), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=HK), "s": {"b", "a"}})
    assert json.loads(out) == {"amount": "1.50", "at": "2026-01-02T03:04:05+08:00", "s": ["a", "b"]}
    assert canonical.to_jsonable(object, strict=False) is object  # display code prints it as text


def test_one_serialiser_two_decimal_forms() -> None:
    assert canonical.plain_decimal(Decimal("1.50")) == "1.50"
    assert format_amount(Decimal("1.50")) == "1.5"
    assert canonical.canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical.canonical_json({"x": Decimal("1.50")}, amounts=format_amount) == '{"x":"1.5"}'
    assert canonical.canonical_json({"x": Decimal("1.50")}, amounts=canonical.plain_decimal) == '{"x":"1.50"}'
    with pytest.raises(TypeError):
        canonical.canonical_json({"x": Decimal("1")})  # plain JSON values only, unless a form is given
    with pytest.raises(ValueError):
        canonical.canonical_json({"x": float("nan")})


def test_one_amount_validator_for_models() -> None:
    assert amount_value("12.50") == Decimal("12.50")
    assert amount_value("0", field="value", allow_zero=True) == 0
    for bad, why in ((1.5, "decimal string"), ("1e3", "plain decimal"), ("-1", "negative"), ("0", "greater than zero")):
        with pytest.raises(ValueError, match=why):
            amount_value(bad)
