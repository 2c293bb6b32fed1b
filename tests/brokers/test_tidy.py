"""Nothing piles up: a deleted topic is gone (its dead letters stay), request-reply
patterns and ``SagaPattern`` runs leave the server as they found it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from brokers import Broker, Message, RedisStreamsBroker, RequestReplyPattern
from orchestrator import SagaPattern
from tests.brokers.conftest import FAST_CONSUMER, Backend, take


async def test_a_deleted_topic_is_gone_but_its_dead_letters_stay(backend: Backend) -> None:
    broker = await backend.make()
    await broker.publish_batch("scratch", [{"n": n} for n in range(3)])
    [first] = await take(broker, "scratch", "g", 1, ack=False)
    await broker.nack(first, "poison", requeue=False)
    await take(broker, "scratch", "g", 1, ack=False)  # one left un-acknowledged
    await broker.delete_topic("scratch")
    assert await broker.get_consumer_lag("scratch", "g") == 0
    assert await broker.get_dead_letter_count("scratch") == 1
    await broker.publish("scratch", {"n": "again"})  # a new topic, from scratch
    [again] = await take(broker, "scratch", "g", 1)
    assert again.payload == {"n": "again"}
    await broker.delete_topic("never-was")  # nothing to delete is fine


async def _serve(broker: Broker, topic: str) -> asyncio.Task[None]:
    def answer(request: Message) -> dict[str, Any]:
        return {"echo": request.payload["n"]}

    return asyncio.create_task(RequestReplyPattern(broker).handle_requests(topic, answer))


@pytest.mark.redis
async def test_request_replies_and_saga_patterns_leave_redis_as_they_found_it(
    redis_url: str,
) -> None:
    broker = RedisStreamsBroker(redis_url=redis_url, consumer_options=FAST_CONSUMER)
    raw = aioredis.Redis.from_url(redis_url)
    await broker.connect()
    server = await _serve(broker, "tidy.llm")
    try:
        first = RequestReplyPattern(broker)  # the server's topic and group exist now
        assert await first.send_request("tidy.llm", {"n": -1}, timeout=20) is not None
        await first.close()
        keys = sorted(await raw.keys("*"))
        consumers = len(await raw.xinfo_consumers("tidy.llm", "request_handlers"))
        for batch in range(200):  # 1,000 request-replies, 5 per pattern
            pattern = RequestReplyPattern(broker)
            for n in range(5):
                reply = await pattern.send_request("tidy.llm", {"n": n}, timeout=20)
                assert reply is not None and reply.payload == {"echo": n}
            if batch < 195:
                await pattern.close()  # the last five: closed by disconnect, as the seed's
        for _ in range(100):
            saga = SagaPattern(broker)  # a generated name: its topics are its own
            saga.add_step("one", lambda data: {"one": 1}, lambda data: None)
            assert (await saga.execute({})).status == "completed"
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await broker.disconnect()  # closes the 100 patterns left open
        assert sorted(await raw.keys("*")) == keys
        assert len(await raw.xinfo_consumers("tidy.llm", "request_handlers")) == consumers
    finally:
        server.cancel()
        await broker.disconnect()
        await raw.aclose()


@pytest.mark.redis
async def test_an_answer_after_the_requester_gave_up_creates_nothing(redis_url: str) -> None:
    broker = RedisStreamsBroker(redis_url=redis_url, consumer_options=FAST_CONSUMER)
    raw = aioredis.Redis.from_url(redis_url)
    await broker.connect()
    release = asyncio.Event()

    async def slow(request: Message) -> dict[str, Any]:
        await release.wait()
        return {"late": True}

    server = asyncio.create_task(RequestReplyPattern(broker).handle_requests("tidy.slow", slow))
    try:
        pattern = RequestReplyPattern(broker)
        assert await pattern.send_request("tidy.slow", {"n": 1}, timeout=0.5) is None
        await pattern.close()
        assert not await raw.exists(pattern.reply_topic)
        release.set()
        async with asyncio.timeout(20):  # the late request is finished and acknowledged
            while await broker.get_consumer_lag("tidy.slow", "request_handlers"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not await raw.exists(pattern.reply_topic)  # no reply recreated it
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await broker.disconnect()
        await raw.aclose()


@pytest.mark.kafka
async def test_a_topic_kafka_refuses_to_delete_is_an_error_naming_it() -> None:
    """A Kafka with topic deletion disabled answers every topic with an error code, not
    an exception: ``delete_topic`` says which topics stayed and why, and they work on."""
    from brokers import BrokerError, KafkaBroker
    from tests.kafka_server import KafkaServer

    server = KafkaServer(heap="256m", settings={"delete.topic.enable": "false"})
    server.start()
    broker = KafkaBroker(server.bootstrap, consumer_options=FAST_CONSUMER, priority_levels=1)
    try:
        await broker.connect()
        await broker.publish("kept", {"n": 1})
        with pytest.raises(
            BrokerError,
            match=r"did not delete topics of .kept.: kept \(error 73: topic deletion is disabled",
        ):
            await broker.delete_topic("kept")
        await broker.publish("kept", {"n": 2})
        assert [m.payload["n"] for m in await take(broker, "kept", "g", 2)] == [1, 2]
    finally:
        await broker.disconnect()
        server.cleanup()
