"""Retention by age, as configured, against real servers with short TTLs: Redis trims
its streams by age as well as length and returns no dead letter past the DLQ's TTL;
Kafka creates its topics with ``retention.ms`` from the settings (30 days by default,
as the seed says); a per-message TTL longer than the topics keep messages is refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from brokers import InMemoryBroker, KafkaBroker, MessageValidationError, RedisStreamsBroker
from tests.brokers.conftest import FAST_CONSUMER, FAST_REDELIVERY, take

SECOND = 1 / 86_400  # in days


@pytest.mark.redis
async def test_redis_trims_its_streams_by_age(redis_url: str) -> None:
    broker = RedisStreamsBroker(
        redis_url=redis_url, message_ttl_days=SECOND, consumer_options=FAST_CONSUMER
    )
    raw = aioredis.Redis.from_url(redis_url)
    await broker.connect()
    try:
        old = await broker.publish("aging", {"n": 1})  # nobody ever reads it
        await asyncio.sleep(1.3)
        new = await broker.publish("aging", {"n": 2})
        entries = await raw.xrange("aging")
        assert len(entries) == 1  # the old one is gone, not just skipped
        [message] = await take(broker, "aging", "late-group", 1)
        assert (message.id, message.payload) == (new, {"n": 2})
        assert old != new
    finally:
        await broker.disconnect()
        await raw.aclose()


@pytest.mark.redis
async def test_redis_returns_no_dead_letter_past_the_dlq_ttl(redis_url: str) -> None:
    broker = RedisStreamsBroker(
        redis_url=redis_url,
        dlq_ttl_days=SECOND,
        consumer_options=FAST_CONSUMER,
        retry=FAST_REDELIVERY,
    )
    await broker.connect()
    try:
        await broker.publish("doomed", {"n": 1})
        [message] = await take(broker, "doomed", "g", 1, ack=False)
        await broker.nack(message, "poison", requeue=False)
        assert await broker.get_dead_letter_count("doomed") == 1
        assert len(await broker.get_dead_letter_messages("doomed")) == 1
        assert "doomed" in await broker.get_dead_letter_topics()
        await asyncio.sleep(1.3)
        assert "doomed" not in await broker.get_dead_letter_topics()  # expired letters only
        assert await broker.get_dead_letter_messages("doomed") == []
        assert await broker.get_dead_letter_count("doomed") == 0
    finally:
        await broker.disconnect()


async def _retention_ms(broker: KafkaBroker, name: str) -> int:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = broker._admin
    assert admin is not None
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    described: dict[str, Any] = response.to_object()
    for resource in described["resources"]:
        for entry in resource["config_entries"]:
            if entry["config_names"] == "retention.ms":
                return int(entry["config_value"])
    raise AssertionError(f"no retention.ms for {name}: {described}")


@pytest.mark.kafka
async def test_kafka_topics_keep_messages_as_configured(kafka_bootstrap: str) -> None:
    day_ms = 86_400_000
    for options, main_ms in (({}, 30 * day_ms), ({"message_ttl_days": 2}, 2 * day_ms)):
        broker = KafkaBroker(
            kafka_bootstrap,
            topic_prefix=f"ret-{uuid.uuid4().hex[:8]}.",
            dlq_ttl_days=40,
            consumer_options=FAST_CONSUMER,
            retry=FAST_REDELIVERY,
            **options,
        )
        await broker.connect()
        try:
            await broker.publish("orders", {"n": 1})
            [message] = await take(broker, "orders", "g", 1, ack=False)
            await broker.nack(message, "retry it", requeue=True)  # creates the retry topic
            [again] = await take(broker, "orders", "g", 1, ack=False)
            await broker.nack(again, "poison", requeue=False)  # and the DLQ
            topics = broker._topics
            assert await _retention_ms(broker, topics.main("orders")) == main_ms
            assert await _retention_ms(broker, topics.retry("orders", "g")) == main_ms
            assert await _retention_ms(broker, topics.dlq("orders")) == 40 * day_ms
        finally:
            await broker.disconnect()


async def test_a_ttl_longer_than_the_topics_keep_messages_is_refused() -> None:
    broker = InMemoryBroker(message_ttl_days=7)
    await broker.connect()
    try:
        with pytest.raises(MessageValidationError, match=r"longer than the topics keep"):
            await broker.publish("t", {"n": 1}, ttl=8 * 86_400)
        assert await broker.get_consumer_lag("t", "g") == 0  # nothing was published
        await broker.publish("t", {"n": 1}, ttl=6 * 86_400)
    finally:
        await broker.disconnect()
