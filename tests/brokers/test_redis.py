"""Redis-only behaviour: raw stream entries, several processes, circuit breaker across a
real server restart, and durability of acknowledged publishes across kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from brokers import (
    BrokerConnectionError,
    CircuitBreakerPolicy,
    CircuitOpenError,
    CircuitState,
    ConsumerOptions,
    RedisStreamsBroker,
)
from tests.brokers.conftest import FAST_CONSUMER, FAST_REDELIVERY, eventually, take
from tests.servers import RedisServer

pytestmark = pytest.mark.redis


def make(url: str, **options: object) -> RedisStreamsBroker:
    return RedisStreamsBroker(
        redis_url=url,
        **{"consumer_options": FAST_CONSUMER, "retry": FAST_REDELIVERY, **options},  # type: ignore[arg-type]
    )


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A private redis-server (appendonly, fsync always) this test may stop and kill."""
    server = RedisServer(appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_entry_without_message_field_is_dead_lettered(redis_url: str) -> None:
    async with make(redis_url) as broker:
        client = aioredis.Redis.from_url(redis_url)
        await client.xadd("t", {b"other": b"1"})
        await client.aclose()
        good = await broker.publish("t", {"ok": 1})
        [got] = await take(broker, "t", "g", 1)
        assert got.id == good
        [dead] = await broker.get_dead_letter_messages("t")
        assert dead.failure_reason == "malformed: entry has no message field"


async def test_pending_entry_is_claimed_by_another_process(redis_url: str) -> None:
    first, second = make(redis_url), make(redis_url)
    async with first, second:
        msg_id = await first.publish("t", {"x": 1})
        [held] = await take(first, "t", "g", 1, consumer="p1", ack=False)
        assert held.id == msg_id
        await first.disconnect()  # the process dies holding the message
        [claimed] = await take(second, "t", "g", 1, consumer="p2")
        assert claimed.id == msg_id
        assert claimed.delivery is not None and claimed.delivery.consumer == "p2"
        client = aioredis.Redis.from_url(redis_url)
        assert (await client.xpending("t", "g"))["pending"] == 0
        await client.aclose()


async def test_streams_are_trimmed_to_max_stream_length(redis_url: str) -> None:
    async with make(redis_url, max_stream_length=100) as broker:
        for _ in range(10):
            await broker.publish_batch("t", [{"i": i} for i in range(100)])
        client = aioredis.Redis.from_url(redis_url)
        length = await client.xlen("t")
        await client.aclose()
        assert 100 <= length < 1000


async def test_circuit_opens_fails_fast_and_closes_after_restart(
    own_server: RedisServer,
) -> None:
    policy = CircuitBreakerPolicy(
        failure_threshold=3,
        reset_timeout=0.2,
        reconnect_base_delay=0.02,
        reconnect_max_delay=0.1,
    )
    broker = make(own_server.url, circuit=policy, socket_connect_timeout=1.0)
    await broker.connect()
    received: list[str] = []

    async def consumer() -> None:
        async for message in broker.consume("t", "g", consumer="steady"):
            received.append(message.payload["when"])
            await broker.acknowledge(message)

    task = asyncio.create_task(consumer())
    try:
        await broker.publish("t", {"when": "before"})
        await eventually(lambda: _async(received == ["before"]), "delivery before the stop")
        own_server.stop()
        for _ in range(policy.failure_threshold):
            with contextlib.suppress(CircuitOpenError), pytest.raises(BrokerConnectionError):
                await broker.publish("t", {"when": "down"})
        assert broker.circuit.state in (CircuitState.OPEN, CircuitState.HALF_OPEN)
        with pytest.raises(CircuitOpenError, match=r"circuit .* is open"):
            await broker.publish("t", {"when": "down"})
        health = await broker.health_check()
        assert health["status"] == "unhealthy"

        own_server.start()

        async def publish_succeeds() -> bool:
            try:
                await broker.publish("t", {"when": "after"})
            except BrokerConnectionError:
                return False
            return True

        await eventually(publish_succeeds, "publish after the restart (half-open probe)")
        assert broker.circuit.state is CircuitState.CLOSED
        await eventually(lambda: _async("after" in received), "consumer resumed")
        assert (await broker.health_check())["status"] == "healthy"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await broker.disconnect()


async def test_acknowledged_publishes_survive_kill_9(own_server: RedisServer) -> None:
    total = 10_000
    broker = make(own_server.url, max_stream_length=100_000)
    async with broker:
        ids: list[str] = []
        for start in range(0, total, 500):
            ids += await broker.publish_batch(
                "durable", [{"i": i} for i in range(start, start + 500)]
            )
    own_server.restart(kill=True)
    options = ConsumerOptions(visibility_timeout=30, block_time=0.05)
    async with make(own_server.url, consumer_options=options) as after:
        assert await after.get_consumer_lag("durable", "g") == total
        # 10,000 one-by-one acknowledgements: ~8 s on a busy 2-core machine
        got = await take(after, "durable", "g", total, batch_size=500, guard=120)
    assert [m.id for m in got] == ids
    assert all(m.verify() for m in got)


async def _async(value: bool) -> bool:
    return value


def test_authentication_failures_say_so_and_name_the_setting(tmp_path: Path) -> None:
    """A server that wants a password: none given, a wrong one, the right one. The
    error names the setting to check, and never prints the password."""
    from tests.servers import free_port

    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret-pw",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def attempt(url: str) -> str:
        broker = RedisStreamsBroker(redis_url=url)
        try:
            await broker.connect()
        except BrokerConnectionError as exc:
            return str(exc)
        await broker.disconnect()
        return "connected"

    async def run() -> list[str]:
        async with asyncio.timeout(20):
            while await attempt(f"redis://:s3cret-pw@127.0.0.1:{port}") != "connected":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return [
            await attempt(f"redis://127.0.0.1:{port}"),
            await attempt(f"redis://:wrong-pw@127.0.0.1:{port}"),
        ]

    try:
        missing, wrong = asyncio.run(run())
    finally:
        server.kill()
        server.wait()
    assert "authentication failed: the server needs a password and none was given" in missing
    assert "refused the password" in wrong and "redis://:***@127.0.0.1" in wrong
    for message in (missing, wrong):
        assert "GREENLANG_REDIS_PASSWORD" in message and "redis.password" in message
        assert "wrong-pw" not in message and "s3cret-pw" not in message


async def test_idle_consumers_with_nothing_pending_leave_the_group(redis_url: str) -> None:
    """100 short ``consume()`` loops leave 100 consumers behind; once idle past
    ``idle_consumer_ttl`` the group's next loop removes them, but not one that still
    holds a message nobody acknowledged."""
    crowd = RedisStreamsBroker(redis_url=redis_url, consumer_options=FAST_CONSUMER)
    options = ConsumerOptions(block_time=0.05, idle_consumer_ttl=1.0)
    sweeper = RedisStreamsBroker(redis_url=redis_url, consumer_options=options)
    raw = aioredis.Redis.from_url(redis_url)
    await crowd.connect()
    await sweeper.connect()
    try:
        await crowd.publish_batch("crowd", [{"n": n} for n in range(101)])
        for n in range(100):
            await take(crowd, "crowd", "g", 1, consumer=f"short-{n}")
        await take(crowd, "crowd", "g", 1, consumer="holder", ack=False)
        assert len(await raw.xinfo_consumers("crowd", "g")) == 101
        await asyncio.sleep(1.2)
        await sweeper.publish("crowd", {"n": "last"})
        await take(sweeper, "crowd", "g", 1, consumer="sweeper")
        names = {info["name"].decode() for info in await raw.xinfo_consumers("crowd", "g")}
        assert names == {"holder", "sweeper"}
    finally:
        await crowd.disconnect()
        await sweeper.disconnect()
        await raw.aclose()


async def test_the_sweep_is_one_script_that_spares_the_pending_and_the_missing(
    redis_url: str,
) -> None:
    """The check and ``XGROUP DELCONSUMER`` run as one script (no entry can be taken
    between them); a stream or group that does not exist removes nothing."""
    from brokers import _redis_layout as layout

    raw = aioredis.Redis.from_url(redis_url)
    try:
        assert await raw.eval(layout.SWEEP, 1, "no-such-stream", "g", "me", 0) == 0
        await raw.xgroup_create("swept", "g", id="0", mkstream=True)
        await raw.xadd("swept", {"m": b"x"})
        await raw.xgroup_createconsumer("swept", "g", "idle")
        await raw.xgroup_createconsumer("swept", "g", "me")
        await raw.xreadgroup("g", "holder", {"swept": ">"}, count=1)
        await asyncio.sleep(0.05)
        assert await raw.eval(layout.SWEEP, 1, "swept", "no-such-group", "me", 0) == 0
        assert await raw.eval(layout.SWEEP, 1, "swept", "g", "me", 0) == 1
        names = {info["name"].decode() for info in await raw.xinfo_consumers("swept", "g")}
        assert names == {"holder", "me"}
    finally:
        await raw.aclose()


def test_passwords_never_reach_an_error_message() -> None:
    from brokers._redis import _redacted

    assert _redacted("redis://:pw@10.0.0.1:6380/2") == "redis://:***@10.0.0.1:6380/2"
    assert _redacted("redis://user:pw@[::1]:6379/0") == "redis://user:***@[::1]:6379/0"
    assert _redacted("redis://h/0?password=pw&ssl_cert_reqs=none") == (
        "redis://h/0?password=***&ssl_cert_reqs=none"
    )
    assert _redacted("redis://h:6379/0") == "redis://h:6379/0"
