"""A withdrawal to an address off the policy's allowlist never reaches the exchange."""

from __future__ import annotations

from treasury.audit import query_events

from .conftest import PAYOUT, load


def test_a_payout_to_an_address_off_the_allowlist_sends_nothing_at_all(make_runtime: object) -> None:
    """The exchange's own whitelist is not enough: policy refuses first, and no byte goes out."""
    rt, wire = make_runtime()  # type: ignore[operator]
    unlisted = "0x1111111111111111111111111111111111111111"
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), {**PAYOUT, "address": unlisted}, requested_by="erin")
    shown = rt.service.show(run_id)
    assert shown["state"] == "FAILED"
    assert "allowlist" in str(shown) or "destinations" in str(shown)
    assert wire.writes() == [] and rt.simulator.state()["withdrawals"] == []
    decisions = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "policy.decision"]
    assert decisions and decisions[0].payload["allowed"] is False and decisions[0].payload["stage"] == "start"
    assert any(v["rule"].startswith("destinations") and not v["allowed"] for v in decisions[0].payload["verdicts"])
