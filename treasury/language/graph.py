"""The step graph of a workflow: which steps exist, what each waits for, and cycles.

A step waits for its ``needs`` (or the previous step in the file when it has none) and for
every approval step before it in the file (an approval guards each operation step after it).
``StepGraph`` reports duplicate ids, bad ``needs`` and cycles as (field path, message) pairs;
the caller locates them in the file.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from treasury.language.hints import suggest
from treasury.language.positions import Path_, PositionMap
from treasury.language.spec import WorkflowSpec

Finding = tuple[Path_, str]


class StepGraph:
    """Dependencies as the runner orders steps: ``needs`` (or the previous step) plus guards."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.index = {s.id: i for i, s in reversed(list(enumerate(spec.steps)))}  # first wins
        self.deps = self._effective_deps()

    def _effective_deps(self) -> dict[str, set[str]]:
        deps = {k: set(v) for k, v in self.spec.dependencies().items()}
        for step_id, guards in self.spec.guards().items():
            deps.setdefault(step_id, set()).update(guards)
        return {k: {d for d in v if d in self.index} for k, v in deps.items()}

    def ancestors(self, step_id: str) -> set[str]:
        """Every step that runs before ``step_id`` (transitively)."""
        seen: set[str] = set()
        stack = list(self.deps.get(step_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.deps.get(current, ()))
        return seen

    def id_problems(self, positions: PositionMap) -> list[Finding]:
        """A problem for each step id used before (``positions`` tells where the first one is)."""
        out: list[Finding] = []
        first: dict[str, int] = {}
        for i, step in enumerate(self.spec.steps):
            if step.id in first:
                line = positions.locate(("steps", first[step.id], "id"))[0]
                out.append((("steps", i, "id"), f"duplicate step id {step.id!r} (first at line {line})"))
            else:
                first[step.id] = i
        return out

    def needs_problems(self) -> list[Finding]:
        """A problem for each ``needs`` entry naming the step itself, an unknown step, or a repeat."""
        out: list[Finding] = []
        for i, step in enumerate(self.spec.steps):
            seen: set[str] = set()
            for j, need in enumerate(step.needs or ()):
                path = ("steps", i, "needs", j)
                if need == step.id:
                    out.append((path, f"step {step.id!r} cannot need itself"))
                elif need not in self.index:
                    out.append((path, f"needs unknown step {need!r}{suggest(need, self.index)}"))
                elif need in seen:
                    out.append((path, f"step {need!r} is listed twice in needs"))
                seen.add(need)
        return out

    def cycle_problems(self) -> list[Finding]:
        """One problem per cycle (strongly connected component), naming one concrete loop."""
        out: list[Finding] = []
        order = [s.id for s in self.spec.steps]
        if len(set(order)) != len(order):
            return out  # with duplicate ids the graph is ambiguous; the duplicates are reported
        reported: set[str] = set()
        for component in strongly_connected(order, self.deps):
            if len(component) < 2 or component & reported:
                continue
            reported |= component
            first = min(component, key=lambda s: self.index[s])
            loop = a_cycle(first, component, self.deps, order)
            i = self.index[first]
            at: Path_ = ("steps", i, "needs") if self.spec.steps[i].needs is not None else ("steps", i, "id")
            declared = self.spec.dependencies()
            via_guard = any(b not in declared.get(a, ()) for a, b in itertools.pairwise(loop))
            note = " (an approval step guards every operation step after it in the file)" if via_guard else ""
            out.append((at, "steps depend on each other in a cycle: " + " → ".join(loop) + note))
        return out


def strongly_connected(order: list[str], deps: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (a workflow may have up to MAX_STEPS steps)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(deps.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(deps.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def a_cycle(start: str, component: set[str], deps: Mapping[str, set[str]], order: list[str]) -> list[str]:
    """One concrete loop inside a strongly connected component, for the message."""
    rank = {s: n for n, s in enumerate(order)}
    path = [start]
    seen = {start: 0}
    current = start
    while True:
        nxt = min((d for d in deps.get(current, ()) if d in component), key=lambda s: rank[s])
        if nxt in seen:
            loop = path[seen[nxt]:]
            return [*loop, nxt]
        seen[nxt] = len(path)
        path.append(nxt)
        current = nxt
