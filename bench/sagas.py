"""Saga throughput and latency, on the embedded default and on Redis + SQLite.

Run by hand:  python bench/sagas.py [--backend embedded|redis|both] [--sagas 3000]

A 3-step saga (reserve → charge (pivot) → ship), every step a trivial function, so what
is measured is the engine: four appends to the event store (group commit), six broker
messages, the pure core. Prints sagas/s with 1 and with 100 sagas in flight, and p50 /
p95 latency of a saga running alone; medians over the rounds. The reference in the same
run is the store alone: the same four appends per saga with no broker and no core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brokers import Broker, ConsumerOptions, InMemoryBroker, RedisStreamsBroker
from eventstore import NO_STREAM, EventStore, NewRecord
from orchestrator import Engine, EngineOptions, RetryPolicy, WorkflowBuilder

three = WorkflowBuilder("bench_three")


def release(data: dict[str, Any]) -> None:
    return None


@three.step(compensation=release, retry=RetryPolicy(max_attempts=1))
def reserve(data: dict[str, Any]) -> dict[str, Any]:
    return {"reserved": True}


@three.step(after=[reserve], kind="pivot", retry=RetryPolicy(max_attempts=1))
def charge(data: dict[str, Any]) -> dict[str, Any]:
    return {"charged": 10}


@three.step(after=[charge], kind="retriable")
def ship(data: dict[str, Any]) -> dict[str, Any]:
    return {"shipped": True}


WORKFLOW = three.build()


async def run_sagas(engine: Engine, count: int, in_flight: int) -> tuple[float, list[float]]:
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with slots:
            began = time.perf_counter()
            saga_id = await engine.start_saga("bench_three", {"n": n})
            state = await engine.wait(saga_id, timeout=120)
            assert state.status == "completed", state.status
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - began), latencies


async def store_only(url: str, count: int, in_flight: int) -> float:
    """The same appends per saga (1 start of 3 records, 3 of 2), no broker, no core."""
    store = await EventStore.open(url)
    slots = asyncio.Semaphore(in_flight)
    record = NewRecord("event", "bench", {"step": "x", "attempt": 1, "output": {"ok": True}})

    async def one(n: int) -> None:
        async with slots:
            stream = f"ref-{n}"
            await store.append(stream, [record] * 3, NO_STREAM)
            for v in (3, 5, 7):
                await store.append(stream, [record] * 2, v)

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    rate = count / (time.perf_counter() - began)
    await store.close()
    return rate


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(name: str, url_of: Any, make_broker: Any, sagas: int, rounds: int) -> None:
    rows: dict[str, list[float]] = {
        "1 in flight": [],
        "100 in flight": [],
        "p50 ms": [],
        "p95 ms": [],
        "store alone, 100 in flight": [],
    }
    for _ in range(rounds):
        store = await EventStore.open(url_of())
        broker: Broker = make_broker()
        await broker.connect()
        async with Engine(
            store, broker, [WORKFLOW], options=EngineOptions(recover=False, intake=False)
        ) as engine:
            await run_sagas(engine, 50, 10)  # warm up
            alone, latencies = await run_sagas(engine, max(200, sagas // 10), 1)
            crowd, _ = await run_sagas(engine, sagas, 100)
        await broker.disconnect()
        await store.close()
        rows["1 in flight"].append(alone)
        rows["100 in flight"].append(crowd)
        rows["p50 ms"].append(pct(latencies, 0.5))
        rows["p95 ms"].append(pct(latencies, 0.95))
        rows["store alone, 100 in flight"].append(await store_only(url_of(), sagas, 100))
    print(f"\n== {name}: 3-step sagas (median of {rounds} rounds)")
    for label, values in rows.items():
        unit = "" if "ms" in label else " sagas/s"
        print(f"{label:<32}{statistics.median(values):>12,.2f}{unit}")
    ratio = statistics.median(rows["100 in flight"]) / statistics.median(
        rows["store alone, 100 in flight"]
    )
    print(f"{'engine / store alone':<32}{ratio:>12.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", "redis", "both"], default="both")
    parser.add_argument("--sagas", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sagas-"))
    counter = iter(range(10**6))

    def sqlite_url() -> str:
        return f"sqlite:///{tmp / f'sagas{next(counter)}.db'}"

    if args.backend in ("embedded", "both"):
        await bench(
            "embedded default (SQLite file + in-memory broker)",
            sqlite_url,
            InMemoryBroker,
            args.sagas,
            args.rounds,
        )
    if args.backend in ("redis", "both"):
        from tests.servers import RedisServer

        server = RedisServer()
        server.start()
        fast = ConsumerOptions(block_time=0.05)
        try:
            await bench(
                "Redis Streams + SQLite file",
                sqlite_url,
                lambda: RedisStreamsBroker(redis_url=server.url, consumer_options=fast),
                args.sagas,
                args.rounds,
            )
        finally:
            server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
