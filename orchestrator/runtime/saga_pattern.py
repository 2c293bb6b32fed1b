"""``SagaPattern``: the seed's saga API, run by the same engine as every workflow.

::

    saga = SagaPattern(broker)
    saga.add_step("validate", validate, compensate_validate)
    saga.add_step("calculate", calculate, compensate_calculate)
    result = await saga.execute({"company": "ACME Corp"})
    result.status        # "completed" | "compensated" | "failed"

The steps form a chain (each depends on the one before). A step with a compensation is
compensatable; one without needs no undo (retriable). The saga's log lives in an event
store: pass ``store=`` to keep the history; by default an in-memory SQLite store holds
it while ``execute`` runs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from brokers import Broker, BrokerError
from eventstore import EventStore
from orchestrator.core.builder import WorkflowBuilder
from orchestrator.core.policy import RetryPolicy
from orchestrator.core.state import Phase, SagaState
from orchestrator.core.workflow import StepFunction, Workflow
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.clock import Clock
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.runtime.wire import Topics

logger = logging.getLogger("orchestrator")

_ONE_ATTEMPT = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class SagaResult:
    """How a saga ended."""

    saga_id: str
    status: str
    """``"completed"``, ``"compensated"`` or ``"failed"``."""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each succeeded step's output, by step name."""
    error: str | None = None
    """Why it did not complete: the failed step (or compensation) and the reason."""
    compensated: tuple[str, ...] = ()
    """The steps whose compensation ran."""

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"


def result_of(state: SagaState) -> SagaResult:
    outputs = {
        name: dict(st.output or {})
        for name, st in state.steps.items()
        if st.phase is Phase.SUCCEEDED
    }
    compensated = tuple(
        name for name, st in state.compensations.items() if st.phase is Phase.SUCCEEDED
    )
    return SagaResult(
        state.saga_id, state.status.value, outputs, state.failure_summary, compensated
    )


class SagaPattern:
    """A chain of steps with compensations, executed durably over ``broker``."""

    def __init__(
        self,
        broker: Broker,
        *,
        name: str | None = None,
        store: EventStore | None = None,
        retry: RetryPolicy = _ONE_ATTEMPT,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.broker = broker
        self.name = name or f"saga_{uuid.uuid4().hex[:8]}"
        self._own_topics = name is None
        """Topics of a generated name are this pattern's alone: deleted when it is done
        (a name given may be shared by other processes' patterns)."""
        self._store = store
        self._own_store = store is None
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._builder = WorkflowBuilder(self.name)
        self._last: str | None = None
        self._workflow: Workflow | None = None
        self._engine: Engine | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    def add_step(
        self,
        name: str,
        action: StepFunction,
        compensation: StepFunction | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> SagaPattern:
        """Add a step after the last one; ``compensation(data)`` undoes it."""
        if self._workflow is not None:
            raise OrchestratorError(f"saga {self.name!r} has run: add steps before execute()")
        self._builder.step(
            name=name,
            after=[self._last] if self._last else [],
            compensation=compensation,
            kind="compensatable" if compensation is not None else "retriable",
            retry=retry or self._retry,
            timeout=timeout or self._timeout,
        )(action)
        self._last = name
        return self

    @property
    def workflow(self) -> Workflow:
        """The validated workflow the steps make (built on first use)."""
        if self._workflow is None:
            self._workflow = self._builder.build()
        return self._workflow

    async def execute(
        self, data: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> SagaResult:
        """Run one saga over the steps with ``data`` as input; wait for its end."""
        async with self._running() as engine:
            saga_id = await engine.start_saga(self.workflow.name, data or {})
            return result_of(await engine.wait(saga_id, timeout))

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Engine]:
        async with self._lock:
            if self._engine is None:
                if self._store is None:
                    self._store = await EventStore.open("sqlite:///:memory:")
                self._engine = Engine(
                    self._store,
                    self.broker,
                    [self.workflow],
                    clock=self._clock,
                    # The pattern drives the sagas it runs itself, on a store of its own:
                    # no ownership to share with other engines, nothing to adopt.
                    options=EngineOptions(
                        topics=Topics(prefix=f"saga.{self.name}"), recover=False, intake=False
                    ),
                )
                await self._engine.start()
            self._users += 1
            engine = self._engine
        try:
            yield engine
        finally:
            async with self._lock:
                self._users -= 1
                if self._users == 0 and self._engine is not None:
                    engine, self._engine = self._engine, None
                    await engine.stop()
                    if self._own_topics and self.broker.connected:
                        await self._delete_topics(engine)
                    # Nothing is in flight once every execute() has returned: an owned
                    # in-memory store is released too (a store passed in stays open).
                    await self.close()

    async def _delete_topics(self, engine: Engine) -> None:
        """Nothing is in flight: this pattern's topics go (a failure is only logged)."""
        topics = engine.options.topics
        for topic in (topics.steps(self.workflow.name), topics.replies):
            try:
                await self.broker.delete_topic(topic)
            except BrokerError as exc:
                logger.warning("saga pattern %s: could not delete %s: %s", self.name, topic, exc)

    async def close(self) -> None:
        """Release the in-memory store (a store passed in stays open)."""
        if self._own_store and self._store is not None:
            await self._store.close()
            self._store = None
