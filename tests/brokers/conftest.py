"""Broker fixtures: one factory per backend, so a new broker is one entry in BACKENDS.

Every backend runs with short visibility timeouts, block times and backoffs so the
contract suite stays fast; tests wait for conditions, never for fixed times.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from brokers import (
    Broker,
    ConsumerOptions,
    InMemoryBroker,
    KafkaBroker,
    Message,
    RedeliveryPolicy,
    RedisStreamsBroker,
)

FAST_CONSUMER = ConsumerOptions(visibility_timeout=0.3, block_time=0.05)
FAST_REDELIVERY = RedeliveryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, jitter=0.5)


class SkewClock:
    """Wall clock plus an offset tests can advance (to expire TTLs without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RawWriter(Protocol):
    async def __call__(self, topic: str, data: bytes) -> None: ...


@dataclass
class Backend:
    """A broker under test, plus a way to write raw (possibly malformed) entries."""

    name: str
    make: Callable[..., Awaitable[Broker]]
    write_raw: RawWriter
    clock: SkewClock
    opened: list[Broker] = field(default_factory=list)


def _defaults(clock: SkewClock, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "consumer_options": FAST_CONSUMER,
        "retry": FAST_REDELIVERY,
        "clock": clock,
        **options,
    }


async def _memory(request: pytest.FixtureRequest, clock: SkewClock) -> Backend:
    shared: list[InMemoryBroker] = []

    async def make(**options: Any) -> Broker:
        broker = InMemoryBroker(**_defaults(clock, options))
        await broker.connect()
        shared.append(broker)
        return broker

    async def write_raw(topic: str, data: bytes) -> None:
        await shared[-1]._append(topic, (data,), 0, None)

    return Backend("memory", make, write_raw, clock)


async def _redis(request: pytest.FixtureRequest, clock: SkewClock) -> Backend:
    url: str = request.getfixturevalue("redis_url")

    async def make(**options: Any) -> Broker:
        broker = RedisStreamsBroker(redis_url=url, **_defaults(clock, options))
        await broker.connect()
        return broker

    async def write_raw(topic: str, data: bytes) -> None:
        client = aioredis.Redis.from_url(url)
        try:
            await client.xadd(topic, {b"m": data})
        finally:
            await client.aclose()

    return Backend("redis", make, write_raw, clock)


_kafka_prefixes = itertools.count(1)


async def _kafka(request: pytest.FixtureRequest, clock: SkewClock) -> Backend:
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    # Every test gets its own topics and groups on the session's Kafka.
    prefix = f"c{next(_kafka_prefixes)}-{uuid.uuid4().hex[:6]}."
    # The contract's size limit is the common default; Kafka's own is 10 MiB
    # (tests/brokers/test_kafka.py sends one that big).
    sized = {"max_message_bytes": 1024 * 1024}
    made: list[KafkaBroker] = []

    async def make(**options: Any) -> Broker:
        broker = KafkaBroker(
            bootstrap, topic_prefix=prefix, **_defaults(clock, {**sized, **options})
        )
        await broker.connect()
        made.append(broker)
        return broker

    async def write_raw(topic: str, data: bytes) -> None:
        name = made[-1].kafka_topic(topic)
        await made[-1]._ensure_topics(name)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(name, data)
        finally:
            await producer.stop()

    return Backend("kafka", make, write_raw, clock)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, SkewClock], Awaitable[Backend]]] = {
    "memory": _memory,
    "redis": _redis,
    "kafka": _kafka,
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    made = await BACKENDS[request.param](request, SkewClock())
    original = made.make

    async def tracked(**options: Any) -> Broker:
        broker = await original(**options)
        made.opened.append(broker)
        return broker

    made.make = tracked
    try:
        yield made
    finally:
        for broker in made.opened:
            await broker.disconnect()


@pytest.fixture
async def broker(backend: Backend) -> Broker:
    """A connected broker of each backend with the fast test options."""
    return await backend.make()


async def take(
    broker: Broker,
    topic: str,
    group: str,
    count: int,
    *,
    consumer: str | None = None,
    ack: bool = True,
    batch_size: int = 10,
    guard: float = 10.0,
) -> list[Message]:
    """Consume exactly ``count`` messages (a ``guard``-second limit turns a hang into a
    failure; it is not a speed test)."""
    got: list[Message] = []
    async with asyncio.timeout(guard):
        async for message in broker.consume(topic, group, consumer=consumer, batch_size=batch_size):
            got.append(message)
            if ack:
                await broker.acknowledge(message)
            if len(got) >= count:
                break
    return got


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (up to 10 s) until ``check`` holds; fails naming ``what`` otherwise."""
    try:
        async with asyncio.timeout(10):
            while not await check():  # noqa: ASYNC110 (a condition on the server)
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")
