"""Step outcomes in: consume the replies topic, one saga transition per reply.

A reply is acknowledged only once its transition is in the log (or it was a duplicate
with nothing to record); a reply that fails is nacked for redelivery, and one that is
not a step outcome goes to the dead-letter queue with the reason.

While the store is unreachable (``StoreUnavailableError``) a reply is neither nacked
nor lost: its handler waits with backoff and tries again, keeping the message alive
on the broker, so the consumer pauses once ``max_in_flight`` replies wait, and
resumes by itself when the store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from brokers import Broker, OnAssigned
from brokers import Message as BrokerMessage
from eventstore import StoreUnavailableError
from orchestrator.errors import CodecError
from orchestrator.runtime.backoff import Backoff
from orchestrator.runtime.transition import EventFor, constant
from orchestrator.runtime.wire import parse_outcome, stamped

__all__ = ["ReplyConsumer"]

_DRAIN_SECONDS = 5.0
_WARN_EVERY = 10.0
"""Seconds between warnings while the store stays unavailable."""

logger = logging.getLogger("orchestrator")

Advance = Callable[[str, EventFor, str | None], Awaitable[object]]


class ReplyConsumer:
    """Feeds each outcome on ``topic`` to ``advance``, at most ``max_in_flight`` at once
    (their appends share the store's group-commit transactions). ``on_assigned``, when
    given, makes the loop a member of the group's ownership (see ``ownership``)."""

    def __init__(
        self,
        broker: Broker,
        advance: Advance,
        on_assigned: OnAssigned | None,
        *,
        topic: str,
        group: str,
        consumer: str,
        max_in_flight: int,
    ) -> None:
        self._broker = broker
        self._advance = advance
        self._on_assigned = on_assigned
        self._topic = topic
        self._group = group
        self._consumer = consumer
        self.consumer = consumer
        """This engine's name in the replies group (the broker's membership shows it)."""
        self._slots = asyncio.Semaphore(max_in_flight)
        self._handlers: set[asyncio.Task[None]] = set()
        self._warned_at = float("-inf")

    async def run(self) -> None:
        """Consume until cancelled; replies being handled are let finish (each is one
        short transition), so none is left half-acknowledged."""
        try:
            async for message in self._broker.consume(
                self._topic,
                self._group,
                consumer=self._consumer,
                batch_size=64,
                on_assigned=self._on_assigned,
            ):
                await self._slots.acquire()
                task = asyncio.create_task(self._on_reply(message))
                self._handlers.add(task)
                task.add_done_callback(self._handled)
        finally:
            # Let the replies being handled finish (each is one short transition); one
            # still waiting for the store after that is cancelled, its message unacked.
            pending = set(self._handlers)
            if pending:
                _, late = await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._slots.release()

    async def _on_reply(self, message: BrokerMessage) -> None:
        try:
            outcome = parse_outcome(message.payload)
        except CodecError as exc:
            await self._broker.nack(message, f"not a step outcome: {exc}", requeue=False)
            return
        backoff = Backoff()
        while True:
            try:
                await self._advance(
                    outcome.saga_id,
                    constant(lambda now: stamped(outcome, now)),
                    message.headers.causation_id,
                )
                break
            except StoreUnavailableError as exc:
                now = asyncio.get_running_loop().time()
                if now - self._warned_at > _WARN_EVERY:
                    self._warned_at = now
                    logger.warning("store unavailable (%s): replies wait for it", exc)
                await backoff.wait()
                with contextlib.suppress(Exception):
                    await self._broker.keep_alive(message)
            except Exception as exc:
                logger.exception("reply %s for saga %s failed", message.id, outcome.saga_id)
                await self._broker.nack(message, f"{type(exc).__name__}: {exc}", requeue=True)
                return
        await self._broker.acknowledge(message)
