"""Brokers benchmark, run by hand: ``python bench/brokers.py [--broker redis|kafka]
[--n 5000] [--seconds 3]``.

``--broker kafka`` starts a real Apache Kafka (tests/kafka_server.py) instead and measures
KafkaBroker beside raw aiokafka (same producer settings: idempotent, acks=all) and beside
Kafka's own ``org.apache.kafka.tools.ProducerPerformance`` from the same jars, in the same
run: batched publish, consume + acknowledge, and p95 latency at 1,000 msg/s.

Starts its own redis-server on a free loopback port (tests/servers.py) and measures,
beside raw redis-py issuing the same commands in the same run:

1. publish one by one            (broker.publish      vs  XADD)
2. publish_batch of 100          (broker.publish_batch vs pipelined XADD x100)
3. consume + acknowledge         (consume/acknowledge vs XREADGROUP COUNT 100 + XACK each;
                                 and the handler acknowledging from tasks of its own,
                                 which the broker coalesces into one XACK per round
                                 trip, vs XREADGROUP COUNT 100 + one XACK per batch;
                                 and ``acknowledge_batch`` of each 100 consumed, one
                                 XACK per batch like the raw loop)
4. publish→receive latency p50/p95/p99 at a steady 1,000 msg/s (broker vs raw XADD +
   blocking XREADGROUP), plus the in-memory broker's figures for reference;
5. what priority lanes cost: consume + acknowledge with ``priority_levels=1`` (one
   stream, priority off) beside the default 3 levels, all at priority 0 and spread
   over the three lanes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import redis.asyncio as aioredis

from brokers import Broker, ConsumerOptions, InMemoryBroker, Message, RedisStreamsBroker
from tests.servers import RedisServer

PAYLOAD = {"saga_id": "s-123", "step": "reserve", "attempt": 1, "data": {"amount": 42}}
FIELD = {b"m": orjson.dumps(PAYLOAD)}


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def raw_publish(client: aioredis.Redis, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await client.xadd("raw.one", FIELD, maxlen=100_000, approximate=True)
    return rate(n, time.perf_counter() - start)


async def broker_publish(broker: Broker, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await broker.publish("b.one", PAYLOAD)
    return rate(n, time.perf_counter() - start)


async def raw_batch(client: aioredis.Redis, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n // 100):
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.xadd("raw.batch", FIELD, maxlen=100_000, approximate=True)
        await pipe.execute()
    return rate(n, time.perf_counter() - start)


async def broker_batch(broker: Broker, n: int) -> float:
    payloads = [PAYLOAD] * 100
    start = time.perf_counter()
    for _ in range(n // 100):
        await broker.publish_batch("b.batch", payloads)
    return rate(n, time.perf_counter() - start)


async def raw_consume(client: aioredis.Redis, n: int, *, batch_ack: bool = False) -> float:
    """XREADGROUP COUNT 100, each entry decoded; one XACK per entry, or per batch."""
    group = "g2" if batch_ack else "g"
    await client.xgroup_create("raw.batch", group, id="0", mkstream=True)
    done = 0
    start = time.perf_counter()
    while done < n:
        reply = await client.xreadgroup(group, "c", {"raw.batch": ">"}, count=100, block=1000)
        for _, entries in reply:
            for entry_id, fields in entries:
                orjson.loads(fields[b"m"])
                if not batch_ack:
                    await client.xack("raw.batch", group, entry_id)
            if batch_ack:
                await client.xack("raw.batch", group, *(entry_id for entry_id, _ in entries))
            done += len(entries)
    return rate(done, time.perf_counter() - start)


async def broker_consume_concurrent_acks(broker: Broker, n: int) -> float:
    done = 0
    acks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    async for message in broker.consume("b.batch", "g2", batch_size=100):
        task = asyncio.ensure_future(broker.acknowledge(message))
        acks.add(task)
        task.add_done_callback(acks.discard)
        done += 1
        if done >= n:
            break
    await asyncio.gather(*acks)
    return rate(done, time.perf_counter() - start)


async def broker_consume_batch_acks(broker: Broker, n: int) -> float:
    """The raw loop's shape: what one fetch of 100 gave, acknowledged at once."""
    done = 0
    batch: list[Message] = []
    start = time.perf_counter()
    async for message in broker.consume("b.batch", "g3", batch_size=100):
        batch.append(message)
        done += 1
        if len(batch) == 100 or done >= n:
            await broker.acknowledge_batch(batch)
            batch = []
        if done >= n:
            break
    return rate(done, time.perf_counter() - start)


async def broker_consume(broker: Broker, n: int) -> float:
    done = 0
    start = time.perf_counter()
    async for message in broker.consume("b.batch", "g", batch_size=100):
        await broker.acknowledge(message)
        done += 1
        if done >= n:
            break
    return rate(done, time.perf_counter() - start)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1000, q[94] * 1000, q[98] * 1000


async def paced(publish: object, seconds: float, per_second: int = 1000) -> None:
    interval = 1.0 / per_second
    deadline = time.perf_counter()
    end = deadline + seconds
    while deadline < end:
        await publish()  # type: ignore[operator]
        deadline += interval
        delay = deadline - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def broker_latency(broker: Broker, topic: str, seconds: float) -> tuple[float, ...]:
    samples: list[float] = []
    sent: dict[str, float] = {}
    ready = asyncio.Event()

    async def receive() -> None:
        ready.set()
        async for message in broker.consume(topic, "lat", batch_size=100):
            samples.append(time.perf_counter() - sent[message.id])
            await broker.acknowledge(message)

    task = asyncio.create_task(receive())
    await ready.wait()
    await asyncio.sleep(0.2)

    # Ids are chosen before the publish so the receiver can look up the send time.
    async def publish() -> None:
        key = f"m{len(sent)}"
        sent[key] = time.perf_counter()
        await broker.publish(topic, PAYLOAD, message_id=key)

    await paced(publish, seconds)
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return percentiles(samples)


async def raw_latency(client: aioredis.Redis, url: str, seconds: float) -> tuple[float, ...]:
    reader = aioredis.Redis.from_url(url)
    await client.xgroup_create("raw.lat", "lat", id="0", mkstream=True)
    samples: list[float] = []
    sent: dict[bytes, float] = {}

    async def receive() -> None:
        while True:
            reply = await reader.xreadgroup("lat", "c", {"raw.lat": ">"}, count=100, block=1000)
            for _, entries in reply:
                for entry_id, fields in entries:
                    key = orjson.loads(fields[b"m"])["k"].encode()
                    samples.append(time.perf_counter() - sent[key])
                    await reader.xack("raw.lat", "lat", entry_id)

    task = asyncio.create_task(receive())
    await asyncio.sleep(0.2)

    async def publish() -> None:
        key = f"m{len(sent)}"
        sent[key.encode()] = time.perf_counter()
        await client.xadd("raw.lat", {b"m": orjson.dumps({**PAYLOAD, "k": key})})

    await paced(publish, seconds)
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await reader.aclose()
    return percentiles(samples)


async def priority_cost(url: str, options: ConsumerOptions, n: int) -> None:
    """Consume + acknowledge of ``n`` messages: one lane beside three."""
    figures: dict[str, float] = {}
    for name, levels, spread in (
        ("priority_levels=1", 1, False),
        ("priority_levels=3, all at 0", 3, False),
        ("priority_levels=3, spread 0/1/2", 3, True),
    ):
        broker = RedisStreamsBroker(redis_url=url, consumer_options=options, priority_levels=levels)
        await broker.connect()
        topic = f"prio.{levels}.{spread}"
        for i in range(n // 100):
            await broker.publish_batch(topic, [PAYLOAD] * 100, priority=i % 3 if spread else 0)
        figures[name] = await broker_consume_topic(broker, topic, n // 100 * 100)
        await broker.disconnect()
    base = figures["priority_levels=1"]
    print("\npriority lanes, consume + acknowledge (msg/s)")
    for name, value in figures.items():
        print(f"  {name:32} {value:12,.0f} {value / base:7.2f}")


async def main(n: int, seconds: float) -> None:
    server = RedisServer()
    server.start()
    fast = ConsumerOptions(visibility_timeout=30, block_time=1.0)
    try:
        client = aioredis.Redis.from_url(server.url)
        broker = RedisStreamsBroker(redis_url=server.url, consumer_options=fast)
        await broker.connect()
        rows = []
        raw, ours = await raw_publish(client, n), await broker_publish(broker, n)
        rows.append(("publish one by one (msg/s)", raw, ours))
        raw, ours = await raw_batch(client, n), await broker_batch(broker, n)
        rows.append(("publish_batch of 100 (msg/s)", raw, ours))
        raw, ours = await raw_consume(client, n), await broker_consume(broker, n)
        rows.append(("consume + acknowledge (msg/s)", raw, ours))
        raw = await raw_consume(client, n, batch_ack=True)
        ours = await broker_consume_concurrent_acks(broker, n)
        rows.append(("consume + ack, acks batched (msg/s)", raw, ours))
        ours = await broker_consume_batch_acks(broker, n)
        rows.append(("consume + acknowledge_batch of 100", raw, ours))
        print(f"{'measure':34} {'raw redis-py':>14} {'brokers':>14} {'ratio':>7}")
        for name, raw, ours in rows:
            print(f"{name:34} {raw:14,.0f} {ours:14,.0f} {ours / raw:7.2f}")
        await priority_cost(server.url, fast, n)
        raw_p = await raw_latency(client, server.url, seconds)
        ours_p = await broker_latency(broker, "b.lat", seconds)
        memory = InMemoryBroker(consumer_options=fast)
        await memory.connect()
        mem_p = await broker_latency(memory, "m.lat", seconds)
        print(f"\nlatency at 1,000 msg/s for {seconds:.0f}s   p50 / p95 / p99 (ms)")
        for name, p in (
            ("raw redis-py", raw_p),
            ("RedisStreamsBroker", ours_p),
            ("InMemoryBroker", mem_p),
        ):
            print(f"  {name:20} {p[0]:7.3f} {p[1]:7.3f} {p[2]:7.3f}")
        start = time.perf_counter()
        ids = 0
        for _ in range(n // 100):
            ids += len(await memory.publish_batch("m.x", [PAYLOAD] * 100))
        pub = rate(ids, time.perf_counter() - start)
        cons = await broker_consume_topic(memory, "m.x", ids)
        print(f"\nInMemoryBroker: publish_batch {pub:,.0f} msg/s, consume+ack {cons:,.0f} msg/s")
        await memory.disconnect()
        await broker.disconnect()
        await client.aclose()
    finally:
        server.cleanup()


async def broker_consume_topic(broker: Broker, topic: str, n: int) -> float:
    done = 0
    start = time.perf_counter()
    async for message in broker.consume(topic, "g", batch_size=100):
        await broker.acknowledge(message)
        done += 1
        if done >= n:
            break
    return rate(done, time.perf_counter() - start)


KAFKA_BATCH = 1000


async def kafka_main(n: int, seconds: float) -> None:
    import subprocess

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from brokers import KafkaBroker
    from tests.kafka_server import KafkaServer

    server = KafkaServer()
    server.start()
    try:
        fast = ConsumerOptions(visibility_timeout=30, block_time=1.0)
        broker = KafkaBroker(server.bootstrap, consumer_options=fast)
        await broker.connect()
        for name in ("raw.batch", "b.batch", "perf", "raw.lat", "b.lat"):
            await broker._ensure_topics(broker.kafka_topic(name))
        producer = AIOKafkaProducer(
            bootstrap_servers=server.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
        )
        await producer.start()
        value = orjson.dumps(PAYLOAD)

        async def raw_batch_kafka() -> float:
            start = time.perf_counter()
            # The fastest aiokafka path: whole record batches (create_batch/send_batch).
            for i in range(n // KAFKA_BATCH):
                batch = producer.create_batch()
                futures = []
                for _ in range(KAFKA_BATCH):
                    while batch.append(key=b"s-123", value=value, timestamp=None) is None:
                        batch.close()
                        futures.append(
                            await producer.send_batch(batch, "raw.batch", partition=i % 4)
                        )
                        batch = producer.create_batch()
                batch.close()
                futures.append(await producer.send_batch(batch, "raw.batch", partition=i % 4))
                await asyncio.gather(*futures)
            return rate(n, time.perf_counter() - start)

        async def broker_batch_kafka() -> float:
            payloads = [PAYLOAD] * KAFKA_BATCH
            start = time.perf_counter()
            for _ in range(n // KAFKA_BATCH):
                await broker.publish_batch("b.batch", payloads)
            return rate(n, time.perf_counter() - start)

        async def raw_consume_kafka() -> float:
            consumer = AIOKafkaConsumer(
                "raw.batch",
                bootstrap_servers=server.bootstrap,
                group_id="g",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            done = 0
            start = time.perf_counter()
            while done < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batches.values():
                    for record in records:
                        orjson.loads(record.value)
                        done += 1
                await consumer.commit()
            result = rate(done, time.perf_counter() - start)
            await consumer.stop()
            return result

        rows = [
            ("publish_batch of 1000 (msg/s)", await raw_batch_kafka(), await broker_batch_kafka()),
            (
                "consume + acknowledge (msg/s)",
                await raw_consume_kafka(),
                await broker_consume_topic(broker, "b.batch", n),
            ),
        ]
        print(f"{'measure':34} {'raw aiokafka':>14} {'KafkaBroker':>14} {'ratio':>7}")
        for name, raw, ours in rows:
            print(f"{name:34} {raw:14,.0f} {ours:14,.0f} {ours / raw:7.2f}")
        cmd = [
            "java", "-Xmx512m", "-cp", f"{server.jars}/*",
            "org.apache.kafka.tools.ProducerPerformance", "--topic", "perf",
            "--num-records", str(n), "--record-size", str(len(broker.build_message(
                "perf", PAYLOAD)[1])), "--throughput", "-1", "--producer-props",
            f"bootstrap.servers={server.bootstrap}", "acks=all", "enable.idempotence=true",
            "linger.ms=5",
        ]  # fmt: skip
        out = await asyncio.to_thread(
            subprocess.run, cmd, capture_output=True, text=True, check=False
        )
        lines = [line for line in out.stdout.splitlines() if "records sent" in line]
        perf = lines[-1] if lines else out.stderr[-500:]
        print(f"\nProducerPerformance (Java, same jars): {perf}")
        raw_p = await raw_kafka_latency(producer, server.bootstrap, seconds)
        ours_p = await broker_latency(broker, "b.lat", seconds)
        print(f"\nlatency at 1,000 msg/s for {seconds:.0f}s   p50 / p95 / p99 (ms)")
        for name, p in (("raw aiokafka", raw_p), ("KafkaBroker", ours_p)):
            print(f"  {name:20} {p[0]:7.3f} {p[1]:7.3f} {p[2]:7.3f}")
        await producer.stop()
        await broker.disconnect()
    finally:
        server.cleanup()


async def raw_kafka_latency(producer: object, bootstrap: str, seconds: float) -> tuple[float, ...]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "raw.lat",
        bootstrap_servers=bootstrap,
        group_id="lat",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=500,
    )
    await consumer.start()
    samples: list[float] = []
    sent: dict[bytes, float] = {}

    async def receive() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=100)
            for records in batches.values():
                for record in records:
                    samples.append(time.perf_counter() - sent[record.key])
            if batches:
                await consumer.commit()

    task = asyncio.create_task(receive())
    await asyncio.sleep(1.0)

    async def publish() -> None:
        key = f"m{len(sent)}".encode()
        sent[key] = time.perf_counter()
        await producer.send_and_wait("raw.lat", orjson.dumps(PAYLOAD), key=key)  # type: ignore[attr-defined]

    await paced(publish, seconds)
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()
    return percentiles(samples)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per throughput run")
    parser.add_argument("--seconds", type=float, default=3.0, help="latency run length")
    parser.add_argument("--broker", choices=["redis", "kafka"], default="redis")
    args = parser.parse_args()
    asyncio.run((kafka_main if args.broker == "kafka" else main)(args.n, args.seconds))
