"""Notifications: deliver the outbox (``treasury.audit.outbox``) to webhooks and Slack.

- ``config``: ``config/notify.yaml``, the channels and which events go to each (located errors);
- ``channels``: the HTTP request of each channel (the signed webhook, Slack);
- ``sender``: claims each (event, channel) delivery, sends it with retries, marks it delivered;
- ``tables``: the per-channel delivery state.

Delivery is at least once: a delivery is marked only after a 2xx answer, so a sender that dies
between sending and marking sends that one again. Every request carries the event's stable id
(``X-Treasury-Event-Id``, and ``id`` in the body), so a receiver that keeps the ids it has seen
processes each event once.
"""
