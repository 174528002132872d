"""Fixtures for the policy tests."""

from __future__ import annotations

import pytest

from tests.policy.helpers import SHIPPED
from treasury.policy import Policy, load_policy


@pytest.fixture
def shipped() -> Policy:
    """The example policy shipped as config/policy.yaml."""
    return load_policy(SHIPPED)
