"""The engine is a pure state machine: table-driven checks of every path through a run."""

from __future__ import annotations

import pytest

from treasury.engine import machine as eng
from treasury.engine.machine import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    ApprovalDecided,
    Cancel,
    Dispatch,
    Fail,
    RequestApproval,
    RunView,
    Start,
    StepFinished,
    StepView,
    advance,
)
from treasury.errors import RunStateError
from treasury.models import RunState, StepState

P, R, A, S, F = StepState.PENDING, StepState.RUNNING, StepState.AWAITING_APPROVAL, StepState.SUCCEEDED, StepState.FAILED


def payout(approve: StepState = P, pay: StepState = P, run: RunState = RunState.PENDING) -> RunView:
    return RunView("r1", run, (
        StepView("approve", "approval", approve),
        StepView("pay", "operation", pay, deps=("approve",)),
    ))


def apply(view: RunView, event: eng.Event) -> tuple[RunView, eng.Transition]:
    t = advance(view, event)
    steps = tuple(StepView(s.id, s.kind, t.step_states.get(s.id, s.state), s.deps) for s in view.steps)
    return RunView(view.id, t.run_state, steps), t


def test_start_requests_approval_first_and_waits() -> None:
    view, t = apply(payout(), Start())
    assert t.run_state == RunState.AWAITING_APPROVAL
    assert t.commands == [RequestApproval("approve")]
    assert view.step("pay").state == P


def test_granted_approval_dispatches_the_guarded_step_then_success() -> None:
    view, _ = apply(payout(), Start())
    view, t = apply(view, ApprovalDecided("approve", "granted"))
    assert t.commands == [Dispatch("pay")]
    assert t.run_state == RunState.RUNNING
    view, t = apply(view, StepFinished("pay", S))
    assert t.run_state == RunState.SUCCEEDED and t.commands == []


@pytest.mark.parametrize(("outcome", "final"), [("rejected", RunState.REJECTED), ("expired", RunState.EXPIRED)])
def test_rejection_or_expiry_ends_the_run_and_skips_the_rest(outcome: str, final: RunState) -> None:
    view, _ = apply(payout(), Start())
    view, t = apply(view, ApprovalDecided("approve", outcome))  # type: ignore[arg-type]
    assert t.run_state == final
    assert view.step("pay").state == StepState.SKIPPED
    assert t.commands == []


def test_failed_step_fails_run_and_skips_pending_steps() -> None:
    view = RunView("r1", RunState.PENDING, (
        StepView("a", "operation", P), StepView("b", "operation", P, deps=("a",)),
    ))
    view, t = apply(view, Start())
    assert t.commands == [Dispatch("a")]
    view, t = apply(view, StepFinished("a", F))
    assert t.run_state == RunState.FAILED
    assert view.step("b").state == StepState.SKIPPED


def test_needs_attention_stops_new_work_until_resolved() -> None:
    view = RunView("r1", RunState.PENDING, (
        StepView("a", "operation", P), StepView("b", "operation", P, deps=("a",)),
    ))
    view, _ = apply(view, Start())
    view, t = apply(view, StepFinished("a", StepState.NEEDS_ATTENTION))
    assert t.run_state == RunState.NEEDS_ATTENTION and t.commands == []
    view, t = apply(view, StepFinished("a", S))  # a person settles it as succeeded
    assert t.commands == [Dispatch("b")]
    assert t.run_state == RunState.RUNNING


def test_independent_steps_dispatch_together() -> None:
    view = RunView("r1", RunState.PENDING, (StepView("a", "operation", P), StepView("b", "operation", P)))
    _, t = apply(view, Start())
    assert t.commands == [Dispatch("a"), Dispatch("b")]


def test_cancel_cancels_waiting_steps() -> None:
    view, _ = apply(payout(), Start())
    view, t = apply(view, Cancel())
    assert t.run_state == RunState.CANCELLED
    assert view.step("approve").state == StepState.CANCELLED and view.step("pay").state == StepState.CANCELLED


def test_policy_failure_at_start_fails_before_anything_runs() -> None:
    view, t = apply(payout(), Fail("policy"))
    assert t.run_state == RunState.FAILED and t.commands == []
    assert view.step("pay").state == StepState.SKIPPED


def test_late_result_after_cancel_is_recorded_but_changes_nothing_else() -> None:
    view = RunView("r1", RunState.CANCELLED, (StepView("a", "operation", R),))
    _, t = apply(view, StepFinished("a", S))
    assert t.run_state == RunState.CANCELLED and t.step_states == {"a": S}


@pytest.mark.parametrize("event", [Start(), Cancel(), ApprovalDecided("approve", "granted")])
def test_terminal_runs_refuse_events(event: eng.Event) -> None:
    with pytest.raises(RunStateError):
        advance(payout(S, S, RunState.SUCCEEDED), event)


def test_approval_decision_on_a_step_that_is_not_waiting_is_refused() -> None:
    with pytest.raises(RunStateError, match="not waiting for approval"):
        advance(payout(S, R, RunState.RUNNING), ApprovalDecided("approve", "granted"))


def test_start_twice_is_refused() -> None:
    view, _ = apply(payout(), Start())
    with pytest.raises(RunStateError):
        advance(view, Start())


def test_transition_tables_cover_every_state_and_terminal_states_are_final() -> None:
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert set(STEP_TRANSITIONS) == set(StepState)
    for state in RunState:
        if state.terminal:
            assert RUN_TRANSITIONS[state] == frozenset()
    for sstate in StepState:
        if sstate.terminal:
            assert STEP_TRANSITIONS[sstate] == frozenset()
