"""A long-running process enforces the policy file as it is now, and fails closed on a broken one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.identities import signed_config_copy
from treasury.audit import query_events
from treasury.errors import ConfigError
from treasury.policy import load_policy
from treasury.policy.watch import PolicyWatch

from .conftest import PAYOUT, load

WITHDRAW = "/api/v1/account/withdraw"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    signed_config_copy(config)
    return config


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new mtime even on a coarse clock


def _approve(rt: Any, run_id: str) -> None:
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")


def test_the_watch_reloads_changes_and_fails_closed_on_a_broken_or_missing_file(tmp_path: Path) -> None:
    path = _config(tmp_path) / "policy.yaml"
    first = load_policy(path)
    watch = PolicyWatch(path, first)
    assert watch.current() is first  # unchanged: no reload
    _edit(path, 'max_per_tx: "50000"', 'max_per_tx: "1000"')
    second = watch.current()
    assert second is not None and second.digest != first.digest and watch.current() is second
    _edit(path, "limits:", "limits: [")
    with pytest.raises(ConfigError, match=r"policy\.yaml"):
        watch.current()
    with pytest.raises(ConfigError):
        watch.current()  # still broken: still refused
    _edit(path, "limits: [", "limits:")
    assert watch.current() is not None and watch.current().digest == second.digest  # type: ignore[union-attr]
    path.unlink()
    with pytest.raises(ConfigError, match="removed"):
        watch.current()
    with pytest.raises(ConfigError, match="no money-moving operation runs without a policy"):
        PolicyWatch(tmp_path / "none.yaml", None).current()  # never a file: nothing moves either


def test_a_tightened_limit_applies_to_the_next_payout_without_a_restart(make_runtime: Any, tmp_path: Path) -> None:
    config = _config(tmp_path)
    rt, wire = make_runtime(config_dir=config)
    first = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    _approve(rt, first)
    assert rt.service.state_of(first) == "SUCCEEDED"
    _edit(config / "policy.yaml", 'max_per_tx: "50000"', 'max_per_tx: "1000"')  # the payout is 1200
    second = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    assert rt.service.state_of(second) == "FAILED"
    assert len([r for r in wire.writes() if r.url.path == WITHDRAW]) == 1  # only the first payout
    changed = [e for e in query_events(rt.engine) if e.type == "policy.changed"]
    assert len(changed) == 1 and changed[0].payload["reloaded_by"].startswith("worker:")
    assert rt.service.show(second)["policy_digest"] == changed[0].payload["to"]


def test_a_payout_approved_while_the_policy_file_is_broken_waits_with_nothing_sent(
    make_runtime: Any, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    rt, wire = make_runtime(config_dir=config)
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    _edit(config / "policy.yaml", "limits:", "limits: [")  # someone saves a half-edited file
    _approve(rt, run_id)
    shown = rt.service.show(run_id)
    pay = shown["steps"][1]
    assert shown["state"] == "RUNNING" and pay["state"] == "RUNNING"
    assert "nothing sent" in (pay["error"] or "") and "policy.yaml" in (pay["error"] or "")
    assert [r for r in wire.writes() if r.url.path == WITHDRAW] == []
    _edit(config / "policy.yaml", "limits: [", "limits:")  # mended
    rt.service.execute_step(run_id, "pay")  # what the sweeper's redelivery does
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    assert len([r for r in wire.writes() if r.url.path == WITHDRAW]) == 1
