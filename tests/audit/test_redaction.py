"""Secrets and signatures never reach an audit row, a bundle or the CLI output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.audit.helpers import all_text, make_run
from treasury.audit import append_event, export_run, query_events, redact
from treasury.audit import events as ev
from treasury.audit.redaction import is_secret_key, scrub_text
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.settings import Settings

CANARY = "CANARY-7f3a9c1e-do-not-log"


def test_secret_keys_are_masked_at_any_depth() -> None:
    payload = {
        "api_key": CANARY,
        "apiKey": CANARY,
        "secret": CANARY,
        "client_secret": CANARY,
        "signature": CANARY,
        "password": CANARY,
        "totp": CANARY,
        "access_token": CANARY,
        "headers": {"X-HK-APIKEY": CANARY, "X-TWO-FA-TOKEN": CANARY, "Content-Type": "application/json"},
        "attempts": [{"broker_sign": CANARY, "status": 500}, {"Authorization": f"Bearer {CANARY}"}],
        "key_profile": "withdrawals",
        "design": "kept",
        "assignee": "kept",
        "quantity": "5000.00",
    }
    out = redact(payload)
    assert CANARY not in json.dumps(out)
    assert out["headers"] == {
        "X-HK-APIKEY": "[redacted]",
        "X-TWO-FA-TOKEN": "[redacted]",
        "Content-Type": "application/json",
    }
    assert out["attempts"][0] == {"broker_sign": "[redacted]", "status": 500}
    assert (out["key_profile"], out["design"], out["assignee"], out["quantity"]) == (
        "withdrawals",
        "kept",
        "kept",
        "5000.00",
    )
    assert payload["secret"] == CANARY  # the caller's dict is left alone
    assert redact(None) == {}


def test_inline_secrets_in_strings_are_masked() -> None:
    url = f"/api/v1/account/withdraw?coin=USDT&timestamp=1&signature={CANARY}&recvWindow=5000"
    assert scrub_text(url) == "/api/v1/account/withdraw?coin=USDT&timestamp=1&signature=[redacted]&recvWindow=5000"
    dumped = f"headers={{'X-HK-APIKEY': '{CANARY}', 'accept': 'json'}}"
    assert CANARY not in scrub_text(dumped) and "'accept': 'json'" in scrub_text(dumped)
    assert CANARY not in scrub_text(f'{{"apiKey": "{CANARY}"}}')
    assert scrub_text("withdraw 5000 USDT to 0xabc") == "withdraw 5000 USDT to 0xabc"
    assert is_secret_key("x-hk-apikey") and not is_secret_key("client_order_id")


def test_canary_never_appears_in_any_audit_row_bundle_or_output(engine: Engine) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    with engine.begin() as conn:
        make_run(conn, "r1")
        append_event(
            conn,
            type=ev.REQUEST_SENT,
            actor="worker:h1",
            at=at,
            run_id="r1",
            step_id="pay",
            payload={
                "method": "POST",
                "url": f"https://api-pro.hashkey.com/api/v1/account/withdraw?quantity=1&signature={CANARY}",
                "headers": {"X-HK-APIKEY": CANARY, "X-TWO-FA-TOKEN": CANARY},
                "params": {"coin": "USDT", "quantity": "1", "signature": CANARY, "timestamp": 1},
                "profile": {"name": "withdrawals", "secret": SecretStr(CANARY), "api_secret": CANARY},
                "note": SecretStr(CANARY),  # a SecretStr under an innocent key is masked too
                "error": f"401 from exchange; request had apikey={CANARY}",
            },
        )
    stored = all_text(engine)
    assert CANARY not in stored
    assert "[redacted]" in stored and "withdrawals" in stored  # redacted, not dropped
    (record,) = list(query_events(engine, run_id="r1"))
    assert record.payload["params"] == {"coin": "USDT", "quantity": "1", "signature": "[redacted]", "timestamp": 1}
    assert CANARY not in json.dumps(export_run(engine, "r1"))

    group = click.Group()
    register(group)
    app = AppContext(settings=Settings(database_url=str(engine.url)), _engine=engine)
    for args in (["audit"], ["audit", "--json"], ["audit", "--csv"], ["audit", "export", "r1"]):
        result = CliRunner().invoke(group, args, obj=app)
        assert result.exit_code == 0, result.output
        assert CANARY not in result.output


def test_scrubbing_stays_linear_on_long_strings() -> None:
    """A long unbroken word must not make the inline scrubber backtrack (it once took minutes)."""
    import time

    for text in ("a" * 200_000, "x" * 200_000 + "token", "ab=cd " * 40_000):
        start = time.perf_counter()
        scrub_text(text)
        assert time.perf_counter() - start < 1.0
