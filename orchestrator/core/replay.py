"""Deterministic replay for audit: does a recorded log follow from its events?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.core.messages import Command, Event, Request, SagaMessage
from orchestrator.core.react import react
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow

__all__ = ["Mismatch", "Replay", "replay"]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """After the event at ``index`` the log recorded ``recorded``, but the workflow
    decides ``expected``."""

    index: int
    event: SagaMessage
    expected: tuple[Command, ...]
    recorded: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class Replay:
    """The state rebuilt by deciding every event again, and where the log differs."""

    state: SagaState | None
    mismatches: tuple[Mismatch, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches


def replay(workflow: Workflow, messages: Iterable[SagaMessage]) -> Replay:
    """Re-decide every event of a saga's log with ``workflow`` and compare each event's
    commands with the commands recorded right after it (``StartSaga`` is skipped).

    A changed definition, or a log that was not written by this core, shows up as
    mismatches; the returned state is the one the *workflow* implies.
    """
    log = [m for m in messages if not isinstance(m, Request)]
    state: SagaState | None = None
    mismatches: list[Mismatch] = []
    i = 0
    while i < len(log):
        event = log[i]
        j = i + 1
        while j < len(log) and not isinstance(log[j], Event):
            j += 1
        recorded = tuple(m for m in log[i + 1 : j] if isinstance(m, Command))
        if not isinstance(event, Event):
            mismatches.append(Mismatch(i, event, (), recorded))  # commands before any event
            i = j
            continue
        state, expected = react(workflow, state, event)
        if expected != recorded:
            mismatches.append(Mismatch(i, event, expected, recorded))
        i = j
    return Replay(state, tuple(mismatches))
