"""What travels on the broker: step commands out to workers, outcomes back.

Payloads are the codec's (``{"type": …, "data": …}``), so the wire speaks the log's
language and nothing is ever pickled. Outcomes leave the worker with ``now`` set to 0:
the engine stamps its own clock on them when it receives them, as the core wants.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.core.codec import decode, encode
from orchestrator.core.commands import StepCommand
from orchestrator.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    CompensationTimedOut,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from orchestrator.core.messages import SagaMessage
from orchestrator.errors import CodecError

Outcome = (
    StepSucceeded
    | StepFailed
    | StepTimedOut
    | CompensationSucceeded
    | CompensationFailed
    | CompensationTimedOut
)
"""What a worker reports for one attempt (the worker owns the step's timeout)."""
_OUTCOMES = (
    StepSucceeded,
    StepFailed,
    StepTimedOut,
    CompensationSucceeded,
    CompensationFailed,
    CompensationTimedOut,
)


@dataclass(frozen=True, slots=True)
class Topics:
    """Where the engine and its workers meet on the broker."""

    prefix: str = "saga"
    """Every topic starts with this, so several deployments can share a broker."""

    def steps(self, workflow: str) -> str:
        """Step and compensation commands for one workflow's workers."""
        return f"{self.prefix}.steps.{workflow}"

    @property
    def replies(self) -> str:
        """Outcomes from the workers to the engine."""
        return f"{self.prefix}.replies"


def payload(message: SagaMessage, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The broker payload of ``message``; ``data`` when its encoding is at hand."""
    return {"type": type(message).type_name, "data": encode(message) if data is None else data}


def _decode(payload: dict[str, Any], kind: str) -> SagaMessage:
    type_name, data = payload.get("type"), payload.get("data")
    if not isinstance(type_name, str) or not isinstance(data, dict):
        raise CodecError("payload must be an object with 'type' (string) and 'data' (object)")
    return decode(kind, type_name, data)


def parse_command(payload: dict[str, Any]) -> StepCommand:
    message = _decode(payload, "command")
    if not isinstance(message, StepCommand):
        raise CodecError(f"{type(message).__name__} is not a step command")
    return message


def parse_outcome(payload: dict[str, Any]) -> Outcome:
    """The outcome a worker sent, as sent (``now`` 0: see ``stamped``)."""
    message = _decode(payload, "event")
    if not isinstance(message, _OUTCOMES):
        raise CodecError(f"{type(message).__name__} is not a step outcome")
    return message


def stamped(outcome: Outcome, now: float) -> Outcome:
    """The outcome with the engine's clock reading of when it was received."""
    return dataclasses.replace(outcome, now=now)
