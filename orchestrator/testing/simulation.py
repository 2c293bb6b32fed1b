"""Simulated runs of a saga under a hostile world (``check_invariants`` in
``invariants`` then judges the log).

``simulate`` plays the shell: it delivers outcomes of outstanding commands in any order
(success, retryable or fatal failure, a start-to-close timeout), fires retry timers on
time or late, redelivers old replies, sends late replies for attempts that already have
an outcome, re-sends a command no outcome came for (two workers answer; the first
outcome counts), crashes and is taken up by another engine (the state rebuilt from the
log, ``resume`` re-issues every outstanding command and timer, same ids), and resumes
failed sagas. Every choice comes from a ``Chooser``: hypothesis's ``data`` (failures
shrink to a short story) or a seeded ``random.Random`` (thousands of sagas a second).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st

from orchestrator.core import commands as cm
from orchestrator.core import events as ev
from orchestrator.core.decide import needed
from orchestrator.core.evolve import fold
from orchestrator.core.messages import Command, Event, SagaMessage
from orchestrator.core.react import is_terminal, react, resume, start
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.core.workflow import Workflow

__all__ = ["Chooser", "Trace", "simulate"]

_OUTCOMES = ["ok", "ok", "fail", "timeout", "fatal"]
_LATENESS = [0.0, 0.0, 0.0, 3.0, 120.0]
"""Seconds a timer may fire after it was due (a busy or restarted engine)."""

T = TypeVar("T")


class Chooser:
    """Where the simulator's choices come from: hypothesis's ``data`` (shrinkable), or a
    seeded ``random.Random`` (fast, reproducible from the seed)."""

    def __init__(self, source: st.DataObject | random.Random) -> None:
        self._data = source if not isinstance(source, random.Random) else None
        self._rng = source if isinstance(source, random.Random) else None

    def choice(self, options: Sequence[T], label: str) -> T:
        if self._rng is not None:
            return options[self._rng.randrange(len(options))]
        assert self._data is not None
        return self._data.draw(st.sampled_from(options), label=label)


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
    reissues: int = 0
    late_timers: int = 0


def simulate(
    workflow: Workflow,
    data: st.DataObject | random.Random,
    *,
    saga_id: str = "saga-1",
    input: dict[str, Any] | None = None,
    chaos_actions: int = 150,
    max_resumes: int = 2,
) -> Trace:
    """Run one saga of ``workflow`` to a terminal state with choices drawn from ``data``
    (``hypothesis.strategies.data()``, or a seeded ``random.Random``); assert the
    per-action properties on the way.

    For ``chaos_actions`` actions anything may happen; after that outcomes succeed and
    timers fire, so every run terminates. Returns the ``Trace`` for ``check_invariants``.
    """
    sim = _Sim(workflow, data, saga_id, dict(input or {"seed": 1}))
    sim.run(chaos_actions, max_resumes)
    return sim.trace


class _Sim:
    def __init__(
        self,
        wf: Workflow,
        data: st.DataObject | random.Random,
        saga_id: str,
        input: dict[str, Any],
    ) -> None:
        self.wf = wf
        self.choose = Chooser(data)
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
        choice = self.choose.choice
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
                    and choice((True, False), "resume")
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
                if work:
                    options.append("reissue")
                if self.delivered:
                    options.append("duplicate")
                if self.answered:
                    options.append("late")
            assert work or timers, "saga is stuck: nothing outstanding and not terminal"
            action = choice(options, "action")
            if action == "reply":
                key = choice(work, "command")
                outcome = "ok" if calm else choice(_OUTCOMES, "outcome")
                self.reply(key, outcome)
            elif action == "reissue":
                # No outcome came in time: the engine sends the command again (same id);
                # the first worker and the second both answer, the first answer counts.
                key = choice(work, "command")
                cmd = self.outstanding[key]
                assert isinstance(cmd, cm.ExecuteStep | cm.CompensateStep)
                self.trace.reissues += 1
                self.reply(key, choice(_OUTCOMES, "outcome"))
                self.ignored(self.outcome_for(cmd, choice(_OUTCOMES, "second outcome")))
            elif action == "fire":
                key = choice(timers, "timer")
                timer = self.outstanding.pop(key)
                assert isinstance(timer, cm.ScheduleRetry)
                lateness = 0.0 if calm else choice(_LATENESS, "lateness")
                self.trace.late_timers += lateness > 0
                self.now = max(self.now, timer.due_at) + lateness
                event = ev.TimerFired(
                    self.saga_id, timer.step, timer.attempt, timer.compensation, self.now
                )
                before, after, _ = self.feed(event)
                assert after is not before, f"{event} was ignored"
            elif action == "duplicate":
                self.trace.duplicates += 1
                self.ignored(choice(self.delivered, "duplicate"))
            elif action == "late":
                cmd = choice(self.answered, "late")
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
