"""The engine: the imperative shell around the pure saga core.

Receive an event (a step's reply, a timer, a client's start) → load the saga's state →
``react`` → append the event and the new commands with the expected version → only
then publish the commands. The log is the outbox: after a crash, ``resume`` gives back
every command with no recorded outcome and the engine issues it again, same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from brokers import Broker, Message
from eventstore import NO_STREAM, ConcurrencyError, EventStore, NewRecord
from orchestrator.core.commands import (
    Command,
    CompensateStep,
    ExecuteStep,
    FinishSaga,
    ScheduleRetry,
    StartSaga,
)
from orchestrator.core.events import (
    CompensationTimedOut,
    Event,
    ResumeRequested,
    StepTimedOut,
    TimerFired,
)
from orchestrator.core.react import react, resume, start
from orchestrator.core.state import Phase, SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import (
    CodecError,
    OrchestratorError,
    SagaExistsError,
    UnknownSagaError,
    UnknownWorkflowError,
)
from orchestrator.runtime.clock import Clock, SystemClock
from orchestrator.runtime.saga_log import STREAM_PREFIX, SagaLog, saga_of
from orchestrator.runtime.timers import TimerQueue
from orchestrator.runtime.wire import Topics, command_payload, parse_outcome, stamped
from orchestrator.runtime.worker import StepWorker, WorkerOptions

logger = logging.getLogger("orchestrator")

_START_TYPE = "saga.start"
_FINISH_TYPE = "saga.finish"


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How an engine runs."""

    topics: Topics = field(default_factory=Topics)
    """Topic names on the broker."""
    reply_group: str = "saga-engine"
    """Consumer group of the engines reading step outcomes."""
    consumer: str | None = None
    """This engine's consumer name; unique by default."""
    run_workers: bool = True
    """Run step workers for the loaded workflows in this process too."""
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    """Options of the in-process workers."""
    recover: bool = True
    """On start, resume every saga of the store that is not finished."""
    intake: bool = True
    """Tail the store for sagas started by other processes (``orchestrator start``)."""
    max_in_flight: int = 512
    """Replies handled at once; their appends share group-commit transactions."""
    cache_size: int = 10_000
    """Saga states kept in memory."""
    intake_poll_interval: float = 0.2
    """How often to look for sagas started by other processes, in seconds."""
    republish_delay: float = 1.0
    """Seconds before commands that could not be published are sent again."""
    reissue_after: float | None = 60.0
    """Seconds a step command may go without an outcome before it is sent again (same
    id). A backstop for a message lost outside the log (a broker that lost data); a
    step's own ``timeout`` is what fails a slow attempt. ``None`` turns it off."""
    wait_poll_interval: float = 0.5
    """How often ``wait`` looks at the store for sagas other engines are running."""


class Engine:
    """Runs sagas of the given workflows on ``store`` and ``broker``.

    ``async with Engine(store, broker, workflows) as engine:`` starts it (recovery, the
    reply consumer, timers, workers) and stops it. The store and broker stay the
    caller's: open and connect them before, close them after.
    """

    def __init__(
        self,
        store: EventStore,
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
        self.options = options or EngineOptions()
        self._log = SagaLog(store, cache_size=self.options.cache_size)
        self._timers = TimerQueue(self.clock)
        self._locks: dict[str, list[Any]] = {}
        self._waiters: dict[str, list[asyncio.Future[SagaState]]] = {}
        self._slots = asyncio.Semaphore(self.options.max_in_flight)
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._consumer = self.options.consumer or f"engine-{uuid.uuid4().hex[:8]}"
        self.counts: dict[str, int] = {
            "started": 0,
            "completed": 0,
            "compensated": 0,
            "failed": 0,
            "conflicts": 0,
            "reissued": 0,
        }

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        position = await self.store.last_position()
        self._spawn(self._timers.run(), "timers")
        self._spawn(self._consume_replies(), "replies")
        if self.options.run_workers:
            worker = StepWorker(
                self.broker, self.workflows, topics=self.options.topics, options=self.options.worker
            )
            self._spawn(worker.run(), "workers")
        if self.options.recover:
            await self._recover()
        if self.options.intake:
            self._spawn(self._intake(position), "intake")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._handlers]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._timers.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"orchestrator-{name}")
        task.add_done_callback(_log_crash)
        self._tasks.append(task)

    # -- the client's side ------------------------------------------------------------

    async def start_saga(
        self, workflow: str, input: Mapping[str, Any] | None = None, *, saga_id: str | None = None
    ) -> str:
        """Start a saga of ``workflow``; returns its id once it is durably recorded."""
        wf = self._workflow(workflow)
        saga_id = saga_id or self._new_id()
        request = StartSaga(saga_id, wf.name, dict(input or {}))
        started = start(wf, saga_id, request.input, self.clock.now())
        state, commands = react(wf, None, started)
        async with self._saga_lock(saga_id):
            try:
                records = await self._log.append(
                    saga_id,
                    state,
                    [started, *commands],
                    NO_STREAM,
                    request=request,
                    with_request=True,
                )
            except ConcurrencyError:
                raise SagaExistsError(f"saga {saga_id!r} already exists") from None
        self.counts["started"] += 1
        await self._execute(wf, state, commands, records[1:])
        return saga_id

    async def saga(self, saga_id: str) -> SagaState | None:
        """The saga's current state as this engine knows it (None if not started)."""
        state, _, _ = await self._log.load(saga_id)
        return state

    async def wait(self, saga_id: str, timeout: float | None = None) -> SagaState:
        """Wait until the saga is completed, compensated or failed; returns its state."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        future: asyncio.Future[SagaState] = loop.create_future()
        self._waiters.setdefault(saga_id, []).append(future)
        try:
            fresh = False  # later rounds read the log: another engine may be running it
            while True:
                state, _, _ = await self._log.load(saga_id, fresh=fresh)
                fresh = True
                if state is not None and state.is_terminal:
                    return state
                left = self.options.wait_poll_interval
                if deadline is not None:
                    left = min(left, deadline - loop.time())
                    if left <= 0:
                        raise TimeoutError(f"saga {saga_id!r} is not finished after {timeout}s")
                done, _ = await asyncio.wait({future}, timeout=left)
                if done:
                    return future.result()
        finally:
            waiters = self._waiters.get(saga_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(saga_id, None)

    async def resume_saga(self, saga_id: str) -> SagaState:
        """Ask a ``failed`` saga to retry what failed (``orchestrator resume``)."""
        state, _, _ = await self._log.load(saga_id)
        if state is None:
            raise UnknownSagaError(f"no saga {saga_id!r} in the store")
        await self._deliver(saga_id, lambda now: ResumeRequested(saga_id, now), None)
        after = await self.saga(saga_id)
        assert after is not None
        return after

    # -- events in ----------------------------------------------------------------------

    async def _deliver(
        self, saga_id: str, make_event: Callable[[float], Event], causation_id: str | None
    ) -> None:
        """Apply one event to the saga, record it with its commands, then execute them."""
        async with self._saga_lock(saga_id):
            fresh = False
            for _ in range(16):
                state, version, request = await self._log.load(saga_id, fresh=fresh)
                if state is None:
                    if not fresh:
                        fresh = True
                        continue
                    logger.warning("event for unknown saga %s dropped", saga_id)
                    return
                wf = self._workflow(state.workflow)
                event = make_event(self.clock.now())
                after, commands = react(wf, state, event)
                if after is state:
                    if not fresh:
                        # Decide "nothing to do" only on the log itself: another engine
                        # may have moved the saga on since this one cached it.
                        fresh = True
                        continue
                    return  # a duplicate or late outcome: nothing to record
                try:
                    # The event came decoded from the wire or from a timer, the commands
                    # from the core: plain JSON already, so not walked again.
                    records = await self._log.append(
                        saga_id,
                        after,
                        [event, *commands],
                        version,
                        causation_id,
                        request,
                        trusted=True,
                    )
                except ConcurrencyError:
                    self.counts["conflicts"] += 1
                    fresh = True
                    continue
                break
            else:
                raise OrchestratorError(f"saga {saga_id!r}: too many concurrent writers")
        await self._execute(wf, after, commands, records[1:])

    async def _consume_replies(self) -> None:
        async for message in self.broker.consume(
            self.options.topics.replies,
            self.options.reply_group,
            consumer=self._consumer,
            batch_size=64,
        ):
            await self._slots.acquire()
            task = asyncio.create_task(self._on_reply(message))
            self._handlers.add(task)
            task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._slots.release()

    async def _on_reply(self, message: Message) -> None:
        try:
            outcome = parse_outcome(message.payload)
        except CodecError as exc:
            await self.broker.nack(message, f"not a step outcome: {exc}", requeue=False)
            return
        try:
            await self._deliver(
                outcome.saga_id, lambda now: stamped(outcome, now), message.headers.causation_id
            )
        except Exception as exc:
            logger.exception("reply %s for saga %s failed", message.id, outcome.saga_id)
            await self.broker.nack(message, f"{type(exc).__name__}: {exc}", requeue=True)
            return
        await self.broker.acknowledge(message)

    async def _intake(self, after_position: int) -> None:
        async for record in self.store.subscribe(
            after_position,
            types={_START_TYPE},
            poll_interval=self.options.intake_poll_interval,
        ):
            try:
                await self._pick_up(saga_of(record.stream_id))
            except Exception:
                logger.exception("could not start saga of %s", record.stream_id)

    async def pick_up(self, saga_id: str) -> None:
        """Start the saga a client requested through the store (``request_saga``), if no
        engine has started it yet. The running engine does this by itself."""
        await self._pick_up(saga_id)

    async def _pick_up(self, saga_id: str) -> None:
        async with self._saga_lock(saga_id):
            state, version, request = await self._log.load(saga_id)
            if state is not None or request is None:
                return
            wf = self.workflows.get(request.workflow)
            if wf is None:
                logger.error("saga %s asks for unknown workflow %r", saga_id, request.workflow)
                return
            started = start(wf, saga_id, request.input, self.clock.now())
            after, commands = react(wf, None, started)
            try:
                records = await self._log.append(
                    saga_id, after, [started, *commands], version, request=request
                )
            except ConcurrencyError:
                self._log.forget(saga_id)  # another engine took it
                return
        self.counts["started"] += 1
        await self._execute(wf, after, commands, records[1:])

    async def _recover(self) -> None:
        """Resume every saga of the store that is not finished."""
        after, page_size = "", 500
        while True:
            page = await self.store.streams(STREAM_PREFIX, after=after, limit=page_size)
            for info in page:
                if info.last_type == _FINISH_TYPE:
                    continue
                saga_id = saga_of(info.stream_id)
                if info.last_type == _START_TYPE:
                    await self._pick_up(saga_id)
                else:
                    await self._reissue(saga_id)
            if len(page) < page_size:
                return
            after = page[-1].stream_id

    async def _reissue(self, saga_id: str) -> None:
        state, _, _ = await self._log.load(saga_id, fresh=True)
        if state is None or state.workflow not in self.workflows:
            return
        wf = self.workflows[state.workflow]
        await self._execute(wf, state, resume(wf, state))

    # -- commands out -----------------------------------------------------------------

    async def _execute(
        self,
        wf: Workflow,
        state: SagaState,
        commands: Sequence[Command],
        records: Sequence[NewRecord] | None = None,
    ) -> None:
        """Publish step commands, arm timers, wake waiters. ``records``, when given, are
        the commands as just appended: their data is sent as is, not encoded again."""
        saga_id = state.saga_id
        outgoing: list[dict[str, Any]] = []
        for index, command in enumerate(commands):
            if isinstance(command, ExecuteStep | CompensateStep):
                if records is None:
                    outgoing.append(command_payload(command))
                else:
                    record = records[index]
                    outgoing.append({"type": record.type, "data": dict(record.data)})
                if command.deadline is not None:
                    self._arm_deadline(command)
                self._arm_reissue(wf, command)
            elif isinstance(command, ScheduleRetry):
                self._timers.call_at(command.due_at, _timer(self, command))
            elif isinstance(command, FinishSaga):
                self.counts[command.status.value] = self.counts.get(command.status.value, 0) + 1
        if outgoing:
            try:
                await self.broker.publish_batch(
                    self.options.topics.steps(wf.name),
                    outgoing,
                    headers={"correlation_id": saga_id, "saga_id": saga_id},
                )
            except Exception as exc:
                logger.warning(
                    "could not publish %d commands of saga %s (%s); again in %ss",
                    len(outgoing),
                    saga_id,
                    exc,
                    self.options.republish_delay,
                )
                self._timers.call_at(
                    self.clock.now() + self.options.republish_delay, lambda: self._reissue(saga_id)
                )
        if state.is_terminal:
            for future in self._waiters.get(saga_id, []):
                if not future.done():
                    future.set_result(state)

    def _arm_reissue(self, wf: Workflow, command: ExecuteStep | CompensateStep) -> None:
        delay = self.options.reissue_after
        if delay is None:
            return

        async def check() -> None:
            if _answered(self._log.cached(command.saga_id), command):
                return
            state, _, _ = await self._log.load(command.saga_id, fresh=True)
            if state is None or _answered(state, command):
                return
            logger.warning("no outcome for %s after %ss: sending it again", command.id, delay)
            self.counts["reissued"] += 1
            await self._execute(wf, state, [command])

        self._timers.call_at(self.clock.now() + delay, check)

    def _arm_deadline(self, command: ExecuteStep | CompensateStep) -> None:
        saga_id, step, attempt = command.saga_id, command.step, command.attempt
        compensation = isinstance(command, CompensateStep)

        def timed_out(now: float) -> Event:
            if compensation:
                return CompensationTimedOut(saga_id, step, attempt, now)
            return StepTimedOut(saga_id, step, attempt, now)

        async def fire() -> None:
            if _answered(self._log.cached(saga_id), command):
                return  # the usual case: the attempt finished in time
            await self._deliver(saga_id, timed_out, command.id)

        assert command.deadline is not None
        self._timers.call_at(command.deadline, fire)

    # -- helpers ----------------------------------------------------------------------

    def _workflow(self, name: str) -> Workflow:
        wf = self.workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflowError(f"unknown workflow {name!r} (loaded: {known})")
        return wf

    @asynccontextmanager
    async def _saga_lock(self, saga_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(saga_id)
        if entry is None:
            entry = self._locks[saga_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[saga_id]


def _answered(state: SagaState | None, command: ExecuteStep | CompensateStep) -> bool:
    """Whether ``state`` shows an outcome for the command's attempt. A cached state can
    lag behind the log, never run ahead of it: True is certain, False means "look"."""
    if state is None:
        return False
    if state.is_terminal:
        return True
    table = state.compensations if isinstance(command, CompensateStep) else state.steps
    st = table.get(command.step)
    return st is not None and (st.attempt > command.attempt or st.phase is not Phase.RUNNING)


def _timer(engine: Engine, command: ScheduleRetry) -> Callable[[], Any]:
    async def fire() -> None:
        await engine._deliver(
            command.saga_id,
            lambda now: TimerFired(
                command.saga_id, command.step, command.attempt, command.compensation, now
            ),
            command.id,
        )

    return fire


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception())
