"""Request-reply, pub-sub and work queue, over every backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from brokers import (
    Broker,
    Message,
    PubSubPattern,
    RequestReplyPattern,
    WorkQueuePattern,
)
from tests.brokers.conftest import eventually


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_request_reply_returns_the_handlers_reply(broker: Broker) -> None:
    pattern = RequestReplyPattern(broker)

    async def handler(request: Message) -> dict[str, Any]:
        return {"echo": request.payload["prompt"], "by": "server"}

    async with running(pattern.handle_requests("agent.llm", handler, consumer_group="llm")):
        reply = await pattern.send_request("agent.llm", {"prompt": "hi"}, timeout=10)
        second = await pattern.send_request("agent.llm", {"prompt": "again"}, timeout=10)
    await pattern.close()
    assert reply is not None and second is not None
    assert reply.payload == {"echo": "hi", "by": "server"}
    assert second.payload == {"echo": "again", "by": "server"}
    assert reply.correlation_id != second.correlation_id


async def test_request_reply_times_out_with_none(broker: Broker) -> None:
    pattern = RequestReplyPattern(broker)
    assert await pattern.send_request("nobody.listens", {"q": 1}, timeout=0.2) is None
    await pattern.close()


async def test_concurrent_requests_get_their_own_replies(broker: Broker) -> None:
    pattern = RequestReplyPattern(broker)

    def double(request: Message) -> dict[str, Any]:
        return {"n": request.payload["n"] * 2}

    async with running(pattern.handle_requests("math", double)):
        replies = await asyncio.gather(
            *(pattern.send_request("math", {"n": n}, timeout=10) for n in range(10))
        )
    await pattern.close()
    assert [r.payload["n"] if r else None for r in replies] == [n * 2 for n in range(10)]


async def test_pubsub_every_subscriber_receives_every_message(broker: Broker) -> None:
    pubsub = PubSubPattern(broker)
    received: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def subscriber(name: str) -> Coroutine[Any, Any, None]:
        return pubsub.subscribe(
            "news", lambda m: received[name].append(m.payload["i"]), subscriber=name
        )

    async with running(subscriber("a")), running(subscriber("b")), running(subscriber("c")):
        for i in range(5):
            await pubsub.publish("news", {"i": i})

        async def all_done() -> bool:
            return all(len(v) == 5 for v in received.values())

        await eventually(all_done, "every subscriber got every message")
    assert received == {name: [0, 1, 2, 3, 4] for name in received}


async def test_work_queue_processes_every_task_once_across_workers(broker: Broker) -> None:
    queue = WorkQueuePattern(broker)
    done: list[int] = []

    async def work(payload: dict[str, Any]) -> dict[str, str]:
        await asyncio.sleep(0)
        done.append(payload["site_id"])
        return {"status": "completed"}

    await queue.submit_batch("jobs", [{"site_id": i} for i in range(50)])
    stats = await queue.process_tasks("jobs", work, consumer_group="calc", num_workers=5)
    assert sorted(done) == list(range(50))
    assert stats == {"processed": 50, "failed": 0}
    assert await broker.get_consumer_lag("jobs", "calc") == 0


async def test_work_queue_failing_task_is_retried_then_dead_lettered(broker: Broker) -> None:
    queue = WorkQueuePattern(broker)
    attempts: dict[int, int] = {}

    def work(payload: dict[str, Any]) -> None:
        attempts[payload["i"]] = attempts.get(payload["i"], 0) + 1
        if payload["i"] == 3:
            raise RuntimeError("site 3 is broken")

    await queue.submit_batch("jobs", [{"i": i} for i in range(5)])
    stats = await queue.process_tasks("jobs", work, consumer_group="calc", num_workers=2)
    retries = broker.retry_policy.max_retries
    assert attempts == {0: 1, 1: 1, 2: 1, 3: retries + 1, 4: 1}
    assert stats == {"processed": 4, "failed": retries + 1}
    [dead] = await broker.get_dead_letter_messages("jobs")
    assert dead.original_message.payload == {"i": 3}
    assert dead.failure_reason == "RuntimeError: site 3 is broken"
    assert dead.original_message.retry_count == retries


async def test_failing_request_handler_does_not_stop_serving(broker: Broker) -> None:
    pattern = RequestReplyPattern(broker)

    def handler(request: Message) -> dict[str, Any]:
        if request.payload.get("fail"):
            raise ValueError("bad request")
        return {"ok": True}

    async with running(pattern.handle_requests("svc", handler)):
        assert await pattern.send_request("svc", {"fail": True}, timeout=0.3) is None
        reply = await pattern.send_request("svc", {"fail": False}, timeout=10)
    await pattern.close()
    assert reply is not None and reply.payload == {"ok": True}
