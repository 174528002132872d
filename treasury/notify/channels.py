"""The HTTP request each channel sends: a signed generic webhook, or a Slack message.

Webhook request (``POST`` to the channel's URL, JSON body, ``Content-Type: application/json``)::

    X-Treasury-Event-Id:  audit-1234            the event's stable id (the same on every retry)
    X-Treasury-Event:     step.needs_attention
    X-Treasury-Timestamp: 1764842400            Unix seconds when this attempt was signed
    X-Treasury-Signature: sha256=<hex>          HMAC-SHA256(secret, "<timestamp>.<raw body>")

A receiver verifies it by recomputing the HMAC over the timestamp, a dot and the body bytes
exactly as received, comparing in constant time, and refusing a timestamp more than a few
minutes old (a replay); it then keeps the event ids it has processed and ignores a repeat
(delivery is at least once). :func:`verify_signature` is a reference implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from treasury.notify.config import Channel

EVENT_ID_HEADER = "X-Treasury-Event-Id"
EVENT_HEADER = "X-Treasury-Event"
TIMESTAMP_HEADER = "X-Treasury-Timestamp"
SIGNATURE_HEADER = "X-Treasury-Signature"


@dataclass(frozen=True)
class Event:
    """One outbox event, as the channels see it."""

    id: str
    type: str
    at: str  # ISO 8601 UTC
    run_id: str | None
    step_id: str | None
    payload: dict[str, Any]


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value: ``sha256=`` and HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float,
                     tolerance_seconds: float = 300) -> bool:
    """What a receiver does: True when ``signature`` is ours for this body and is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def summary(event: Event) -> str:
    """One plain sentence for people (Slack text, the webhook's ``summary``)."""
    p = event.payload
    run, step = event.run_id or "?", event.step_id or "?"
    texts = {
        "approval.requested": f"Run {run} is waiting for approval at step {step}"
                              + (f" (quorum {p['quorum']})" if "quorum" in p else ""),
        "approval.expiring": f"The approval of run {run} (step {step}) expires at {p.get('expires_at', '?')}",
        "approval.expired": f"The approval of run {run} (step {step}) expired; the run failed closed",
        "step.needs_attention": f"Step {step} of run {run} needs a person: its outcome could not be proven",
        "exchange.rate_limited": f"The exchange rate-limited a key: {p.get('scope', '')} {p.get('reason', '')}".strip(),
        "exchange.banned": f"The exchange banned this host: {p.get('reason', '')}; "
                           "nothing is sent until an operator resumes",
        "schedule.missed": f"Schedule {p.get('schedule', '?')} missed {p.get('count', 1)} due time(s)",
        "audit.verify_failed": f"audit verify failed at seq {p.get('first_bad_seq', '?')}: {p.get('reason', '')}",
    }
    return texts.get(event.type, f"{event.type} (run {run}, step {step})")


def console_link(console_url: str | None, event: Event) -> str | None:
    """The console page of the event's run (or the console's front page), if a console URL is set."""
    if not console_url:
        return None
    base = console_url.rstrip("/")
    return f"{base}/runs/{event.run_id}" if event.run_id else base


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes


def webhook_request(channel: Channel, event: Event, *, timestamp: int, console_url: str | None) -> Outgoing:
    """The signed webhook request for ``event`` (signed at ``timestamp``)."""
    assert channel.secret is not None  # the config refuses a webhook without one
    doc = {"id": event.id, "type": event.type, "at": event.at, "run_id": event.run_id, "step_id": event.step_id,
           "summary": summary(event), "console_url": console_link(console_url, event), "payload": event.payload}
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.id,
        EVENT_HEADER: event.type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(channel.secret.get_secret_value().encode(), timestamp, body),
    }
    return Outgoing(channel.url.get_secret_value(), headers, body)


def slack_request(channel: Channel, event: Event, *, console_url: str | None) -> Outgoing:
    """A Slack incoming-webhook message: the summary, a link to the console page, the event id."""
    link = console_link(console_url, event)
    text = summary(event) + (f"\n<{link}|Open in the console>" if link else "")
    doc = {"text": text,
           "blocks": [
               {"type": "section", "text": {"type": "mrkdwn", "text": text}},
               {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{event.type} · event {event.id}"}]},
           ]}
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Outgoing(channel.url.get_secret_value(), {"Content-Type": "application/json", EVENT_ID_HEADER: event.id},
                    body)


def request_for(channel: Channel, event: Event, *, timestamp: int, console_url: str | None) -> Outgoing:
    """The request ``channel`` sends for ``event``."""
    if channel.type == "slack":
        return slack_request(channel, event, console_url=console_url)
    return webhook_request(channel, event, timestamp=timestamp, console_url=console_url)
