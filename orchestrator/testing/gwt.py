"""Given / when / then for short workflow tests, with no I/O.

::

    from orchestrator.testing import executes, given, started, succeeded

    def test_validate_then_scopes():
        (given(esg, started(esg, {"company": "ACME"}))
            .when(succeeded("validate", {"valid": True}))
            .then(executes("scope1"), executes("scope2"), executes("scope3")))

``given`` decides each event in turn, exactly like the engine, so the commands
the history implies are in the state; ``then`` compares the commands of the ``when``
event, in any order, with full commands or with matchers (``executes``, ``compensates``,
``retries``, ``aborts``, ``gives_up``, ``finishes``) that check only the fields given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from orchestrator.core import commands as cm
from orchestrator.core import events as ev
from orchestrator.core.messages import Command, Event
from orchestrator.core.react import react, start
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.core.workflow import Workflow

__all__ = [
    "SAGA_ID",
    "Expect",
    "Given",
    "Then",
    "aborts",
    "compensated",
    "compensates",
    "compensation_failed",
    "compensation_timed_out",
    "executes",
    "failed",
    "finishes",
    "given",
    "gives_up",
    "resume_requested",
    "retries",
    "started",
    "succeeded",
    "timed_out",
    "timer_fired",
]

SAGA_ID = "saga-1"
"""The saga id the event helpers use unless told otherwise."""


# --- events -------------------------------------------------------------------------


def started(
    workflow: Workflow,
    input: Mapping[str, Any] | None = None,
    *,
    saga_id: str = SAGA_ID,
    now: float = 0.0,
) -> ev.SagaStarted:
    return start(workflow, saga_id, input or {}, now)


def succeeded(
    step: str,
    output: Mapping[str, Any] | None = None,
    *,
    attempt: int = 1,
    now: float = 0.0,
    saga_id: str = SAGA_ID,
) -> ev.StepSucceeded:
    return ev.StepSucceeded(saga_id, step, attempt, dict(output or {}), now)


def failed(
    step: str,
    error: str = "boom",
    *,
    attempt: int = 1,
    retryable: bool = True,
    now: float = 0.0,
    saga_id: str = SAGA_ID,
) -> ev.StepFailed:
    return ev.StepFailed(saga_id, step, attempt, error, retryable, now)


def timed_out(
    step: str, *, attempt: int = 1, now: float = 0.0, saga_id: str = SAGA_ID
) -> ev.StepTimedOut:
    return ev.StepTimedOut(saga_id, step, attempt, now)


def compensated(
    step: str, *, attempt: int = 1, now: float = 0.0, saga_id: str = SAGA_ID
) -> ev.CompensationSucceeded:
    return ev.CompensationSucceeded(saga_id, step, attempt, now)


def compensation_failed(
    step: str,
    error: str = "boom",
    *,
    attempt: int = 1,
    retryable: bool = True,
    now: float = 0.0,
    saga_id: str = SAGA_ID,
) -> ev.CompensationFailed:
    return ev.CompensationFailed(saga_id, step, attempt, error, retryable, now)


def compensation_timed_out(
    step: str, *, attempt: int = 1, now: float = 0.0, saga_id: str = SAGA_ID
) -> ev.CompensationTimedOut:
    return ev.CompensationTimedOut(saga_id, step, attempt, now)


def timer_fired(
    step: str,
    attempt: int,
    *,
    compensation: bool = False,
    now: float = 0.0,
    saga_id: str = SAGA_ID,
) -> ev.TimerFired:
    return ev.TimerFired(saga_id, step, attempt, compensation, now)


def resume_requested(*, now: float = 0.0, saga_id: str = SAGA_ID) -> ev.ResumeRequested:
    return ev.ResumeRequested(saga_id, now)


# --- matchers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """Matches a command of type ``type`` whose named fields equal ``fields``."""

    type: type
    fields: Mapping[str, Any]

    def matches(self, command: Command) -> bool:
        if not isinstance(command, self.type):
            return False
        return all(getattr(command, k) == v for k, v in self.fields.items())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.type.__name__}({args}, ...)"


def _expect(cls: type, **wanted: Any) -> Expect:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    return Expect(cls, wanted)


def executes(step: str, attempt: int = 1, **fields: Any) -> Expect:
    return _expect(cm.ExecuteStep, step=step, attempt=attempt, **fields)


def compensates(step: str, attempt: int = 1, **fields: Any) -> Expect:
    return _expect(cm.CompensateStep, step=step, attempt=attempt, **fields)


def retries(step: str, attempt: int, *, compensation: bool = False, **fields: Any) -> Expect:
    return _expect(
        cm.ScheduleRetry, step=step, attempt=attempt, compensation=compensation, **fields
    )


def aborts(step: str, **fields: Any) -> Expect:
    return _expect(cm.AbortSaga, step=step, **fields)


def gives_up(step: str, **fields: Any) -> Expect:
    return _expect(cm.GiveUpCompensation, step=step, **fields)


def finishes(status: SagaStatus | str, **fields: Any) -> Expect:
    return _expect(cm.FinishSaga, status=SagaStatus(status), **fields)


# --- given / when / then ------------------------------------------------------------


def given(workflow: Workflow, *events: Event) -> Given:
    """A saga of ``workflow`` that has seen ``events`` (decided one by one)."""
    return Given(workflow, events)


class Given:
    def __init__(self, workflow: Workflow, events: tuple[Event, ...]) -> None:
        self.workflow = workflow
        self.state: SagaState | None = None
        self.history: list[Command] = []
        for event in events:
            self.state, commands = react(workflow, self.state, event)
            self.history.extend(commands)

    def when(self, event: Event) -> Then:
        state, commands = react(self.workflow, self.state, event)
        return Then(self.workflow, self.state, state, commands)


class Then:
    """The outcome of ``when``: ``state`` after it and the ``commands`` it caused."""

    def __init__(
        self,
        workflow: Workflow,
        before: SagaState | None,
        state: SagaState,
        commands: tuple[Command, ...],
    ) -> None:
        self.workflow = workflow
        self.before = before
        self.state = state
        self.commands = commands

    def then(self, *expected: Command | Expect) -> Then:
        """Exactly these commands, in any order (a full command compares by equality,
        an ``Expect`` by the fields it names)."""
        unmatched = list(self.commands)
        missing: list[Command | Expect] = []
        # Full commands first, so a loose matcher cannot take a command an exact one needs.
        for want in sorted(expected, key=lambda w: isinstance(w, Expect)):
            for i, got in enumerate(unmatched):
                if want.matches(got) if isinstance(want, Expect) else want == got:
                    del unmatched[i]
                    break
            else:
                missing.append(want)
        if missing or unmatched:
            raise AssertionError(
                "commands differ\n  missing:    "
                + _lines(missing)
                + "\n  unexpected: "
                + _lines(unmatched)
                + "\n  all:        "
                + _lines(list(self.commands))
            )
        return self

    def then_nothing(self) -> Then:
        """No command, and no change of state (a duplicate or late event)."""
        self.then()
        if self.state is not self.before:
            raise AssertionError("expected no change of state")
        return self

    def then_status(self, status: SagaStatus | str) -> Then:
        if self.state.status is not SagaStatus(status):
            raise AssertionError(f"status is {self.state.status.value}, expected {status}")
        return self

    def then_state(self, check: Callable[[SagaState], object]) -> Then:
        """``check(state)`` must be truthy (or assert by itself)."""
        if not check(self.state):
            raise AssertionError(f"state check {getattr(check, '__name__', check)} failed")
        return self


def _lines(items: list[Any]) -> str:
    return "\n              ".join(repr(i) for i in items) if items else "-"
