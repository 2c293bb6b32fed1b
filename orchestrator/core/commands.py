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
]


@dataclass(frozen=True, slots=True)
class StartSaga:
    """A client asks for a saga (appended by ``orchestrator start``).

    Not part of a saga's fold: the engine answers it with ``start(...)`` → ``SagaStarted``.
    """

    saga_id: str
    workflow: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExecuteStep:
    """Run attempt ``attempt`` of ``step`` with ``data``.

    ``data`` is the saga input merged with the outputs of the step's ancestors in
    topological order. ``deadline`` (``now + timeout``) is absolute, so the shell can
    rebuild the timeout timer from the log; when it passes with no outcome the shell
    delivers ``StepTimedOut(step, attempt)``.
    """

    id: str
    saga_id: str
    workflow: str
    step: str
    attempt: int
    data: Mapping[str, Any]
    timeout: float | None
    deadline: float | None


@dataclass(frozen=True, slots=True)
class CompensateStep:
    """Run attempt ``attempt`` of ``step``'s compensation with ``data`` (the step's
    own ``data`` plus its output); ``CompensationTimedOut`` after ``deadline``."""

    id: str
    saga_id: str
    workflow: str
    step: str
    attempt: int
    data: Mapping[str, Any]
    timeout: float | None
    deadline: float | None


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    """Start a timer; at ``due_at`` deliver ``TimerFired(step, attempt, compensation)``.

    ``attempt`` is the attempt that will run when the timer fires.
    """

    id: str
    saga_id: str
    step: str
    attempt: int
    compensation: bool
    due_at: float


@dataclass(frozen=True, slots=True)
class AbortSaga:
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


@dataclass(frozen=True, slots=True)
class GiveUpCompensation:
    """Decision: ``step``'s compensation failed for good (rule 4); the saga will end
    ``failed`` once the compensations in flight are done."""

    id: str
    saga_id: str
    step: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class FinishSaga:
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


Command = ExecuteStep | CompensateStep | ScheduleRetry | AbortSaga | GiveUpCompensation | FinishSaga
"""Every command ``decide`` returns."""
