"""Commands: what the saga decides. The shell records them, then executes them.

Every command has a deterministic ``id`` that doubles as its idempotency key:

====================  ==========================================
``ExecuteStep``       ``saga_id:step:attempt``
``CompensateStep``    ``saga_id:step:compensate:attempt``
``ScheduleRetry``     ``saga_id:step:retry:attempt`` (forward) or
                      ``saga_id:step:compensate:retry:attempt``
``AbortSaga``         ``saga_id:step:attempt:abort``
``GiveUpCompensation````saga_id:step:compensate:attempt:give_up``
``FinishSaga``        ``saga_id:finish:resumes`` (``resumes``: how often it was resumed)
====================  ==========================================

The first three are effects (run a function, start a timer). The last three are
decisions with no effect outside the log: they are recorded so that folding the log
gives the same status as the live saga (the shell may publish ``FinishSaga`` as a
notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.messages import Command, Request, stored_as
from orchestrator.core.state import SagaStatus

__all__ = [
    "AbortSaga",
    "Command",
    "CompensateStep",
    "ExecuteStep",
    "FinishSaga",
    "GiveUpCompensation",
    "ScheduleRetry",
    "StartSaga",
    "StepCommand",
]


@stored_as("saga.start")
@dataclass(frozen=True, slots=True)
class StartSaga(Request):
    """A client asks for a saga (appended by ``orchestrator start``).

    Not part of a saga's fold: the engine answers it with ``start(...)`` → ``SagaStarted``.
    """

    saga_id: str
    workflow: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StepCommand(Command):
    """Run attempt ``attempt`` of ``step`` (or of its compensation) with ``data``.

    ``timeout`` bounds the attempt from the moment a worker starts it (start-to-close);
    the worker enforces it and reports ``StepTimedOut`` / ``CompensationTimedOut``.
    ``deadline`` (``now + timeout`` when the command was decided) is recorded for the
    audit: it is when the attempt would end if a worker started it at once.
    """

    id: str
    saga_id: str
    workflow: str
    step: str
    attempt: int
    data: Mapping[str, Any]
    timeout: float | None
    deadline: float | None


@stored_as("saga.execute_step")
@dataclass(frozen=True, slots=True)
class ExecuteStep(StepCommand):
    """Run attempt ``attempt`` of ``step`` with ``data``: the saga input merged with the
    outputs of the step's ancestors in topological order."""


@stored_as("saga.compensate_step")
@dataclass(frozen=True, slots=True)
class CompensateStep(StepCommand):
    """Run attempt ``attempt`` of ``step``'s compensation with ``data`` (the step's
    own ``data`` plus its output)."""


@stored_as("saga.schedule_retry")
@dataclass(frozen=True, slots=True)
class ScheduleRetry(Command):
    """Start a timer; at ``due_at`` deliver ``TimerFired(step, attempt, compensation)``.

    ``attempt`` is the attempt that will run when the timer fires.
    """

    id: str
    saga_id: str
    step: str
    attempt: int
    compensation: bool
    due_at: float


@stored_as("saga.abort")
@dataclass(frozen=True, slots=True)
class AbortSaga(Command):
    """Decision: ``step`` failed for good, so no new step starts (rule 1).

    ``compensate`` is false when a pivot has already succeeded (rule 5): the saga then
    only waits for the steps in flight and ends ``failed``.
    """

    id: str
    saga_id: str
    step: str
    attempt: int
    reason: str
    compensate: bool


@stored_as("saga.give_up_compensation")
@dataclass(frozen=True, slots=True)
class GiveUpCompensation(Command):
    """Decision: ``step``'s compensation failed for good (rule 4); the saga will end
    ``failed`` once the compensations in flight are done."""

    id: str
    saga_id: str
    step: str
    attempt: int
    reason: str


@stored_as("saga.finish")
@dataclass(frozen=True, slots=True)
class FinishSaga(Command):
    """Decision: the saga is over with ``status``.

    ``output`` is the merged data of every step when ``completed`` (empty otherwise);
    ``step`` and ``reason`` say why when ``failed`` (``None`` otherwise).
    """

    id: str
    saga_id: str
    status: SagaStatus
    output: Mapping[str, Any]
    step: str | None
    reason: str | None
