"""Executing what a transition recorded: publish step commands, arm their timers.

Commands are published only after they are in the log (the log is the outbox), so a
crash or a failed publish loses nothing: a failed publish is retried from the log by
the scheduler, and after a crash ``resume`` gives every outstanding command back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from brokers import Broker
from eventstore import NewRecord
from orchestrator.core.commands import CompensateStep, FinishSaga, StepCommand
from orchestrator.core.messages import Command
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.runtime.counts import Counts, Observer
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.runtime.wire import Topics, payload

if TYPE_CHECKING:
    from orchestrator.telemetry.tracing import SagaTracing

__all__ = ["Dispatcher"]

logger = logging.getLogger("orchestrator")


class Dispatcher:
    """Publishes a saga's step commands as one batch to its workflow's topic."""

    def __init__(
        self,
        broker: Broker,
        topics: Topics,
        scheduler: Scheduler,
        counts: Counts,
        observer: Observer | None = None,
        tracing: SagaTracing | None = None,
        trace_of: Callable[[str], str | None] | None = None,
    ) -> None:
        """``tracing``: the saga's span goes with its commands (``traceparent``);
        ``trace_of`` gives the one recorded for a saga this engine took up."""
        self._broker = broker
        self._topics = topics
        self._scheduler = scheduler
        self._counts = counts
        self._observer = observer
        self._tracing = tracing
        self._trace_of = trace_of or (lambda saga_id: None)

    async def execute(
        self,
        wf: Workflow,
        state: SagaState,
        commands: Sequence[Command],
        records: Sequence[NewRecord] | None = None,
        *,
        publish: bool = True,
    ) -> None:
        """``records``, when given, are ``commands`` as just appended: their data is
        sent as is, not encoded again. ``publish=False`` only arms the timers (a saga
        adopted on a sweep: its commands are out, their backstops will tell). Attempts
        are counted once, when first recorded (``records`` given), not when re-sent."""
        outgoing: list[dict[str, Any]] = []
        counts = self._counts
        for index, command in enumerate(commands):
            if isinstance(command, StepCommand):
                if records is not None:
                    compensation = isinstance(command, CompensateStep)
                    counts.add_step("attempts", wf.name, command.step, compensation)
                    if command.attempt > 1:
                        counts.add_step("retries", wf.name, command.step, compensation)
                if publish:
                    data = None if records is None else dict(records[index].data)
                    outgoing.append(payload(command, data))
            elif isinstance(command, FinishSaga):
                counts.add(command.status.value, wf.name)
            self._scheduler.arm(wf, command)
        if not outgoing:
            return
        saga_id = state.saga_id
        topic = self._topics.steps(wf.name)
        observer = self._observer
        began = time.perf_counter() if observer is not None else 0.0
        headers = {"correlation_id": saga_id, "saga_id": saga_id}
        if self._tracing is not None:
            headers.update(self._tracing.headers(saga_id, wf.name, self._trace_of(saga_id)))
        try:
            await self._broker.publish_batch(topic, outgoing, headers=headers)
            if observer is not None:
                observer.publish(topic, time.perf_counter() - began)
        except Exception as exc:
            logger.warning(
                "could not publish %d commands of saga %s (%s); sending them again later",
                len(outgoing),
                saga_id,
                exc,
            )
            self._scheduler.republish_later(saga_id)
