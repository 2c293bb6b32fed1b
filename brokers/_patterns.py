"""Coordination patterns over any :class:`~brokers.Broker`: request-reply, pub-sub,
work queue. They use only the public broker API, so every broker supports them."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from brokers._base import Broker, HeadersArg
from brokers._message import JSONObject, Message, coerce_headers

logger = logging.getLogger("brokers")

RequestHandler = Callable[[Message], Awaitable[JSONObject] | JSONObject]
"""Gets the request message; its return value is the reply payload."""
MessageHandler = Callable[[Message], Awaitable[Any] | Any]
TaskFunction = Callable[[JSONObject], Awaitable[Any] | Any]
"""Gets the task payload; raising fails the task (nack, retry, then dead letter)."""


async def _call(fn: Callable[[Any], Any], arg: Any) -> Any:
    result = fn(arg)
    if inspect.isawaitable(result):
        result = await result
    return result


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RequestReplyPattern:
    """Send a request and await its reply, matched by correlation id.

    Replies come back on this instance's own reply topic (``reply_topic``), read by a
    background listener started on the first request; ``close()`` stops it and deletes
    the reply topic, and so does the broker's ``disconnect()`` for a pattern never
    closed: nothing is left behind.
    """

    def __init__(self, broker: Broker, *, reply_topic: str | None = None) -> None:
        self.broker = broker
        self.reply_topic = reply_topic or f"replies.{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._listener: asyncio.Task[None] | None = None

    async def send_request(
        self,
        topic: str,
        payload: JSONObject,
        timeout: float = 30.0,
        *,
        headers: HeadersArg = None,
    ) -> Message | None:
        """Publish a request on ``topic``; the reply ``Message``, or ``None`` after
        ``timeout`` seconds. The request expires with the timeout: nobody serves it late."""
        if self._listener is None or self._listener.done():
            if self._listener is None:
                self.broker.on_disconnect(self.close)
            self._listener = asyncio.create_task(self._listen(), name=f"{self.reply_topic}")
        correlation_id = uuid.uuid4().hex
        base = coerce_headers(headers)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = fut
        try:
            await self.broker.publish(
                topic,
                payload,
                headers=replace(base, correlation_id=correlation_id, reply_to=self.reply_topic),
                ttl=timeout,
            )
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(correlation_id, None)

    async def _listen(self) -> None:
        async for reply in self.broker.consume(self.reply_topic, "requester"):
            fut = self._waiting.get(reply.correlation_id or "")
            if fut is not None and not fut.done():
                fut.set_result(reply)
            await self.broker.acknowledge(reply)

    async def handle_requests(
        self,
        topic: str,
        handler: RequestHandler,
        consumer_group: str = "request_handlers",
        *,
        consumer: str | None = None,
    ) -> None:
        """Serve requests on ``topic`` until cancelled. A handler that raises nacks the
        request (retried, then dead-lettered); a request whose ttl (the requester's
        timeout) passed while it was handled, or without ``reply_to``, is just
        acknowledged."""
        async for request in self.broker.consume(topic, consumer_group, consumer=consumer):
            try:
                reply = await _call(handler, request)
            except Exception as exc:
                await self.broker.nack(request, _reason(exc))
                continue
            # A request past its ttl has a requester that gave up (and may have deleted
            # its reply topic): an answer now would only create that topic again.
            if request.reply_to and not request.is_expired(self.broker._clock()):
                await self.broker.publish(
                    request.reply_to,
                    reply,
                    headers=replace(
                        request.headers,
                        correlation_id=request.correlation_id,
                        causation_id=request.id,
                        reply_to=None,
                    ),
                )
            await self.broker.acknowledge(request)

    async def close(self) -> None:
        """Stop the reply listener and delete the reply topic (idempotent)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
            self.broker.on_disconnect(self.close, remove=True)
            if self.broker.connected:
                await self.broker.delete_topic(self.reply_topic)


class PubSubPattern:
    """Broadcast: every subscriber (its own consumer group) receives every message."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(self, topic: str, payload: JSONObject, *, headers: HeadersArg = None) -> str:
        return await self.broker.publish(topic, payload, headers=headers)

    async def subscribe(
        self, topic: str, handler: MessageHandler, *, subscriber: str | None = None
    ) -> None:
        """Deliver every message of ``topic`` to ``handler`` until cancelled. A named
        ``subscriber`` resumes where it left off; an anonymous one gets a fresh group."""
        group = f"pubsub.{subscriber or uuid.uuid4().hex}"
        async for message in self.broker.consume(topic, group):
            try:
                await _call(handler, message)
            except Exception as exc:
                await self.broker.nack(message, _reason(exc))
                continue
            await self.broker.acknowledge(message)


class WorkQueuePattern:
    """Competing consumers: each task is processed by one worker of the group."""

    drain_check_interval: float = 0.05
    """Seconds between checks of the group's lag while ``process_tasks`` runs."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def submit(self, topic: str, task: JSONObject, *, headers: HeadersArg = None) -> str:
        return await self.broker.publish(topic, task, headers=headers)

    async def submit_batch(self, topic: str, tasks: Iterable[JSONObject]) -> list[str]:
        return await self.broker.publish_batch(topic, tasks)

    async def process_tasks(
        self,
        topic: str,
        fn: TaskFunction,
        consumer_group: str = "workers",
        num_workers: int = 1,
    ) -> dict[str, int]:
        """Run ``num_workers`` workers until the queue is drained (nothing undelivered,
        un-acknowledged or waiting for a retry). A task that raises is nacked: retried
        with backoff, then dead-lettered. Returns ``{"processed": n, "failed": m}``
        (``failed`` counts failed attempts)."""
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        stats = {"processed": 0, "failed": 0}
        run = uuid.uuid4().hex[:8]

        async def worker(index: int) -> None:
            name = f"{consumer_group}-{run}-{index}"
            async for message in self.broker.consume(
                topic, consumer_group, consumer=name, batch_size=1
            ):
                try:
                    await _call(fn, message.payload)
                except Exception as exc:
                    stats["failed"] += 1
                    logger.info("task %s on %s failed: %s", message.id, topic, exc)
                    await self.broker.nack(message, _reason(exc))
                    continue
                await self.broker.acknowledge(message)
                stats["processed"] += 1

        workers = [asyncio.create_task(worker(i)) for i in range(num_workers)]
        try:
            while True:
                done = [task for task in workers if task.done()]
                for task in done:
                    task.result()  # a worker that died re-raises here
                if await self.broker.get_consumer_lag(topic, consumer_group) == 0:
                    return stats
                await asyncio.sleep(self.drain_check_interval)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
