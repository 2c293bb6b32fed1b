"""The engine: the imperative shell around the pure saga core, composed of small parts.

A step's reply (or a timer, a client's start, a resume) becomes one transition —
load the saga → ``react`` → append the event with its commands at the expected
version (``transition``) — and only then are the commands executed: published, their
timers armed (``dispatcher``, ``scheduler``). The log is the outbox: when an engine
dies, the survivor that gains its partitions adopts its sagas (``ownership``):
``resume`` gives back every command with no recorded outcome and the adopter issues it
again, same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from brokers import Broker
from eventstore import EventLog, NewRecord
from orchestrator.core.commands import StartSaga
from orchestrator.core.events import ResumeRequested
from orchestrator.core.messages import Command
from orchestrator.core.react import resume
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import UnknownSagaError
from orchestrator.runtime.clock import Clock, SystemClock
from orchestrator.runtime.counts import Counts
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.options import EngineOptions
from orchestrator.runtime.ownership import Ownership
from orchestrator.runtime.replies import ReplyConsumer
from orchestrator.runtime.saga_log import SagaLog
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.runtime.transition import (
    EventFor,
    Transition,
    Transitions,
    constant,
    starting,
)
from orchestrator.runtime.waiters import Waiters
from orchestrator.runtime.worker import StepWorker

__all__ = ["Engine", "EngineOptions"]

logger = logging.getLogger("orchestrator")


class Engine:
    """Runs sagas of the given workflows on ``store`` and ``broker``.

    ``async with Engine(store, broker, workflows) as engine:`` starts it (the reply
    consumer and its ownership, timers, the sweep, intake, workers) and stops it. The
    store and broker stay the caller's: open and connect them before, close them after.
    """

    def __init__(
        self,
        store: EventLog,
        broker: Broker,
        workflows: Mapping[str, Workflow] | Iterable[Workflow],
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        items = workflows.values() if isinstance(workflows, Mapping) else workflows
        self.workflows: dict[str, Workflow] = {wf.name: wf for wf in items}
        self.clock: Clock = clock or SystemClock()
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.options = opts = options or EngineOptions()
        self.counts = Counts()
        """Engine-wide counts (a dict), and by workflow and step (see ``Counts``)."""
        self._armed: dict[str, int] = {}
        """Saga id → the stream version whose timers this engine has armed."""
        self.in_flight: dict[str, str] = {}
        """Saga id → workflow of the unfinished sagas this engine drives (has armed)."""
        self._log = SagaLog(store, cache_size=opts.cache_size)
        self._start_event = starting(self.workflows)
        self._tracing = opts.tracing
        self._transitions = Transitions(
            self._log, self.workflows, self.clock, self.counts, opts.tracing
        )
        self._scheduler = Scheduler(
            self.clock,
            self._log,
            self._advance,
            self._execute,
            self._reissue,
            self.counts,
            reissue_after=opts.reissue_after,
            republish_delay=opts.republish_delay,
        )
        self._dispatcher = Dispatcher(
            broker,
            opts.topics,
            self._scheduler,
            self.counts,
            opts.observer,
            opts.tracing,
            self._log.trace_of,
        )
        self.ownership = Ownership(
            store,
            self.pick_up,
            self._adopt,
            self._armed.get,
            self.counts,
            enabled=opts.recover,
            forget=self._forget,
        )
        self._waiters = Waiters(self._log, poll_interval=opts.wait_poll_interval)
        self._replies = ReplyConsumer(
            broker,
            self._advance,
            self.ownership.assigned if opts.recover else None,
            topic=opts.topics.replies,
            group=opts.reply_group,
            consumer=opts.consumer or f"engine-{uuid.uuid4().hex[:8]}",
            max_in_flight=opts.max_in_flight,
        )
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        position = await self.store.last_position()
        self._spawn(self._scheduler.queue.run(), "timers")
        self._spawn(self._replies.run(), "replies")
        if self.options.run_workers:
            worker = StepWorker(
                self.broker,
                self.workflows,
                topics=self.options.topics,
                options=self.options.worker,
                observer=self.options.observer,
                tracing=self.options.tracing,
            )
            self._spawn(worker.run(), "workers")
        if self.options.recover:
            self._spawn(self.ownership.sweep_forever(self.options.sweep_interval), "sweep")
        if self.options.intake:
            intake = self.ownership.intake(position, self.options.intake_poll_interval)
            self._spawn(intake, "intake")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.ownership.close()
        await self._scheduler.queue.close()
        if self._tracing is not None:
            self._tracing.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"orchestrator-{name}")
        task.add_done_callback(_log_crash)
        self._tasks.append(task)

    # -- the client's side ------------------------------------------------------------

    async def start_saga(
        self, workflow: str, input: Mapping[str, Any] | None = None, *, saga_id: str | None = None
    ) -> str:
        """Start a saga of ``workflow``; returns its id once it is durably recorded.
        ``InputError`` (nothing written) if ``input`` does not match the workflow's
        input model."""
        wf = self._transitions.workflow(workflow)
        data = wf.validate_input(input or {})
        saga_id = saga_id or self._new_id()
        request = StartSaga(saga_id, wf.name, data)
        await self._advance(saga_id, self._start_event, new=request)
        return saga_id

    async def pick_up(self, saga_id: str) -> None:
        """Start the saga a client requested through the store (``request_saga``), if no
        engine has started it yet. The running engine does this by itself."""
        await self._advance(saga_id, self._start_event)

    async def saga(self, saga_id: str) -> SagaState | None:
        """The saga's current state as this engine knows it (None if not started)."""
        return (await self._log.load(saga_id)).state

    async def wait(self, saga_id: str, timeout: float | None = None) -> SagaState:
        """Wait until the saga is completed, compensated or failed; returns its state."""
        return await self._waiters.wait(saga_id, timeout)

    async def resume_saga(self, saga_id: str) -> SagaState:
        """Ask a ``failed`` saga to retry what failed (``orchestrator resume``)."""
        if (await self._log.load(saga_id)).state is None:
            raise UnknownSagaError(f"no saga {saga_id!r} in the store")
        await self._advance(saga_id, constant(lambda now: ResumeRequested(saga_id, now)))
        after = await self.saga(saga_id)
        assert after is not None
        return after

    @property
    def consumer(self) -> str:
        """This engine's consumer name in the replies group."""
        return self._replies.consumer

    async def health(self) -> dict[str, Any]:
        """``status`` ok (store and broker reachable) or degraded (the engine waits for
        them), each one's own report, the partitions this engine holds, its counts."""
        store = await self.store.health()
        broker = await self.broker.health_check()
        ok = store["status"] == "ok" and broker["status"] == "healthy"
        return {
            "status": "ok" if ok else "degraded",
            "store": dict(store),
            "broker": broker,
            "partitions": sorted(self.ownership.partitions),
            "counts": dict(self.counts),
        }

    # -- events in, commands out ------------------------------------------------------

    async def _advance(
        self,
        saga_id: str,
        event_for: EventFor,
        causation_id: str | None = None,
        *,
        new: StartSaga | None = None,
    ) -> Transition | None:
        """One transition of the saga, then the execution of what it recorded."""
        done = await self._transitions.apply(saga_id, event_for, causation_id, new=new)
        if done is not None:
            version = self._log.cached_version(saga_id)
            if version is not None:
                self._armed[saga_id] = version
            if not done.state.is_terminal:
                self.in_flight[saga_id] = done.workflow.name
            if self._tracing is not None:
                self._traced(done)
            await self._execute(done.workflow, done.state, done.commands, done.records)
        return done

    def _traced(self, done: Transition) -> None:
        """The transition, as an event of the saga's span."""
        assert self._tracing is not None
        event = done.event
        attributes: dict[str, Any] = {}
        for name in ("step", "attempt", "error"):
            value = getattr(event, name, None)
            if value is not None:
                attributes[f"sagaflow.{name}"] = value
        saga_id = done.state.saga_id
        self._tracing.recorded(
            saga_id,
            done.workflow.name,
            self._log.trace_of(saga_id),
            type(event).type_name,
            attributes,
            done.state.status.value,
        )

    async def _execute(
        self,
        wf: Workflow,
        state: SagaState,
        commands: Sequence[Command],
        records: Sequence[NewRecord] | None = None,
    ) -> None:
        await self._dispatcher.execute(wf, state, commands, records)
        if state.is_terminal:
            self._forget(state.saga_id)
            self._waiters.finished(state)

    async def _reissue(self, saga_id: str) -> None:
        """Send every outstanding command of the saga again, as the log holds it."""
        await self._adopt(saga_id, True, mine=True)

    async def _adopt(self, saga_id: str, resend: bool, *, mine: bool = False) -> bool:
        """Arm the saga's timers from the log and (``resend``) send again every command
        it has out with no outcome, same id; unless (not ``mine``) this engine is the one
        driving the saga at that version: checked under the saga's lock, so a transition
        this engine is in the middle of is never taken for another engine's work."""
        async with self._transitions.lock(saga_id):
            loaded = await self._log.load(saga_id, fresh=True)
            state = loaded.state
            if state is None or state.workflow not in self.workflows:
                return False
            if not mine and self._armed.get(saga_id) == loaded.version:
                return False
            self._armed[saga_id] = loaded.version
            if not state.is_terminal:
                self.in_flight[saga_id] = state.workflow
        if resend and not mine:
            self.counts.add("adopted", state.workflow)
        wf = self.workflows[state.workflow]
        await self._dispatcher.execute(wf, state, resume(wf, state), publish=resend)
        return True

    def _forget(self, saga_id: str) -> None:
        """The saga finished (here, or, as a sweep found, on another engine)."""
        self._armed.pop(saga_id, None)
        self.in_flight.pop(saga_id, None)
        if self._tracing is not None:
            self._tracing.handed_off(saga_id)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception())
