"""for_each groups in the engine: the concurrency bound, and siblings that go on after a failure."""

from __future__ import annotations

import random

import pytest

from treasury.engine import machine as eng
from treasury.engine.machine import Dispatch, RequestApproval, RunView, StepFinished, StepView, advance
from treasury.language.fanout import instance_id
from treasury.models import RunState, StepState

P, R, S, F, N = (StepState.PENDING, StepState.RUNNING, StepState.SUCCEEDED, StepState.FAILED,
                 StepState.NEEDS_ATTENTION)


def fan_out(items: int, concurrency: int, *, approval: bool = True) -> RunView:
    """approve -> pay[0000..] (a for_each group) -> report (needs every instance)."""
    pays = [instance_id("pay", n) for n in range(items)]
    steps = [StepView("approve", "approval", P)] if approval else []
    steps += [StepView(p, "operation", P, deps=("approve",) if approval else (), group="pay") for p in pays]
    steps.append(StepView("report", "operation", P, deps=tuple(pays)))
    return RunView("r1", RunState.PENDING, tuple(steps), concurrency={"pay": concurrency})


def apply(view: RunView, event: eng.Event) -> tuple[RunView, eng.Transition]:
    t = advance(view, event)
    steps = tuple(StepView(s.id, s.kind, t.step_states.get(s.id, s.state), s.deps, s.group) for s in view.steps)
    return RunView(view.id, t.run_state, steps, view.concurrency), t


def drive(view: RunView, outcome: dict[str, StepState], seed: int = 0) -> tuple[RunView, list[str], int]:
    """Start and approve, then finish running steps in a random order until nothing runs.

    Returns the final view, the order steps were dispatched in, and the most that ran at once.
    """
    rng = random.Random(seed)
    view, t = apply(view, eng.Start())
    running: list[str] = []
    dispatched: list[str] = []
    peak = 0

    def take(t: eng.Transition) -> None:
        nonlocal peak
        for c in t.commands:
            if isinstance(c, Dispatch):
                running.append(c.step_id)
                dispatched.append(c.step_id)
        peak = max(peak, sum(1 for r in running if r.startswith("pay[")))

    if any(isinstance(c, RequestApproval) for c in t.commands):
        view, t = apply(view, eng.ApprovalDecided("approve", "granted"))
    take(t)
    while running:
        step = running.pop(rng.randrange(len(running)))
        view, t = apply(view, StepFinished(step, outcome.get(step, S)))
        take(t)
    return view, dispatched, peak


@pytest.mark.parametrize(("items", "concurrency"), [(1, 1), (7, 1), (20, 3), (200, 10), (5, 50)])
def test_at_most_concurrency_instances_run_at_once(items: int, concurrency: int) -> None:
    view, dispatched, peak = drive(fan_out(items, concurrency), {})
    assert peak == min(items, concurrency)
    pays = [d for d in dispatched if d.startswith("pay[")]
    assert pays == sorted(pays) and len(pays) == items  # in item order, each once
    assert dispatched[-1] == "report"  # only once every instance succeeded
    assert view.state == RunState.SUCCEEDED
    assert eng.group_counts(view) == {"pay": {"SUCCEEDED": items}}


@pytest.mark.parametrize("seed", range(5))
def test_a_failed_item_does_not_stop_its_siblings(seed: int) -> None:
    outcome = {instance_id("pay", 2): F, instance_id("pay", 11): F}
    view, dispatched, peak = drive(fan_out(20, 4), outcome, seed)
    assert peak <= 4
    assert len([d for d in dispatched if d.startswith("pay[")]) == 20  # every item was tried
    assert "report" not in dispatched
    assert view.state == RunState.FAILED
    assert view.step("report").state == StepState.SKIPPED
    assert eng.group_counts(view) == {"pay": {"FAILED": 2, "SUCCEEDED": 18}}


def test_an_item_that_needs_attention_holds_the_run_once_the_others_are_done() -> None:
    held = instance_id("pay", 0)
    view, t = apply(fan_out(3, 1, approval=False), eng.Start())
    assert [c.step_id for c in t.commands if isinstance(c, Dispatch)] == [held]
    view, t = apply(view, StepFinished(held, N))
    assert view.state == RunState.RUNNING  # its siblings go on
    assert [c.step_id for c in t.commands] == [instance_id("pay", 1)]
    view, t = apply(view, StepFinished(instance_id("pay", 1), S))
    view, t = apply(view, StepFinished(instance_id("pay", 2), S))
    assert view.state == RunState.NEEDS_ATTENTION and t.commands == []
    assert eng.group_counts(view) == {"pay": {"NEEDS_ATTENTION": 1, "SUCCEEDED": 2}}
    # a person settles it: the run goes on to the step that needs every instance
    view, t = apply(view, StepFinished(held, S))
    assert [c.step_id for c in t.commands] == ["report"] and view.state == RunState.RUNNING


def test_a_failed_item_starts_nothing_outside_its_group() -> None:
    view = RunView("r1", RunState.PENDING, (
        StepView("pay[0000]", "operation", P, group="pay"),
        StepView("pay[0001]", "operation", P, group="pay"),
        StepView("other", "operation", P, deps=("slow",)),
        StepView("slow", "operation", P),
    ), concurrency={"pay": 1})
    view, t = apply(view, eng.Start())
    assert {c.step_id for c in t.commands} == {"pay[0000]", "slow"}
    view, t = apply(view, StepFinished("pay[0000]", F))
    assert [c.step_id for c in t.commands] == ["pay[0001]"]
    view, t = apply(view, StepFinished("slow", S))
    assert t.commands == []  # "other" waits: an instance failed
    view, t = apply(view, StepFinished("pay[0001]", S))
    assert view.state == RunState.FAILED and view.step("other").state == StepState.SKIPPED


def test_a_plain_failure_still_ends_the_run_at_once() -> None:
    view, _ = apply(fan_out(5, 2, approval=False), eng.Start())
    view, _ = apply(view, StepFinished("pay[0000]", S))
    view = RunView(view.id, view.state, (*view.steps, StepView("lone", "operation", R)), view.concurrency)
    view, _ = apply(view, StepFinished("lone", F))
    assert view.state == RunState.FAILED
    assert all(view.step(instance_id("pay", n)).state == StepState.SKIPPED for n in (3, 4))
