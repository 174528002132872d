"""The workflow engine: a pure state machine over run and step states.

``advance(run, event)`` returns the new run state, the step states that change and the
commands to carry out. It does no I/O: the run service persists the result in one
transaction (with audit events) and then carries out the commands.

A ``for_each`` step is a group of step instances (``StepView.group``). At most the group's
concurrency run at once, in item order. An instance that fails or needs attention does not
stop its siblings: the group is judged once every instance has settled, and only then does
a failure fail the run (or an instance that needs attention hold it for a person).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from treasury.errors import RunStateError
from treasury.models import RunState, StepState

# --------------------------------------------------------------------------- transition tables

RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.AWAITING_APPROVAL, RunState.SUCCEEDED,
                                 RunState.FAILED, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.AWAITING_APPROVAL, RunState.SUCCEEDED, RunState.FAILED,
                                 RunState.CANCELLED, RunState.NEEDS_ATTENTION}),
    RunState.AWAITING_APPROVAL: frozenset({RunState.RUNNING, RunState.REJECTED, RunState.EXPIRED,
                                           RunState.CANCELLED, RunState.SUCCEEDED, RunState.FAILED,
                                           RunState.NEEDS_ATTENTION}),
    RunState.NEEDS_ATTENTION: frozenset({RunState.RUNNING, RunState.AWAITING_APPROVAL, RunState.SUCCEEDED,
                                         RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.REJECTED: frozenset(),
    RunState.EXPIRED: frozenset(),
    RunState.CANCELLED: frozenset(),
}

STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.AWAITING_APPROVAL, StepState.SKIPPED,
                                  StepState.CANCELLED, StepState.FAILED}),
    StepState.AWAITING_APPROVAL: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED}),
    StepState.RUNNING: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.UNKNOWN,
                                  StepState.NEEDS_ATTENTION, StepState.RUNNING}),
    StepState.UNKNOWN: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.NEEDS_ATTENTION,
                                  StepState.RUNNING}),
    StepState.NEEDS_ATTENTION: frozenset({StepState.SUCCEEDED, StepState.FAILED}),
    StepState.SUCCEEDED: frozenset(),
    StepState.FAILED: frozenset(),
    StepState.SKIPPED: frozenset(),
    StepState.CANCELLED: frozenset(),
}

# --------------------------------------------------------------------------- views, events, commands


@dataclass(frozen=True)
class StepView:
    id: str
    kind: Literal["operation", "approval"]
    state: StepState
    deps: tuple[str, ...] = ()
    group: str | None = None  # the for_each step this is an instance of


@dataclass(frozen=True)
class RunView:
    id: str
    state: RunState
    steps: tuple[StepView, ...]
    # for_each step id -> how many of its instances may run at once (absent: 1)
    concurrency: Mapping[str, int] = field(default_factory=dict)

    def step(self, step_id: str) -> StepView:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise RunStateError(f"run {self.id} has no step {step_id!r}")


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class StepFinished:
    """An operation step reached SUCCEEDED, FAILED or NEEDS_ATTENTION (or was settled by a person)."""

    step_id: str
    state: StepState


@dataclass(frozen=True)
class ApprovalDecided:
    step_id: str
    outcome: Literal["granted", "rejected", "expired"]


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Fail:
    """The run fails before or outside a step (e.g. a policy denial at start)."""

    reason: str


Event = Start | StepFinished | ApprovalDecided | Cancel | Fail


@dataclass(frozen=True)
class Dispatch:
    step_id: str


@dataclass(frozen=True)
class RequestApproval:
    step_id: str


Command = Dispatch | RequestApproval


@dataclass
class Transition:
    run_state: RunState
    step_states: dict[str, StepState] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)


# --------------------------------------------------------------------------- advance


def _check_step(step: StepView, new: StepState) -> None:
    if new != step.state and new not in STEP_TRANSITIONS[step.state]:
        raise RunStateError(f"step {step.id!r} cannot go from {step.state} to {new}")


def advance(run: RunView, event: Event) -> Transition:
    """Apply ``event`` to ``run`` and schedule what becomes ready.

    Raises:
        RunStateError: the event is not allowed in the run's or the step's current state.
    """
    states = {s.id: s.state for s in run.steps}
    by_id = {s.id: s for s in run.steps}
    run_state = run.state

    def set_step(step_id: str, new: StepState) -> None:
        _check_step(StepView(step_id, by_id[step_id].kind, states[step_id]), new)
        states[step_id] = new

    if run_state.terminal and not isinstance(event, StepFinished):
        raise RunStateError(f"run {run.id} is {run_state}; nothing more can happen to it")

    if isinstance(event, Start):
        if run_state != RunState.PENDING:
            raise RunStateError(f"run {run.id} already started ({run_state})")
        run_state = RunState.RUNNING
    elif isinstance(event, Cancel):
        for s in run.steps:
            if states[s.id] in (StepState.PENDING, StepState.AWAITING_APPROVAL):
                set_step(s.id, StepState.CANCELLED)
        return _finish(run, states, RunState.CANCELLED)
    elif isinstance(event, Fail):
        for s in run.steps:
            if states[s.id] == StepState.PENDING:
                set_step(s.id, StepState.SKIPPED)
            elif states[s.id] == StepState.AWAITING_APPROVAL:
                set_step(s.id, StepState.CANCELLED)
        return _finish(run, states, RunState.FAILED)
    elif isinstance(event, ApprovalDecided):
        step = run.step(event.step_id)
        if step.kind != "approval" or states[step.id] != StepState.AWAITING_APPROVAL:
            raise RunStateError(f"step {step.id!r} of run {run.id} is not waiting for approval")
        if event.outcome == "granted":
            set_step(step.id, StepState.SUCCEEDED)
        else:
            set_step(step.id, StepState.FAILED)
            for s in run.steps:
                if states[s.id] in (StepState.PENDING, StepState.AWAITING_APPROVAL):
                    set_step(s.id, StepState.SKIPPED if states[s.id] == StepState.PENDING
                             else StepState.CANCELLED)
            final = RunState.REJECTED if event.outcome == "rejected" else RunState.EXPIRED
            return _finish(run, states, final)
    elif isinstance(event, StepFinished):
        step = run.step(event.step_id)
        if event.state not in (StepState.SUCCEEDED, StepState.FAILED, StepState.NEEDS_ATTENTION):
            raise RunStateError(f"a step cannot finish as {event.state}")
        set_step(step.id, event.state)
        if run_state.terminal:  # a late result of an in-flight step after cancel/fail: record only
            return Transition(run_state, _changes(run, states))

    return _schedule(run, states, run_state)


_SETTLED = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.NEEDS_ATTENTION,
                      StepState.SKIPPED, StepState.CANCELLED})
_ACTIVE = frozenset({StepState.RUNNING, StepState.UNKNOWN})


def _open_groups(run: RunView, states: Mapping[str, StepState]) -> set[str]:
    """for_each steps with an instance still to settle: their failures wait for the rest."""
    return {s.group for s in run.steps if s.group is not None and states[s.id] not in _SETTLED}


def _schedule(run: RunView, states: dict[str, StepState], run_state: RunState) -> Transition:
    commands: list[Command] = []
    open_groups = _open_groups(run, states)

    def counts(s: StepView, state: StepState) -> bool:
        return states[s.id] == state and (s.group is None or s.group not in open_groups)

    if any(counts(s, StepState.FAILED) for s in run.steps):
        for s in run.steps:
            if states[s.id] == StepState.PENDING:
                states[s.id] = StepState.SKIPPED
        return _finish(run, states, RunState.FAILED)
    if any(counts(s, StepState.NEEDS_ATTENTION) for s in run.steps):
        # nothing new starts while a person has to decide about money that may have moved
        return _finish(run, states, RunState.NEEDS_ATTENTION)
    # for_each steps with an instance that failed or needs a person (their group is still open)
    blocked = {s.group for s in run.steps if states[s.id] in (StepState.FAILED, StepState.NEEDS_ATTENTION)}
    active = Counter(s.group for s in run.steps if s.group is not None and states[s.id] in _ACTIVE)
    for s in run.steps:
        if states[s.id] != StepState.PENDING:
            continue
        if blocked and s.group not in blocked:
            # an instance failed or needs a person: its siblings go on, nothing else starts
            continue
        if all(states[d] in (StepState.SUCCEEDED, StepState.SKIPPED) for d in s.deps):
            if s.kind == "approval":
                states[s.id] = StepState.AWAITING_APPROVAL
                commands.append(RequestApproval(s.id))
            elif s.group is not None and active[s.group] >= run.concurrency.get(s.group, 1):
                continue  # the group's concurrency is taken; the next to settle frees a place
            else:
                states[s.id] = StepState.RUNNING
                commands.append(Dispatch(s.id))
                if s.group is not None:
                    active[s.group] += 1
    values = set(states.values())
    if values <= {StepState.SUCCEEDED, StepState.SKIPPED}:
        new_state = RunState.SUCCEEDED
    elif StepState.RUNNING in values or StepState.UNKNOWN in values:
        new_state = RunState.RUNNING
    elif StepState.AWAITING_APPROVAL in values:
        new_state = RunState.AWAITING_APPROVAL
    else:
        new_state = RunState.RUNNING
    t = _finish(run, states, new_state)
    t.commands = commands
    return t


def group_counts(run: RunView) -> dict[str, dict[str, int]]:
    """For each for_each step, how many of its instances are in each state (states with none
    left out), in the order the steps are listed."""
    out: dict[str, Counter[str]] = {}
    for s in run.steps:
        if s.group is not None:
            out.setdefault(s.group, Counter())[s.state.value] += 1
    return {group: dict(sorted(c.items())) for group, c in out.items()}


def _changes(run: RunView, states: dict[str, StepState]) -> dict[str, StepState]:
    return {s.id: states[s.id] for s in run.steps if states[s.id] != s.state}


def _finish(run: RunView, states: dict[str, StepState], new_state: RunState) -> Transition:
    if new_state != run.state and new_state not in RUN_TRANSITIONS[run.state]:
        raise RunStateError(f"run {run.id} cannot go from {run.state} to {new_state}")
    return Transition(new_state, _changes(run, states))
