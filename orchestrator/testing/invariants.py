"""What every simulated saga must keep: ``check_invariants`` walks a ``Trace``'s log
with its own bookkeeping (not the core's) and asserts DESIGN.md's compensation rules
1-5, data flow and retry budgets (safety), that what should happen does (liveness: a
retryable failure with budget left is retried, a fired timer runs its attempt, a resume
gives a fresh budget and re-runs what gave up), fold = live state, and deterministic
replay. Each failure names its rule; ``history`` prints the log, one line a message.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from orchestrator.core import commands as cm
from orchestrator.core import events as ev
from orchestrator.core.evolve import fold
from orchestrator.core.messages import Event, SagaMessage
from orchestrator.core.policy import StepKind
from orchestrator.core.react import is_terminal, resume
from orchestrator.core.replay import replay
from orchestrator.core.state import SagaStatus
from orchestrator.testing.simulation import Trace

__all__ = ["check_invariants", "history"]


def check_invariants(trace: Trace) -> None:
    """Assert rules 1-5 and the core's other promises over a finished ``trace``."""
    wf, log, state = trace.workflow, trace.log, trace.state
    assert state is not None and is_terminal(state), "saga is not terminal"
    graph = wf.graph.subgraph(wf.steps)
    descendants = {s: nx.descendants(graph, s) for s in wf.steps}
    ancestors = {s: nx.ancestors(graph, s) for s in wf.steps}
    kinds = {s: wf.steps[s].kind for s in wf.steps}
    has_comp = {s: wf.steps[s].compensation is not None for s in wf.steps}

    issued: dict[tuple[str, int, bool], int] = {}
    answered: set[tuple[str, int, bool]] = set()
    succeeded: dict[str, int] = {}
    outputs: dict[str, Any] = {}
    comp_succeeded: dict[str, int] = {}
    comp_started: dict[str, int] = {}
    round_attempts: dict[tuple[str, bool], int] = {}
    fatal: set[tuple[str, bool]] = set()
    last_failure_at: dict[tuple[str, bool], float] = {}
    forward_open = True
    pivot_at: int | None = None
    given_up: list[str] = []
    failed_open = False
    finish: cm.FinishSaga | None = None
    expected: list[tuple[str, str, bool]] = []
    """What the commands after the last event must include: (what, step, compensation),
    each noted only if the saga could still run it when the event came (a forward step
    after an abort cannot: rule 1)."""
    since: list[SagaMessage] = []
    """The commands since the last event."""

    def settle() -> None:
        """Liveness: the commands that followed the last event did what it called for."""
        for what, step, comp in expected:
            kinds = (cm.CompensateStep,) if comp else (cm.ExecuteStep,)
            if what == "retry":
                found = any(
                    isinstance(c, cm.ScheduleRetry) and c.step == step and c.compensation == comp
                    for c in since
                )
            else:
                found = any(isinstance(c, kinds) and c.step == step for c in since)
            part = "compensation" if comp else "step"
            assert found, f"liveness: {part} {step}: no {what} after {since_event}"
        expected.clear()
        since.clear()

    since_event: SagaMessage | None = None

    def merged(step: str, own: bool) -> dict[str, Any]:
        data = dict(trace.input)
        for a in wf.order:  # the documented topological order
            if a in ancestors[step]:
                data.update(outputs[a])
        if own:
            data.update(outputs[step])
        return data

    for i, m in enumerate(log):
        if isinstance(m, Event):
            settle()
            since_event = m
        else:
            since.append(m)
        if isinstance(m, cm.ExecuteStep | cm.CompensateStep):
            comp = isinstance(m, cm.CompensateStep)
            key = (m.step, m.attempt, comp)
            assert key not in issued, f"{m.id} issued twice"
            assert m.id == (
                f"{m.saga_id}:{m.step}:compensate:{m.attempt}"
                if comp
                else f"{m.saga_id}:{m.step}:{m.attempt}"
            )
            issued[key] = i
            spec = wf.steps[m.step]
            policy = spec.compensation.retry if comp and spec.compensation else spec.retry
            n = round_attempts[(m.step, comp)] = round_attempts.get((m.step, comp), 0) + 1
            assert policy.max_attempts is None or n <= policy.max_attempts, f"{m.id}: over budget"
            assert (m.step, comp) not in fatal, f"{m.id} retries a non-retryable failure"
            assert m.data == merged(m.step, comp), f"{m.id}: wrong data"
        if isinstance(m, cm.ExecuteStep):
            assert forward_open, f"rule 1: {m.id} started after the saga aborted"
            assert all(d in succeeded for d in wf.steps[m.step].deps), f"{m.id} before its deps"
        elif isinstance(m, cm.CompensateStep):
            assert pivot_at is None, f"rule 5: {m.id} after a pivot succeeded"
            assert m.step in succeeded, f"rule 2: {m.id} for a step that never succeeded"
            if m.attempt == 1 or m.step not in comp_started:
                assert m.step not in comp_started, f"rule 2: {m.step} compensated twice"
                assert not given_up, f"rule 4: {m.id} started after {given_up[0]}'s gave up"
                comp_started[m.step] = i
                for d in descendants[m.step]:
                    in_flight = any(k[0] == d and not k[2] and k not in answered for k in issued)
                    assert not in_flight, f"rule 3: {m.id} while descendant {d} in flight"
                    if d in succeeded and has_comp[d]:
                        assert d in comp_succeeded, f"rule 3: {m.id} before {d} was compensated"
        elif isinstance(m, ev.StepSucceeded | ev.CompensationSucceeded):
            comp = isinstance(m, ev.CompensationSucceeded)
            key = (m.step, m.attempt, comp)
            if key in issued and key not in answered:
                answered.add(key)
                table = comp_succeeded if comp else succeeded
                assert m.step not in table, f"{m.step} succeeded twice"
                table[m.step] = i
                if isinstance(m, ev.StepSucceeded):
                    outputs[m.step] = dict(m.output)
                    if kinds[m.step] is StepKind.PIVOT and pivot_at is None:
                        pivot_at = i
        elif isinstance(
            m, ev.StepFailed | ev.StepTimedOut | ev.CompensationFailed | ev.CompensationTimedOut
        ):
            comp = isinstance(m, ev.CompensationFailed | ev.CompensationTimedOut)
            key = (m.step, m.attempt, comp)
            if key in issued and key not in answered:
                answered.add(key)
                last_failure_at[(m.step, comp)] = m.now
                if isinstance(m, ev.StepFailed | ev.CompensationFailed) and not m.retryable:
                    fatal.add((m.step, comp))
                else:
                    spec = wf.steps[m.step]
                    policy = spec.compensation.retry if comp and spec.compensation else spec.retry
                    used = round_attempts.get((m.step, comp), 0)
                    budget_left = policy.max_attempts is None or used < policy.max_attempts
                    if budget_left and (comp or forward_open):
                        expected.append(("retry", m.step, comp))
        elif isinstance(m, ev.TimerFired) and (m.compensation or forward_open):
            expected.append(("attempt", m.step, m.compensation))
        elif isinstance(m, cm.ScheduleRetry):
            failed_at = last_failure_at[(m.step, m.compensation)]
            spec = wf.steps[m.step]
            policy = spec.compensation.retry if m.compensation and spec.compensation else spec.retry
            assert failed_at <= m.due_at <= failed_at + policy.max_interval + 1e-9
        elif isinstance(m, cm.AbortSaga):
            forward_open = False
            assert m.compensate == (pivot_at is None)
        elif isinstance(m, cm.GiveUpCompensation):
            given_up.append(m.step)
        elif isinstance(m, cm.FinishSaga):
            finish = m
            failed_open = m.status is SagaStatus.FAILED
        elif isinstance(m, ev.ResumeRequested) and failed_open:
            failed_open = False
            if given_up:
                for step in given_up:  # a fresh budget for what gave up, used at once
                    expected.append(("attempt", step, True))
                given_up = []
                for k in [k for k in round_attempts if k[1]]:
                    del round_attempts[k]
                fatal = {k for k in fatal if not k[1]}
            else:
                forward_open = True
                for k in [k for k in round_attempts if not k[1]]:
                    del round_attempts[k]
                fatal = {k for k in fatal if k[1]}

    settle()
    assert finish is not None and finish.status is state.status
    status = state.status
    if status is SagaStatus.COMPLETED:
        assert set(succeeded) == set(wf.steps), "completed with steps not succeeded"
        assert not comp_started, "completed saga compensated something"
        assert finish.output == merged_all(trace, outputs)
    elif status is SagaStatus.COMPENSATED:
        assert pivot_at is None, "rule 5: compensated after a pivot succeeded"
        for s in succeeded:
            if has_comp[s]:
                assert s in comp_succeeded, f"rule 2: {s} succeeded and was not compensated"
    else:
        assert given_up or (pivot_at is not None and not forward_open), "failed without cause"
        if given_up:
            assert finish.step in given_up, "rule 4: failure does not name the compensation"
            assert state.compensation_failure is not None
            assert state.compensation_failure.step == finish.step
    assert resume(wf, state) == (), "a terminal saga has outstanding commands"
    assert fold(log) == state, "fold(log) differs from the live state"
    result = replay(wf, log)
    assert result.ok, f"replay mismatch: {result.mismatches[0]}"
    assert result.state == state


def merged_all(trace: Trace, outputs: dict[str, Any]) -> dict[str, Any]:
    data = dict(trace.input)
    for step in trace.workflow.order:
        data.update(outputs[step])
    return data


def history(trace: Trace) -> str:
    """The trace's log, one line a message: what a failure report shows."""
    lines = [f"workflow {trace.workflow.name}: {_shape(trace)}"]
    for i, m in enumerate(trace.log):
        fields = []
        for name in ("step", "attempt", "compensation", "retryable", "status", "due_at"):
            value = getattr(m, name, None)
            if value is not None and value is not False:
                fields.append(f"{name}={value}")
        lines.append(f"{i:4} {type(m).__name__:<22} {' '.join(fields)}")
    return "\n".join(lines)


def _shape(trace: Trace) -> str:
    wf = trace.workflow
    parts = []
    for name in wf.order:
        spec = wf.steps[name]
        deps = ",".join(sorted(spec.deps)) or "-"
        parts.append(f"{name}({spec.kind.value}, {spec.retry.max_attempts}x, after {deps})")
    return "; ".join(parts)
