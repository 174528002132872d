"""The outbox is written with its audit event; the sender delivers it, signed, with retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from tests.notify.receiver import Receiver
from treasury.audit import append_event
from treasury.audit.outbox import notify_outbox
from treasury.clock import ManualClock
from treasury.notify.channels import Event, slack_request, verify_signature
from treasury.notify.config import Channel, NotifyConfig
from treasury.notify.sender import Sender, SenderSettings
from treasury.notify.tables import notify_deliveries

SECRET = "hook-secret-for-tests"
AT = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


_receivers: dict[str, Receiver] = {}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode()).start()
    _receivers[r.url] = r
    yield r
    r.stop()
    del _receivers[r.url]


def _config(receiver: Receiver, routes: tuple[tuple[frozenset[str], tuple[str, ...]], ...] | None = None
            ) -> NotifyConfig:
    channels = {
        "hook": Channel("hook", "webhook", SecretStr(receiver.url + "/hook"), SecretStr(SECRET), 5),
        "slack": Channel("slack", "slack", SecretStr(receiver.url + "/slack"), None, 5),
    }
    return NotifyConfig("notify.yaml", channels,
                        routes or ((frozenset({"*"}), ("hook",)), (frozenset({"approval.requested"}), ("slack",))))


def _sender(engine: Engine, config: NotifyConfig, clock: ManualClock, **kw: object) -> Sender:
    for channel in config.channels.values():  # the receiver checks timestamps against the same clock
        target = _receivers.get(channel.url.get_secret_value().rsplit("/", 1)[0])
        if target is not None:
            target.now = clock.time
    return Sender(engine, config, clock, httpx.Client(), settings=SenderSettings(console_url="https://console.example",
                                                                                 **kw))  # type: ignore[arg-type]


def _outbox(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(notify_outbox).order_by(notify_outbox.c.id))]


def test_the_outbox_row_commits_and_rolls_back_with_its_audit_event(engine: Engine) -> None:
    with engine.begin() as conn:
        append_event(conn, type="step.state", actor="w", at=AT, run_id="R1", step_id="pay",
                     payload={"from": "RUNNING", "to": "SUCCEEDED"})  # not a notification
        rec = append_event(conn, type="step.state", actor="w", at=AT, run_id="R1", step_id="pay",
                           payload={"from": "RUNNING", "to": "NEEDS_ATTENTION"})
    with pytest.raises(RuntimeError), engine.begin() as conn:
        append_event(conn, type="exchange.banned", actor="w", at=AT, payload={"reason": "HTTP 418"})
        raise RuntimeError("the state change failed")
    rows = _outbox(engine)
    assert [(r["event_id"], r["type"], r["run_id"], r["step_id"]) for r in rows] == [
        (f"audit-{rec.seq}", "step.needs_attention", "R1", "pay")]
    assert json.loads(str(rows[0]["payload"])) == {"from": "RUNNING", "to": "NEEDS_ATTENTION"}


def test_delivers_each_event_to_its_channels_signed_once(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        a = append_event(conn, type="approval.requested", actor="system", at=AT, run_id="R1", step_id="ok",
                         payload={"quorum": 2})
        b = append_event(conn, type="exchange.banned", actor="system", at=AT, payload={"reason": "HTTP 418"})
    clock = ManualClock()
    sender = _sender(engine, _config(receiver), clock)
    report = sender.run_once()
    assert (report.delivered, report.failed) == (3, 0)
    assert receiver.ids("/hook") == {f"audit-{a.seq}": 1, f"audit-{b.seq}": 1}
    assert receiver.ids("/slack") == {f"audit-{a.seq}": 1}
    assert receiver.bad_signatures == 0
    hook = receiver.deduplicated("/hook")[f"audit-{a.seq}"].json()
    assert hook["type"] == "approval.requested" and hook["console_url"] == "https://console.example/runs/R1"
    assert "waiting for approval" in hook["summary"]
    slack = receiver.deduplicated("/slack")[f"audit-{a.seq}"].json()
    assert "<https://console.example/runs/R1|Open in the console>" in slack["text"]
    assert all(r["done_at"] is not None for r in _outbox(engine))
    assert sender.run_once().delivered == 0  # nothing is sent twice
    assert len(receiver.requests) == 3


def test_failures_retry_with_backoff_and_nothing_is_lost(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        rec = append_event(conn, type="schedule.missed", actor="scheduler", at=AT,
                           payload={"schedule": "payroll", "count": 1})
    clock = ManualClock()
    receiver.statuses = [500, 503, 502, 500]  # three in the first pass (tenacity), one in the next
    sender = _sender(engine, _config(receiver), clock, first_backoff_seconds=30)
    first = sender.run_once()
    assert (first.delivered, first.failed) == (0, 1) and "HTTP 502" in first.errors[0]
    assert clock.sleeps == [0.5, 1.0]  # tenacity waited between its attempts, through the clock
    with engine.connect() as conn:
        row = conn.execute(select(notify_deliveries)).one()
    assert row.attempts == 1 and row.last_status == 502 and row.claimed_until is None
    assert sender.run_once().delivered == 0  # the backoff: not due yet
    clock.advance(30)
    second = sender.run_once()
    assert second.delivered == 1  # a 500, then a 200 within the pass
    assert receiver.ids("/hook") == {f"audit-{rec.seq}": 5}
    assert len(receiver.deduplicated("/hook")) == 1


def test_a_4xx_is_not_retried_within_the_pass(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        append_event(conn, type="exchange.banned", actor="system", at=AT, payload={"reason": "HTTP 418"})
    receiver.statuses = [400]
    clock = ManualClock()
    report = _sender(engine, _config(receiver), clock).run_once()
    assert report.failed == 1 and len(receiver.requests) == 1 and clock.sleeps == []


def test_two_senders_never_claim_the_same_delivery(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        for i in range(5):
            append_event(conn, type="exchange.rate_limited", actor="system", at=AT, payload={"n": i})
    clock = ManualClock()
    config = _config(receiver)
    one, two = _sender(engine, config, clock), _sender(engine, config, clock)
    one.owner, two.owner = "one", "two"
    one._route_new()
    claimed_one = one._claim_due()
    assert len(claimed_one) == 5 and two._claim_due() == []  # the lease holds
    clock.advance(61)
    assert len(two._claim_due()) == 5  # a dead sender's claims lapse


def test_no_route_closes_the_event_without_sending(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        append_event(conn, type="exchange.banned", actor="system", at=AT, payload={})
    config = _config(receiver, routes=((frozenset({"approval.requested"}), ("slack",)),))
    assert _sender(engine, config, ManualClock()).run_once().done_events == 1
    assert receiver.requests == [] and _outbox(engine)[0]["done_at"] is not None


def test_approvals_about_to_expire_are_announced_once(engine: Engine, receiver: Receiver) -> None:
    from treasury.store.tables import runs, steps

    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(runs.insert().values(id="R1", workflow="w", workflow_file="w.yaml", workflow_snapshot="",
                                          workflow_digest="d", inputs={}, requested_by="erin",
                                          state="AWAITING_APPROVAL",
                                          created_at=now, updated_at=now))
        conn.execute(steps.insert().values(run_id="R1", step_id="ok", idx=0, kind="approval",
                                           state="AWAITING_APPROVAL", expires_at=now + timedelta(hours=2),
                                           updated_at=now))
    clock = ManualClock(now.timestamp())
    sender = _sender(engine, _config(receiver), clock)
    assert sender.enqueue_expiring() == 0  # two hours away: not yet
    clock.advance(3600 + 60)
    assert sender.run_once().delivered == 1
    assert sender.run_once().delivered == 0 and sender.enqueue_expiring() == 0  # once
    (got,) = receiver.deduplicated("/hook").values()
    assert got.event_id == "approval-expiring-R1-ok" and got.json()["type"] == "approval.expiring"


def test_reference_verification_refuses_tampering_and_replays() -> None:
    body = b'{"id":"audit-1"}'
    from treasury.notify.channels import sign

    sig = sign(b"k", 1000, body)
    assert verify_signature(b"k", "1000", body, sig, now=1100)
    assert not verify_signature(b"k", "1000", body + b" ", sig, now=1100)
    assert not verify_signature(b"other", "1000", body, sig, now=1100)
    assert not verify_signature(b"k", "1000", body, sig, now=1000 + 301)  # too old: a replay
    assert not verify_signature(b"k", "1001", body, sig, now=1100)


def test_slack_message_without_a_console_url_has_no_link() -> None:
    channel = Channel("s", "slack", SecretStr("https://hooks.slack.com/services/x"), None, 5)
    out = slack_request(channel, Event("audit-9", "exchange.banned", "t", None, None, {"reason": "HTTP 418"}),
                        console_url=None)
    text = json.loads(out.body)["text"]
    assert "banned" in text and "console" not in text


def test_secret_urls_and_keys_never_reach_logs_or_errors(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from tests.observe.jsonlog import json_log

    canary = "CANARY-slack-T000-B000-XXXX"
    caplog.set_level(logging.DEBUG)
    with engine.begin() as conn:
        append_event(conn, type="exchange.banned", actor="system", at=AT, payload={"reason": "HTTP 418"})
    channels = {"slack": Channel("slack", "slack", SecretStr(f"http://127.0.0.1:9/{canary}"), None, 1),
                "hook": Channel("hook", "webhook", SecretStr(f"http://127.0.0.1:9/{canary}"), SecretStr(canary), 1)}
    config = NotifyConfig("notify.yaml", channels, ((frozenset({"*"}), ("slack", "hook")),))
    with json_log() as logs:
        report = _sender(engine, config, ManualClock()).run_once()
    assert report.failed == 2
    with engine.connect() as conn:
        stored = repr(conn.execute(select(notify_deliveries)).all())
    everything = "\n".join([caplog.text, logs.text, *report.errors, stored, repr(config)])
    assert "ConnectError" in everything and canary not in everything


def test_the_worker_task_sends_with_the_file_as_it_is_now(tmp_path: object, engine: Engine,
                                                         receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from pathlib import Path
    from types import SimpleNamespace

    from treasury.broker.app import NOTIFY, NOTIFY_ENTRY, celery_config
    from treasury.broker.options import WorkerOptions
    from treasury.settings import Settings
    from treasury.worker.process import notify_once

    assert celery_config(Settings(broker_url="redis://x:6379/0"), WorkerOptions())["beat_schedule"][
        NOTIFY_ENTRY]["task"] == NOTIFY
    config_dir = Path(str(tmp_path))
    clock = ManualClock()
    receiver.now = clock.time
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    settings = Settings(config_dir=config_dir)
    wrt: object = SimpleNamespace(runtime=SimpleNamespace(settings=settings, engine=engine, clock=clock))
    with engine.begin() as conn:
        append_event(conn, type="exchange.banned", actor="system", at=AT, payload={"reason": "HTTP 418"})
    (config_dir / "notify.yaml").write_text("channels:\n  hook: {type: webhook, url: 'nope'}\n")
    assert notify_once(wrt) == {}  # type: ignore[arg-type]
    assert "notifications not sent" in caplog.text and "notify.yaml:2:" in caplog.text
    (config_dir / "notify.yaml").write_text(
        f"channels:\n  hook: {{type: webhook, url: '{receiver.url}/hook', secret_env: HOOK_SECRET}}\n"
        "routes:\n  - {events: ['*'], channels: [hook]}\n")
    assert notify_once(wrt)["delivered"] == 1  # type: ignore[arg-type]
    assert len(receiver.deduplicated("/hook")) == 1 and receiver.bad_signatures == 0


def test_events_stuck_on_a_dead_channel_do_not_hold_up_the_others(engine: Engine, receiver: Receiver) -> None:
    with engine.begin() as conn:
        for _ in range(2):
            append_event(conn, type="exchange.banned", actor="system", at=AT, payload={})
        late = append_event(conn, type="exchange.rate_limited", actor="system", at=AT, payload={})
    channels = {**_config(receiver).channels,
                "dead": Channel("dead", "slack", SecretStr("http://127.0.0.1:9/x"), None, 1)}
    config = NotifyConfig("notify.yaml", channels, ((frozenset({"exchange.banned"}), ("dead",)),
                                                    (frozenset({"exchange.rate_limited"}), ("hook",))))
    sender = _sender(engine, config, ManualClock(), batch=2)
    assert sender.run_once().failed == 2  # the batch held the two bans; both failed
    assert sender.run_once().delivered == 1  # the next pass still reaches the later event
    assert set(receiver.deduplicated("/hook")) == {f"audit-{late.seq}"}
    assert [r["done_at"] is not None for r in _outbox(engine)] == [False, False, True]
