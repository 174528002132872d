"""The fault matrix: every write operation under every fault mode keeps invariant I1.

For each (operation, mode) pair, ``TREASURY_FAULT_OPS`` (default 20) seeded operations run
with the fault firing on 30 % of the write requests. Afterwards the simulator's ledger must
hold exactly one effect for each SUCCEEDED operation (each leg of a batch), none for a
FAILED one, at most one for a NEEDS_ATTENTION one (which must carry a plain reason), and no
effect that belongs to no operation.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from sqlalchemy import Engine

from treasury.models import StepState

from .harness import OPS, PATHS, all_client_ids, effects, make_world

N_OPS = int(os.environ.get("TREASURY_FAULT_OPS", "20"))
MODES = ["error_before", "error_after", "timeout_after", "reset_after"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", list(OPS))
def test_exactly_once_under_faults(sqlite_engine: Engine, op: str, mode: str) -> None:
    seed = sum(map(ord, op + mode))
    world = make_world(sqlite_engine, seed=seed)
    world.sim.set_faults([{"method": "POST", "path": PATHS[op], "mode": mode, "status": 500,
                           "probability": 0.3}])
    counts: Counter[str] = Counter()
    ours: set[str] = set()
    for i in range(N_OPS):
        out = world.executor.execute(world.request(op, step_id=f"s{i}", max_seconds=600))
        counts[out.state.value] += 1
        ours.update(out.client_ids)
        state = world.sim.state()
        n = [effects(state, cid) for cid in out.client_ids]
        assert out.state in (StepState.SUCCEEDED, StepState.FAILED, StepState.NEEDS_ATTENTION), out
        assert max(n) <= 1, f"duplicate effect: {out}"
        if out.state is StepState.SUCCEEDED:
            assert n == [1] * len(n), out
        elif out.state is StepState.FAILED:
            if op == "batch_orders" and out.result:  # a failed batch may have succeeded legs
                for leg, count in zip(out.result["legs"], n, strict=True):
                    assert count == (1 if leg["status"] == "SUCCEEDED" else 0), out
            else:
                assert n == [0] * len(n), out
        else:
            assert out.reason and out.reason.strip(), out
    stray = set(all_client_ids(world.sim.state())) - ours
    assert not stray, f"effects that belong to no operation: {stray}"
    fired = sum(r["fired"] for r in world.sim.state()["faults"])
    assert fired > 0 or N_OPS < 5, "the fault never fired: the test proved nothing"
    assert counts["SUCCEEDED"] > 0


def test_http_campaign_keeps_exactly_once(tmp_path) -> None:
    """The benchmark's campaign, small: real HTTP, real timeouts and resets, 30 % faults."""
    import importlib.util

    from .harness import ROOT

    spec = importlib.util.spec_from_file_location("fault_campaign_inline",
                                                  ROOT / "benchmarks" / "fault_campaign_inline.py")
    assert spec is not None and spec.loader is not None
    campaign = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(campaign)
    result = campaign.run(40, f"sqlite:///{tmp_path / 'c.db'}", seed=11)
    assert result["faulted_requests"] > 0
    assert sum(result["outcomes"].values()) == 40
    assert set(result["outcomes"]) <= {"SUCCEEDED", "FAILED", "NEEDS_ATTENTION"}
    for bad in ("duplicates", "succeeded_without_effect", "failed_with_effect",
                "needs_attention_without_reason", "effects_without_step"):
        assert result[bad] == 0, result
