"""The shipped alert rules and Grafana dashboard use only metrics we export, and promtool agrees."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from treasury.clock import ManualClock
from treasury.monitoring.collector import DatabaseCollector
from treasury.observe import metrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
NAME = re.compile(r"\btreasury_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def _exported(engine: Engine) -> set[str]:
    names = set()
    from prometheus_client import REGISTRY

    metrics.get()
    for family in REGISTRY.collect():
        if family.name.startswith("treasury_"):
            names.add(family.name)
            names.update(s.name for s in family.samples)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(engine, ManualClock()))
    names.update(family.name for family in registry.collect())
    return names | {n + s for n in names for s in SUFFIXES if not n.endswith(SUFFIXES)}


def _alert_exprs() -> list[str]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for panel in doc["panels"] for t in panel["targets"]]


def test_every_metric_an_alert_or_panel_names_is_exported(sqlite_engine: Engine) -> None:
    from treasury.schema import create_schema

    create_schema(sqlite_engine)
    exported = _exported(sqlite_engine)
    for what, exprs in (("alerts.yml", _alert_exprs()), ("grafana-dashboard.json", _dashboard_exprs())):
        used = {name for expr in exprs for name in NAME.findall(expr)}
        assert used, what
        assert used <= exported, f"{what} names metrics nobody exports: {sorted(used - exported)}"


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    names = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    assert {"TreasuryStepNeedsAttention", "TreasuryExchangeKeyHalted", "TreasuryScheduleMissed",
            "TreasuryApprovalAboutToExpire"} <= names
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                 ["check", "config", "prometheus.yml"]):
        out = subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
