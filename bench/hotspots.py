"""Where the time goes, run by hand: ``python bench/hotspots.py CASE [--top 25]``.

Prints cProfile's entries by own time (the cyclic GC off while profiling, so its pauses
are not charged to whatever allocated last) for one case of the benchmarks:

* ``kafka-publish``: ``KafkaBroker.publish_batch`` of 1,000, 100,000 messages, against
  a Kafka this script starts (tests/kafka_server.py);
* ``redis-consume``: 20,000 messages consumed from a redis-server this script starts,
  each acknowledged from its own task (bench/brokers.py's "acks batched" case);
* ``sagas``: 2,000 three-step sagas, 100 in flight, on the embedded default (SQLite
  file + in-memory broker; bench/sagas.py's workflow).

Figures under a profiler are slower than the benchmarks'; read the shares, not the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAYLOAD = {"saga_id": "s-123", "step": "reserve", "attempt": 1, "data": {"amount": 42}}


async def profiled(work: Callable[[], Awaitable[int]], top: int) -> None:
    """Run ``work`` (it returns how many items it did) under cProfile and print."""
    profile = cProfile.Profile()
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    profile.enable()
    try:
        done = await work()
    finally:
        profile.disable()
        gc.enable()
    print(f"{done / (time.perf_counter() - started):,.0f} items/s under the profiler")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


async def kafka_publish(top: int) -> None:
    from brokers import KafkaBroker
    from tests.kafka_server import KafkaServer

    server = KafkaServer()
    server.start()
    try:
        broker = KafkaBroker(server.bootstrap)
        await broker.connect()
        await broker.publish_batch("p", [PAYLOAD] * 1000)  # topic made, leaders known

        async def work() -> int:
            for _ in range(100):
                await broker.publish_batch("p", [PAYLOAD] * 1000)
            return 100_000

        await profiled(work, top)
        await broker.disconnect()
    finally:
        server.cleanup()


async def redis_consume(top: int) -> None:
    from brokers import RedisStreamsBroker
    from tests.servers import RedisServer

    server = RedisServer()
    server.start()
    try:
        broker = RedisStreamsBroker(redis_url=server.url)
        await broker.connect()
        for _ in range(200):
            await broker.publish_batch("b", [PAYLOAD] * 100)

        async def work() -> int:
            acks: set[asyncio.Task[None]] = set()
            done = 0
            async for message in broker.consume("b", "g", batch_size=100):
                task = asyncio.ensure_future(broker.acknowledge(message))
                acks.add(task)
                task.add_done_callback(acks.discard)
                done += 1
                if done >= 20_000:
                    break
            await asyncio.gather(*acks)
            return done

        await profiled(work, top)
        await broker.disconnect()
    finally:
        server.cleanup()


async def sagas(top: int) -> None:
    from sagas import WORKFLOW, run_sagas

    from brokers import InMemoryBroker
    from eventstore import EventStore
    from orchestrator import Engine, EngineOptions

    with tempfile.TemporaryDirectory() as folder:
        store = await EventStore.open(f"sqlite:///{Path(folder) / 'profile.db'}")
        broker = InMemoryBroker()
        await broker.connect()
        options = EngineOptions(recover=False, intake=False)
        async with Engine(store, broker, [WORKFLOW], options=options) as engine:
            await run_sagas(engine, 50, 10)  # warm up

            async def work() -> int:
                await run_sagas(engine, 2000, 100)
                return 2000

            await profiled(work, top)
        await broker.disconnect()
        await store.close()


CASES: dict[str, Callable[[int], Awaitable[Any]]] = {
    "kafka-publish": kafka_publish,
    "redis-consume": redis_consume,
    "sagas": sagas,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--top", type=int, default=25, help="entries to print")
    args = parser.parse_args()
    asyncio.run(CASES[args.case](args.top))


if __name__ == "__main__":
    main()
