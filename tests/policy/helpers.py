"""Helpers for the policy tests: the shipped example policy, inline policies, sample parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

from treasury.policy import Policy, parse_policy

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "policy.yaml"
VENDOR_A = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
VENDOR_B = "0x8ba1f109551bd432803012645ac136ddd64dba72"
UNLISTED = "0x1111111111111111111111111111111111111111"
PAYROLL = "HSBC-001-234567-838"
# Tuesday 2026-03-03 10:00 in Hong Kong (UTC+8, no DST): inside fiat business hours.
HK_TUESDAY_10 = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)


def policy_from(text: str, source: str = "policy.yaml") -> Policy:
    """A policy from inline YAML (dedented)."""
    return parse_policy(dedent(text).encode(), source)


def usdt_withdraw(quantity: str, address: str = VENDOR_A, chain: str = "ETH") -> dict[str, str]:
    return {"coin": "USDT", "chainType": chain, "address": address, "quantity": quantity}
