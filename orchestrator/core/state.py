"""The saga's state: what folding its log gives. Plain frozen data, no behaviour.

Forward steps and compensations are tracked alike, by a ``StepState`` per step name that
has been issued at least once (a step absent from ``steps`` has not started).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.core.commands import CompensateStep, ExecuteStep, ScheduleRetry

__all__ = ["Failure", "Phase", "SagaState", "SagaStatus", "StepState"]


class SagaStatus(StrEnum):
    """Where the saga is. The last three are terminal."""

    RUNNING = "running"
    """Going forward (or, after a failure past a pivot, waiting for steps in flight)."""
    COMPENSATING = "compensating"
    """A step failed for good: no new step starts; succeeded steps are being undone."""
    COMPLETED = "completed"
    """Every step succeeded."""
    COMPENSATED = "compensated"
    """Every succeeded step with a compensation has been compensated."""
    FAILED = "failed"
    """Needs a person: a compensation failed for good, or a step failed for good after a
    pivot had succeeded. ``SagaState.failure`` / ``compensation_failure`` say why."""


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED})


class Phase(StrEnum):
    """Where one step (or one compensation) is."""

    RUNNING = "running"
    """An execute/compensate command for ``attempt`` is out, with no outcome yet."""
    ATTEMPT_FAILED = "attempt_failed"
    """``attempt`` failed or timed out; retry or give up is still to be decided (after
    ``decide`` this only remains for forward steps once the saga has aborted)."""
    WAITING = "waiting"
    """A ``ScheduleRetry`` for ``attempt + 1`` is out."""
    READY = "ready"
    """The retry timer fired (or a person resumed): ``attempt + 1`` is to be issued."""
    SUCCEEDED = "succeeded"
    """``attempt`` succeeded."""
    GAVE_UP = "gave_up"
    """Failed for good: retries exhausted, or a non-retryable error."""


@dataclass(frozen=True, slots=True)
class StepState:
    """One step's (or one compensation's) progress."""

    phase: Phase
    attempt: int
    """The latest attempt issued (1-based)."""
    round_start: int = 1
    """First attempt of the current retry round; a resume starts a new round, so the
    retry policy counts ``attempt - round_start + 1`` attempts."""
    command: ExecuteStep | CompensateStep | ScheduleRetry | None = None
    """The outstanding command (``RUNNING``: the execute/compensate command;
    ``WAITING``: the timer); what ``resume`` re-issues after a crash."""
    output: Mapping[str, Any] | None = None
    """The step's output once ``SUCCEEDED`` (forward steps only)."""
    error: str | None = None
    """Reason of the latest failed attempt."""
    retryable: bool = True
    """Whether the latest failure may be retried."""
    failed_at: float | None = None
    """``now`` of the latest failed attempt (the retry delay counts from here)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why something failed for good."""

    step: str
    attempt: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class SagaState:
    """Everything the core knows about one saga."""

    saga_id: str
    workflow: str
    definition_hash: str
    input: Mapping[str, Any]
    started_at: float
    status: SagaStatus = SagaStatus.RUNNING
    steps: Mapping[str, StepState] = field(default_factory=dict)
    """Forward steps issued so far, by name."""
    compensations: Mapping[str, StepState] = field(default_factory=dict)
    """Compensations issued so far, by the name of the step they undo."""
    aborted: bool = False
    """No new forward step starts (a step failed for good; rule 1)."""
    failure: Failure | None = None
    """The forward step that failed for good, if any."""
    compensation_failure: Failure | None = None
    """The compensation that failed for good, if any (rule 4)."""
    output: Mapping[str, Any] | None = None
    """The merged data of every step once ``completed``."""
    resumes: int = 0
    """How many ``ResumeRequested`` were accepted."""
    last_event_at: float = 0.0
    """``now`` of the latest event that changed the state (deadlines count from here)."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def failure_summary(self) -> str | None:
        """One line saying what failed for good and why (``None``: nothing did)."""
        failure = self.compensation_failure or self.failure
        if failure is None:
            return None
        what = "compensation of " if self.compensation_failure else ""
        return f"{what}{failure.step} (attempt {failure.attempt}): {failure.reason}"
