"""Simulated runs of a saga under a hostile world, and the invariants they must keep.

``simulate`` plays the shell: it delivers outcomes of outstanding commands in any order
(success, retryable or fatal failure, timeout), fires retry timers, redelivers old
replies, sends late replies for attempts that already have an outcome, crashes (rebuilds
the state from the log and re-issues ``resume``), and resumes failed sagas. Every choice
is drawn from hypothesis, so failures shrink to a short story.

``check_invariants`` then walks the log with its own bookkeeping (not the core's) and
asserts DESIGN.md's compensation rules 1-5, data flow, retry budgets, fold = live state,
and deterministic replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from hypothesis import strategies as st

from orchestrator.core import commands as cm
from orchestrator.core import events as ev
from orchestrator.core.decide import needed
from orchestrator.core.evolve import fold
from orchestrator.core.messages import Command, Event, SagaMessage
from orchestrator.core.policy import StepKind
from orchestrator.core.react import is_terminal, react, resume, start
from orchestrator.core.replay import replay
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.core.workflow import Workflow

__all__ = ["Trace", "check_invariants", "simulate"]

_OUTCOMES = ["ok", "ok", "fail", "timeout", "fatal"]


@dataclass
class Trace:
    """A simulated saga: its workflow, input, full log and final live state."""

    workflow: Workflow
    input: dict[str, Any]
    log: list[SagaMessage] = field(default_factory=list)
    state: SagaState | None = None
    crashes: int = 0
    resumes: int = 0
    duplicates: int = 0


def simulate(
    workflow: Workflow,
    data: st.DataObject,
    *,
    saga_id: str = "saga-1",
    input: dict[str, Any] | None = None,
    chaos_actions: int = 150,
    max_resumes: int = 2,
) -> Trace:
    """Run one saga of ``workflow`` to a terminal state with choices drawn from ``data``
    (``hypothesis.strategies.data()``); assert the per-action properties on the way.

    For ``chaos_actions`` actions anything may happen; after that outcomes succeed and
    timers fire, so every run terminates. Returns the ``Trace`` for ``check_invariants``.
    """
    sim = _Sim(workflow, data, saga_id, dict(input or {"seed": 1}))
    sim.run(chaos_actions, max_resumes)
    return sim.trace


class _Sim:
    def __init__(
        self, wf: Workflow, data: st.DataObject, saga_id: str, input: dict[str, Any]
    ) -> None:
        self.wf = wf
        self.data = data
        self.saga_id = saga_id
        self.trace = Trace(wf, input)
        self.outstanding: dict[str, Command] = {}
        self.delivered: list[Event] = []
        self.answered: list[cm.ExecuteStep | cm.CompensateStep] = []
        self.now = 0.0

    def feed(self, event: Event) -> tuple[SagaState | None, SagaState, tuple[Command, ...]]:
        before = self.trace.state
        after, commands = react(self.wf, before, event)
        assert not needed(self.wf, after), "react stopped before its fixed point"
        self.trace.log.append(event)
        self.trace.log.extend(commands)
        for c in commands:
            if isinstance(c, cm.ExecuteStep | cm.CompensateStep | cm.ScheduleRetry):
                self.outstanding[c.id] = c
            elif isinstance(c, cm.AbortSaga):
                # Forward retry timers are moot once aborted (documented by resume()).
                for key, out in list(self.outstanding.items()):
                    if isinstance(out, cm.ScheduleRetry) and not out.compensation:
                        del self.outstanding[key]
        self.trace.state = after
        return before, after, commands

    def run(self, chaos_actions: int, max_resumes: int) -> None:
        draw = self.data.draw
        self.feed(start(self.wf, self.saga_id, self.trace.input, self.now))
        actions = 0
        while True:
            actions += 1
            if actions > chaos_actions + 20 * (len(self.wf.steps) + 5) * (max_resumes + 1):
                raise AssertionError("saga did not terminate")
            state = self.trace.state
            assert state is not None
            self.now += 1.0
            calm = actions > chaos_actions
            if is_terminal(state):
                assert not self.outstanding, f"terminal with outstanding {self.outstanding}"
                if (
                    state.status is SagaStatus.FAILED
                    and self.trace.resumes < max_resumes
                    and draw(st.booleans(), label="resume")
                ):
                    self.trace.resumes += 1
                    _, after, _ = self.feed(ev.ResumeRequested(self.saga_id, self.now))
                    assert after.status is not SagaStatus.FAILED
                    continue
                return
            work = sorted(
                k for k, c in self.outstanding.items() if not isinstance(c, cm.ScheduleRetry)
            )
            timers = sorted(
                k for k, c in self.outstanding.items() if isinstance(c, cm.ScheduleRetry)
            )
            options = []
            if work:
                options.append("reply")
            if timers:
                options.append("fire")
            if not calm:
                options.append("crash")
                if self.delivered:
                    options.append("duplicate")
                if self.answered:
                    options.append("late")
            assert work or timers, "saga is stuck: nothing outstanding and not terminal"
            action = draw(st.sampled_from(options), label="action")
            if action == "reply":
                key = draw(st.sampled_from(work), label="command")
                outcome = "ok" if calm else draw(st.sampled_from(_OUTCOMES), label="outcome")
                self.reply(key, outcome)
            elif action == "fire":
                key = draw(st.sampled_from(timers), label="timer")
                timer = self.outstanding.pop(key)
                assert isinstance(timer, cm.ScheduleRetry)
                self.now = max(self.now, timer.due_at)
                event = ev.TimerFired(
                    self.saga_id, timer.step, timer.attempt, timer.compensation, self.now
                )
                before, after, _ = self.feed(event)
                assert after is not before, f"{event} was ignored"
            elif action == "duplicate":
                self.trace.duplicates += 1
                self.ignored(draw(st.sampled_from(self.delivered), label="duplicate"))
            elif action == "late":
                cmd = draw(st.sampled_from(self.answered), label="late")
                self.ignored(self.outcome_for(cmd, "ok"))
            else:
                self.crash()

    def reply(self, key: str, outcome: str) -> None:
        cmd = self.outstanding.pop(key)
        assert isinstance(cmd, cm.ExecuteStep | cm.CompensateStep)
        event = self.outcome_for(cmd, outcome)
        before, after, _ = self.feed(event)
        assert after is not before, f"{event} for an outstanding command was ignored"
        self.delivered.append(event)
        self.answered.append(cmd)

    def outcome_for(self, cmd: cm.ExecuteStep | cm.CompensateStep, outcome: str) -> Event:
        sid, step, attempt, now = self.saga_id, cmd.step, cmd.attempt, self.now
        if isinstance(cmd, cm.ExecuteStep):
            if outcome == "ok":
                return ev.StepSucceeded(
                    sid, step, attempt, {f"o_{step}": attempt, "last": step}, now
                )
            if outcome == "timeout":
                return ev.StepTimedOut(sid, step, attempt, now)
            return ev.StepFailed(sid, step, attempt, f"{outcome} {attempt}", outcome == "fail", now)
        if outcome == "ok":
            return ev.CompensationSucceeded(sid, step, attempt, now)
        if outcome == "timeout":
            return ev.CompensationTimedOut(sid, step, attempt, now)
        return ev.CompensationFailed(
            sid, step, attempt, f"{outcome} {attempt}", outcome == "fail", now
        )

    def ignored(self, event: Event) -> None:
        before, after, commands = self.feed(event)
        assert after is before and not commands, f"{event} changed the saga"

    def crash(self) -> None:
        self.trace.crashes += 1
        rebuilt = fold(self.trace.log)
        assert rebuilt == self.trace.state, "fold(log) differs from the live state"
        assert rebuilt is not None
        reissued = resume(self.wf, rebuilt)
        assert len({c.id for c in reissued}) == len(reissued), "resume issued an id twice"
        assert {c.id: c for c in reissued} == self.outstanding, (
            f"resume() {sorted(c.id for c in reissued)} != outstanding {sorted(self.outstanding)}"
        )
        self.trace.state = rebuilt


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

    def merged(step: str, own: bool) -> dict[str, Any]:
        data = dict(trace.input)
        for a in wf.order:  # the documented topological order
            if a in ancestors[step]:
                data.update(outputs[a])
        if own:
            data.update(outputs[step])
        return data

    for i, m in enumerate(log):
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
                given_up = []
                for k in [k for k in round_attempts if k[1]]:
                    del round_attempts[k]
                fatal = {k for k in fatal if not k[1]}
            else:
                forward_open = True
                for k in [k for k in round_attempts if not k[1]]:
                    del round_attempts[k]
                fatal = {k for k in fatal if k[1]}

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
