"""Every timer the engine keeps: retry backoffs, the re-send backstop, and
republishing commands a failed publish left behind.

A timer is only a reminder to deliver an event (``TimerFired``) at a time the core
chose, or to look again; the core ignores one that comes too late to matter, so a
timer is never cancelled, and the engine that owns a saga re-arms the ones ``resume``
gives back (a ``ScheduleRetry`` carries its due time). A step's own timeout is not
here: the worker running the attempt owns it (start-to-close; see ``worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from eventstore import StoreUnavailableError
from orchestrator.core.commands import CompensateStep, ScheduleRetry, StepCommand
from orchestrator.core.events import TimerFired
from orchestrator.core.messages import Command, Event
from orchestrator.core.state import Phase, SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.runtime.clock import Clock
from orchestrator.runtime.counts import Counts
from orchestrator.runtime.saga_log import SagaLog
from orchestrator.runtime.timers import TimerQueue
from orchestrator.runtime.transition import EventFor, constant

__all__ = ["Scheduler"]

logger = logging.getLogger("orchestrator")

Deliver = Callable[[str, EventFor, str | None], Awaitable[object]]
"""Apply an event to a saga and execute what it causes (the engine's ``advance``)."""
Resend = Callable[[Workflow, SagaState, Sequence[Command]], Awaitable[None]]
"""Publish commands again, unchanged (same ids)."""


class Scheduler:
    """Arms the timers a saga's commands call for, on one ``TimerQueue``."""

    def __init__(
        self,
        clock: Clock,
        log: SagaLog,
        deliver: Deliver,
        resend: Resend,
        reissue: Callable[[str], Awaitable[None]],
        counts: Counts,
        *,
        reissue_after: float | None,
        republish_delay: float,
    ) -> None:
        self.queue = TimerQueue(clock, retry_on=(StoreUnavailableError,))
        self._clock = clock
        self._log = log
        self._deliver = deliver
        self._resend = resend
        self._reissue = reissue
        self._counts = counts
        self._reissue_after = reissue_after
        self._republish_delay = republish_delay

    def arm(self, wf: Workflow, command: Command) -> None:
        """The timers ``command`` calls for, if any."""
        if isinstance(command, StepCommand):
            self._arm_backstop(wf, command)
        elif isinstance(command, ScheduleRetry):
            self._arm_retry(command)

    def republish_later(self, saga_id: str) -> None:
        """Send the saga's outstanding commands again after ``republish_delay``."""
        self.queue.call_at(
            self._clock.now() + self._republish_delay, lambda: self._reissue(saga_id)
        )

    def _arm_retry(self, command: ScheduleRetry) -> None:
        def fired(now: float) -> Event:
            return TimerFired(
                command.saga_id, command.step, command.attempt, command.compensation, now
            )

        async def fire() -> None:
            await self._deliver(command.saga_id, constant(fired), command.id)

        self.queue.call_at(command.due_at, fire)

    def _arm_backstop(self, wf: Workflow, command: StepCommand) -> None:
        delay = self._reissue_after
        if delay is None:
            return

        async def check() -> None:
            if answered(self._log.cached(command.saga_id), command):
                return
            state = (await self._log.load(command.saga_id, fresh=True)).state
            if state is None or answered(state, command):
                return
            logger.warning("no outcome for %s after %ss: sending it again", command.id, delay)
            self._counts.add("reissued", wf.name)
            await self._resend(wf, state, [command])

        self.queue.call_at(self._clock.now() + delay, check)


def answered(state: SagaState | None, command: StepCommand) -> bool:
    """Whether ``state`` shows an outcome for the command's attempt. A cached state can
    lag behind the log, never run ahead of it: True is certain, False means "look"."""
    if state is None:
        return False
    if state.is_terminal:
        return True
    table = state.compensations if isinstance(command, CompensateStep) else state.steps
    st = table.get(command.step)
    return st is not None and (st.attempt > command.attempt or st.phase is not Phase.RUNNING)
