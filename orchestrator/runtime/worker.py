"""Step workers: consume step commands, run the workflow's functions, reply.

A worker is stateless: delivery is at least once, so a step may run more than once for
the same attempt (a redelivery, or a command re-issued after a crash). The engine
records only the first outcome of an attempt; a step with effects outside should make
them idempotent with ``current_step().idempotency_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brokers import Broker, Message
from orchestrator.core.commands import CompensateStep, StepCommand
from orchestrator.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    CompensationTimedOut,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from orchestrator.core.workflow import Workflow
from orchestrator.errors import CodecError, StepError
from orchestrator.runtime.counts import Observer
from orchestrator.runtime.steps import call_step
from orchestrator.runtime.wire import Outcome, Topics, parse_command, payload
from orchestrator.telemetry.logs import log_context

if TYPE_CHECKING:
    from orchestrator.telemetry.tracing import SagaTracing

logger = logging.getLogger("orchestrator")


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a running step function may want to know about itself."""

    saga_id: str
    workflow: str
    step: str
    attempt: int
    compensation: bool
    idempotency_key: str
    """The command's id (``saga_id:step:attempt``): the same on every redelivery."""


_current: contextvars.ContextVar[StepContext] = contextvars.ContextVar("orchestrator_step")


def current_step() -> StepContext:
    """The step being run by this task. Raises LookupError outside a step function."""
    return _current.get()


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker consumes."""

    group: str = "saga-workers"
    """Consumer group shared by every worker of a deployment."""
    concurrency: int = 256
    """Step functions running at once in this worker."""
    batch_size: int = 64
    """Messages fetched per read from the broker."""
    consumer: str | None = None
    """This worker's name in the group; a unique one by default."""


async def run_command(workflow: Workflow, command: StepCommand) -> Outcome:
    """Run the function a step command names; never raises for the step's own failure.

    The worker owns the step's ``timeout``, and only the worker: it bounds one attempt
    from the moment a worker starts it (start-to-close), so time spent waiting in a
    queue, or on a partition whose consumer died, uses up no attempt. An attempt that
    runs past it is cancelled and reported as ``StepTimedOut`` (``CompensationTimedOut``).
    A worker that dies mid-attempt reports nothing; the broker then hands the command
    to another worker (same attempt, same idempotency key).
    """
    spec = workflow.steps.get(command.step)
    compensation = isinstance(command, CompensateStep)
    fn = None
    if spec is not None:
        fn = spec.compensation.action if compensation and spec.compensation else spec.action
        if compensation and spec.compensation is None:
            fn = None

    def timed_out() -> Outcome:
        if compensation:
            return CompensationTimedOut(command.saga_id, command.step, command.attempt, 0.0)
        return StepTimedOut(command.saga_id, command.step, command.attempt, 0.0)

    def failed(reason: str, retryable: bool) -> Outcome:
        if compensation:
            return CompensationFailed(
                command.saga_id, command.step, command.attempt, reason, retryable, 0.0
            )
        return StepFailed(command.saga_id, command.step, command.attempt, reason, retryable, 0.0)

    if fn is None:
        return failed(
            f"workflow {workflow.name!r} has no "
            f"{'compensation for ' if compensation else ''}step {command.step!r}",
            False,
        )
    token = _current.set(
        StepContext(
            command.saga_id, workflow.name, command.step, command.attempt, compensation, command.id
        )
    )
    try:
        if command.timeout is not None:
            output = await asyncio.wait_for(call_step(fn, command.data), command.timeout)
        else:
            output = await call_step(fn, command.data)
    except StepError as exc:
        return failed(exc.reason, exc.retryable)
    except TimeoutError:
        return timed_out()
    except Exception as exc:
        return failed(f"{type(exc).__name__}: {exc}", True)
    finally:
        _current.reset(token)
    if compensation:
        return CompensationSucceeded(command.saga_id, command.step, command.attempt, 0.0)
    return StepSucceeded(command.saga_id, command.step, command.attempt, output, 0.0)


class StepWorker:
    """Serves the step topics of some workflows until cancelled."""

    def __init__(
        self,
        broker: Broker,
        workflows: Mapping[str, Workflow],
        *,
        topics: Topics | None = None,
        options: WorkerOptions | None = None,
        observer: Observer | None = None,
        tracing: SagaTracing | None = None,
    ) -> None:
        self._broker = broker
        self._observer = observer
        self._tracing = tracing
        self._workflows = dict(workflows)
        self._topics = topics or Topics()
        self._options = options or WorkerOptions()
        self._slots = asyncio.Semaphore(self._options.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._serve(wf) for wf in self._workflows.values()))
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _serve(self, workflow: Workflow) -> None:
        options = self._options
        async for message in self._broker.consume(
            self._topics.steps(workflow.name),
            options.group,
            consumer=options.consumer,
            batch_size=options.batch_size,
        ):
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(workflow, message))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, workflow: Workflow, message: Message) -> None:
        try:
            command = parse_command(message.payload)
        except CodecError as exc:
            await self._broker.nack(message, f"not a step command: {exc}", requeue=False)
            return
        with log_context(
            saga_id=command.saga_id,
            workflow=workflow.name,
            step=command.step,
            attempt=command.attempt,
            correlation_id=message.correlation_id,
        ):
            await self._run(workflow, message, command)

    async def _run(self, workflow: Workflow, message: Message, command: StepCommand) -> None:
        headers = _headers(command)
        tracing = self._tracing
        if tracing is None:
            reply = await self._attempt(workflow, message, command)
        else:
            with tracing.step(
                message.headers.to_dict(),
                command.saga_id,
                workflow.name,
                command.step,
                command.attempt,
                isinstance(command, CompensateStep),
            ) as span:
                reply = await self._attempt(workflow, message, command)
                span.finish(_OUTCOME[type(reply[0])], getattr(reply[0], "error", None))
            headers.update(span.headers)
        await self._reply(message, command, reply[1], headers)

    async def _attempt(
        self, workflow: Workflow, message: Message, command: StepCommand
    ) -> tuple[Outcome, dict[str, Any]]:
        """Run the attempt: its outcome, and the outcome as the reply's payload."""
        keeper = _KeepAlive(self._broker, message)
        observer = self._observer
        began = time.perf_counter() if observer is not None else 0.0
        try:
            outcome = await run_command(workflow, command)
        finally:
            keeper.stop()
        if observer is not None:
            ran = time.perf_counter() - began
            compensation = isinstance(command, CompensateStep)
            observer.step(workflow.name, command.step, compensation, _OUTCOME[type(outcome)], ran)
        try:
            return outcome, payload(outcome)
        except CodecError as exc:  # the step returned something that is not plain JSON
            outcome = StepFailed(
                command.saga_id,
                command.step,
                command.attempt,
                f"output is not plain JSON: {exc}",
                False,
                0.0,
            )
            return outcome, payload(outcome)

    async def _reply(
        self,
        message: Message,
        command: StepCommand,
        reply: dict[str, Any],
        headers: dict[str, Any],
    ) -> None:
        observer = self._observer
        began = time.perf_counter() if observer is not None else 0.0
        try:
            await self._broker.publish(self._topics.replies, reply, headers=headers)
            if observer is not None:
                observer.publish(self._topics.replies, time.perf_counter() - began)
        except Exception as exc:
            logger.warning(
                "could not reply for %s (%s); the command will be redelivered", command.id, exc
            )
            with contextlib.suppress(Exception):
                await self._broker.nack(message, f"reply failed: {exc}", requeue=True)
            return
        await self._broker.acknowledge(message)


class _KeepAlive:
    """While a step runs, tell the broker every third of the visibility timeout that its
    command is still being worked on, so a long step is not handed to a second worker;
    a worker that dies stops telling, and its command moves on after one timeout. The
    first reminder is only armed, not sent: most steps end long before it."""

    __slots__ = ("_broker", "_handle", "_interval", "_message", "_task")

    def __init__(self, broker: Broker, message: Message) -> None:
        self._broker = broker
        self._message = message
        self._interval = broker.consumer_options.visibility_timeout / 3
        self._task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = loop.call_later(self._interval, self._due)

    def _due(self) -> None:
        self._task = asyncio.create_task(self._touch())

    async def _touch(self) -> None:
        try:
            await self._broker.keep_alive(self._message)
        except Exception as exc:  # the broker is down: the step runs on regardless
            logger.debug("keep-alive of %s failed: %s", self._message.id, exc)
        if self._handle is not None:
            self._handle = asyncio.get_running_loop().call_later(self._interval, self._due)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None:
            self._task.cancel()


_OUTCOME: dict[type, str] = {
    StepSucceeded: "succeeded",
    StepFailed: "failed",
    StepTimedOut: "timed_out",
    CompensationSucceeded: "succeeded",
    CompensationFailed: "failed",
    CompensationTimedOut: "timed_out",
}
"""The ``outcome`` label of each kind of outcome."""


def _headers(command: StepCommand) -> dict[str, Any]:
    return {
        "correlation_id": command.saga_id,
        "causation_id": command.id,
        "saga_id": command.saga_id,
    }
