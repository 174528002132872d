"""Fixtures for the workflow language: the repository's config files, or stand-ins."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from treasury.keys import KeySpec, load_key_specs
from treasury.people.approvers import Approvers
from treasury.people.registry import load_people

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
WORKFLOWS = REPO / "workflows"

# The profiles docs/reference.md names, for when config/keys.yaml is not in the tree yet.
STAND_IN_KEYS = """\
profiles:
  ops-read:     {api_key: k1, secret_env: S1, permissions: [read]}
  trading:      {api_key: k2, secret_env: S2, permissions: [read, trade]}
  transfers:    {api_key: k3, secret_env: S3, permissions: [read, transfer]}
  withdrawals:  {api_key: k4, secret_env: S4, permissions: [read, withdraw]}
  fiat:         {api_key: k5, secret_env: S5, permissions: [read, fiat_withdraw]}
  whitelisting: {api_key: k6, secret_env: S6, permissions: [read, whitelist]}
"""


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, KeySpec]:
    path = CONFIG / "keys.yaml"
    if not path.exists():
        path = tmp_path_factory.mktemp("config") / "keys.yaml"
        path.write_text(STAND_IN_KEYS)
    return load_key_specs(path)


@pytest.fixture(scope="session")
def approvers() -> Approvers:
    return load_people(CONFIG / "people.yaml")


@pytest.fixture(scope="session")
def policy() -> Any | None:
    """config/policy.yaml when both it and the policy module exist; else None."""
    path = CONFIG / "policy.yaml"
    try:
        module = importlib.import_module("treasury.policy")
    except ImportError:
        return None
    if not path.exists() or not hasattr(module, "load_policy"):
        return None
    return module.load_policy(path)
