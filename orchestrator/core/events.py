"""Events: what the saga learns. Each carries its ``saga_id`` and the shell's ``now``.

``now`` is the engine's clock reading (seconds, a float) when it received the event; the
core never reads a clock itself, so the same events always give the same decisions.
An outcome names the ``attempt`` it answers; an outcome for an attempt that is not the
one in flight (a duplicate, a late reply after a timeout) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.messages import Event, stored_as

__all__ = [
    "CompensationFailed",
    "CompensationSucceeded",
    "CompensationTimedOut",
    "Event",
    "ResumeRequested",
    "SagaStarted",
    "StepFailed",
    "StepSucceeded",
    "StepTimedOut",
    "TimerFired",
]


@stored_as("saga.started")
@dataclass(frozen=True, slots=True)
class SagaStarted(Event):
    """The saga exists: its workflow, the definition it was started with, its input."""

    saga_id: str
    workflow: str
    input: Mapping[str, Any]
    definition_hash: str
    now: float


@stored_as("saga.step_succeeded")
@dataclass(frozen=True, slots=True)
class StepSucceeded(Event):
    """Attempt ``attempt`` of ``step`` returned ``output`` (a JSON object)."""

    saga_id: str
    step: str
    attempt: int
    output: Mapping[str, Any]
    now: float


@stored_as("saga.step_failed")
@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    """Attempt ``attempt`` of ``step`` failed; ``retryable=False`` fails it for good."""

    saga_id: str
    step: str
    attempt: int
    error: str
    retryable: bool
    now: float


@stored_as("saga.step_timed_out")
@dataclass(frozen=True, slots=True)
class StepTimedOut(Event):
    """Attempt ``attempt`` of ``step`` passed its deadline: a retryable failure."""

    saga_id: str
    step: str
    attempt: int
    now: float


@stored_as("saga.compensation_succeeded")
@dataclass(frozen=True, slots=True)
class CompensationSucceeded(Event):
    """Attempt ``attempt`` of ``step``'s compensation finished."""

    saga_id: str
    step: str
    attempt: int
    now: float


@stored_as("saga.compensation_failed")
@dataclass(frozen=True, slots=True)
class CompensationFailed(Event):
    """Attempt ``attempt`` of ``step``'s compensation failed."""

    saga_id: str
    step: str
    attempt: int
    error: str
    retryable: bool
    now: float


@stored_as("saga.compensation_timed_out")
@dataclass(frozen=True, slots=True)
class CompensationTimedOut(Event):
    """Attempt ``attempt`` of ``step``'s compensation passed its deadline."""

    saga_id: str
    step: str
    attempt: int
    now: float


@stored_as("saga.timer_fired")
@dataclass(frozen=True, slots=True)
class TimerFired(Event):
    """The ``ScheduleRetry`` timer for ``attempt`` of ``step`` (or of its compensation,
    when ``compensation`` is true) is due."""

    saga_id: str
    step: str
    attempt: int
    compensation: bool
    now: float


@stored_as("saga.resume_requested")
@dataclass(frozen=True, slots=True)
class ResumeRequested(Event):
    """A person asks a ``failed`` saga to try again (``orchestrator resume SAGA_ID``)."""

    saga_id: str
    now: float
