"""The engine's one transaction: load the saga → ``react`` → append, at its version.

Every way a saga moves (a client's start, a step's outcome, a timer, a resume, an
engine picking up a saga another process requested) is one call to
``Transitions.apply`` with the event to deliver; the caller then executes the
commands the transition recorded. The log is the outbox: commands are appended with
the event that caused them, and only then published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from eventstore import NO_STREAM, ConcurrencyError, ExpectedVersion, NewRecord
from orchestrator.core.commands import StartSaga
from orchestrator.core.events import CompensationTimedOut, SagaStarted, StepTimedOut
from orchestrator.core.messages import Command, Event, SagaMessage
from orchestrator.core.react import react, start
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import OrchestratorError, SagaExistsError, UnknownWorkflowError
from orchestrator.runtime.clock import Clock
from orchestrator.runtime.counts import Counts
from orchestrator.runtime.keyed_lock import KeyedLock
from orchestrator.runtime.saga_log import Loaded, SagaLog
from orchestrator.telemetry.logs import log_context

if TYPE_CHECKING:
    from orchestrator.telemetry.tracing import SagaTracing

__all__ = ["EventFor", "Transition", "Transitions", "constant", "starting"]

logger = logging.getLogger("orchestrator")

_MAX_TRIES = 16
"""Reloads after a ``ConcurrencyError`` before giving up: only a storm of writers to
one saga gets there."""


class EventFor(Protocol):
    def __call__(
        self, state: SagaState | None, request: StartSaga | None, now: float
    ) -> Event | None:
        """The event to deliver to the saga as the log holds it (``state`` is ``None``
        before ``SagaStarted``; ``request`` is the client's ``StartSaga``, if any), at the
        engine's clock reading ``now``; ``None``: nothing to deliver."""


@dataclass(frozen=True, slots=True)
class Transition:
    """What one ``apply`` recorded: the saga's new state and the commands to execute."""

    workflow: Workflow
    event: Event
    """The event delivered."""
    state: SagaState
    commands: tuple[Command, ...]
    records: list[NewRecord]
    """``commands`` as appended, in order: their data is published as is."""
    started: bool
    """Whether this transition started the saga."""


class Transitions:
    """Applies events to sagas, one saga at a time per engine, any number of engines."""

    def __init__(
        self,
        log: SagaLog,
        workflows: Mapping[str, Workflow],
        clock: Clock,
        counts: Counts,
        tracing: SagaTracing | None = None,
    ) -> None:
        self._log = log
        self._workflows = workflows
        self._clock = clock
        self._counts = counts
        self._tracing = tracing
        self.lock = KeyedLock()

    def workflow(self, name: str) -> Workflow:
        wf = self._workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflowError(f"unknown workflow {name!r} (loaded: {known})")
        return wf

    async def apply(
        self,
        saga_id: str,
        event_for: EventFor,
        causation_id: str | None = None,
        *,
        new: StartSaga | None = None,
    ) -> Transition | None:
        """Deliver ``event_for``'s event to the saga and record it with the commands it
        causes; ``None`` when there was nothing to record (a duplicate or late event).

        ``new``: the client's request for a saga not in the store yet, recorded first in
        the same append; ``SagaExistsError`` if the stream exists. Otherwise "nothing to
        do" is decided only on a fresh read of the log: another engine may have moved
        the saga on since this one cached it. A ``ConcurrencyError`` (another engine
        wrote) reloads and decides again.
        """
        workflow = new.workflow if new is not None else None
        async with self.lock(saga_id):
            with log_context(saga_id=saga_id, workflow=workflow):
                return await self._apply(saga_id, event_for, causation_id, new)

    async def _apply(
        self,
        saga_id: str,
        event_for: EventFor,
        causation_id: str | None,
        new: StartSaga | None,
    ) -> Transition | None:
        fresh = False
        for _ in range(_MAX_TRIES):
            loaded = (
                Loaded(None, 0, new)
                if new is not None
                else await self._log.load(saga_id, fresh=fresh)
            )
            state, request = loaded.state, loaded.request
            event = event_for(state, request, self._clock.now())
            after: SagaState | None = state
            commands: tuple[Command, ...] = ()
            if event is not None:
                wf = self.workflow(state.workflow if state else _workflow_of(event))
                after, commands = react(wf, state, event)
            if event is None or after is state or after is None:
                if not fresh and new is None:
                    fresh = True
                    continue
                if state is None and event is None:
                    logger.debug("nothing to deliver to saga %s", saga_id)
                elif event is not None:
                    self._counts["duplicates"] += 1  # a redelivery, absorbed
                return None
            started = isinstance(event, SagaStarted)
            written: list[SagaMessage] = [event, *commands]
            if new is not None:
                written.insert(0, new)
            trace = loaded.trace
            if started and self._tracing is not None:
                trace = self._tracing.start_saga(
                    saga_id, wf.name, trace, join_current=new is not None
                )
            try:
                # Outcomes and timers come decoded from the wire or the log, commands
                # from the core: plain JSON already. A start carries client input.
                expected: ExpectedVersion = NO_STREAM if new else loaded.version
                records = await self._log.append(
                    saga_id, after, written, expected, causation_id, request,
                    trusted=not started, trace=trace,
                )  # fmt: skip
            except BaseException as exc:
                if started and self._tracing is not None:
                    self._tracing.abandon(saga_id)  # not recorded: the span never was
                if not isinstance(exc, ConcurrencyError):
                    raise
                if new is not None:
                    raise SagaExistsError(f"saga {saga_id!r} already exists") from None
                self._counts["conflicts"] += 1
                fresh = True
                continue
            if started:
                self._counts.add("started", wf.name)
            elif isinstance(event, StepTimedOut | CompensationTimedOut):
                compensation = isinstance(event, CompensationTimedOut)
                self._counts.add_step("timeouts", wf.name, event.step, compensation)
            cut = len(written) - len(commands)
            return Transition(wf, event, after, commands, records[cut:], started)
        raise OrchestratorError(f"saga {saga_id!r}: too many concurrent writers")


def _workflow_of(event: Event) -> str:
    if isinstance(event, SagaStarted):
        return event.workflow
    raise OrchestratorError(f"{type(event).__name__} for a saga that has not started")


def constant(event: Callable[[float], Event]) -> EventFor:
    """An ``EventFor`` that delivers ``event(now)`` to a saga that has started."""

    def event_for(state: SagaState | None, request: StartSaga | None, now: float) -> Event | None:
        return None if state is None else event(now)

    return event_for


def starting(workflows: Mapping[str, Workflow]) -> EventFor:
    """An ``EventFor`` that starts a saga a client requested, if no engine has yet."""

    def event_for(state: SagaState | None, request: StartSaga | None, now: float) -> Event | None:
        if state is not None or request is None:
            return None
        wf = workflows.get(request.workflow)
        if wf is None:
            logger.error("saga %s asks for unknown workflow %r", request.saga_id, request.workflow)
            return None
        return start(wf, request.saga_id, request.input, now)

    return event_for
