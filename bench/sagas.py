"""Saga throughput and latency, on the embedded default and on Redis + SQLite.

Run by hand:  python bench/sagas.py [--backend embedded|redis|both] [--sagas 3000]
                                    [--metrics off|on|both] [--tracing off|on|both]

A 3-step saga (reserve → charge (pivot) → ship), every step a trivial function, so what
is measured is the engine: four appends to the event store (group commit), six broker
messages, the pure core. Prints sagas/s with 1 and with 100 sagas in flight, and p50 /
p95 latency of a saga running alone; medians over the rounds. The reference in the same
run is the store alone: the same four appends per saga with no broker and no core, 100
sagas in flight, and one saga's four appends alone (p50: the floor of a saga alone).

``--metrics both`` runs every round twice, without and with Prometheus metrics
(``orchestrator.telemetry``: step, publish, delivery and append histograms observed, the
counters read by one scrape at the end of the round), in alternating order, and prints
what metrics cost: the ratio of the medians. ``--tracing both`` does the same for
OpenTelemetry spans (the SDK with a batch processor and an exporter that drops what it
is given: the spans are made, ended and handed over, not sent anywhere). Given both,
each round runs every combination, and each is compared with everything off.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from orchestrator.telemetry.metrics import Metrics
from orchestrator.telemetry.tracing import SagaTracing

Mode = tuple[bool, bool]
"""(metrics on, tracing on)."""

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


async def store_only(url: str, count: int, in_flight: int) -> tuple[float, list[float]]:
    """The same appends per saga (1 start of 3 records, 3 of 2), no broker, no core:
    sagas/s, and how long each saga's four appends took."""
    store = await EventStore.open(url)
    slots = asyncio.Semaphore(in_flight)
    record = NewRecord("event", "bench", {"step": "x", "attempt": 1, "output": {"ok": True}})
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with slots:
            began = time.perf_counter()
            stream = f"ref-{n}"
            await store.append(stream, [record] * 3, NO_STREAM)
            for v in (3, 5, 7):
                await store.append(stream, [record] * 2, v)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    rate = count / (time.perf_counter() - began)
    await store.close()
    return rate, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def dropping_tracing() -> tuple[SagaTracing, Any]:
    """Tracing through the SDK's batch processor to an exporter that drops the spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        exported = 0

        def export(self, spans: Any) -> SpanExportResult:
            Drop.exported += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return SagaTracing(provider), provider


async def engine_round(
    url: str, make_broker: Any, sagas: int, mode: Mode
) -> tuple[float, float, list[float]]:
    """One round: (sagas/s alone, sagas/s 100 in flight, latencies alone)."""
    metrics, traced = mode
    store = await EventStore.open(url)
    broker: Broker = make_broker()
    await broker.connect()
    observer = None
    if metrics:
        observer = Metrics(broker, workflows=[WORKFLOW.name], store_stats=store.stats)
    tracing, provider = dropping_tracing() if traced else (None, None)
    options = EngineOptions(recover=False, intake=False, observer=observer, tracing=tracing)
    engine = Engine(store, broker, [WORKFLOW], options=options)
    if observer is not None:
        observer.attach_engine(engine)
    async with engine:
        await run_sagas(engine, 50, 10)  # warm up
        alone, latencies = await run_sagas(engine, max(200, sagas // 10), 1)
        crowd, _ = await run_sagas(engine, sagas, 100)
        if observer is not None:
            assert b"sagaflow_sagas_completed_total" in await observer.render()
    await broker.disconnect()
    await store.close()
    if provider is not None:
        provider.shutdown()
    return alone, crowd, latencies


async def bench(
    name: str, url_of: Any, make_broker: Any, sagas: int, rounds: int, modes: list[Mode]
) -> None:
    rows: dict[str, list[float]] = {
        "1 in flight": [],
        "100 in flight": [],
        "p50 ms": [],
        "p95 ms": [],
        "store alone, 100 in flight": [],
        "store alone, p50 ms of one": [],
    }
    by_mode: dict[Mode, dict[str, list[float]]] = {
        mode: {"1 in flight": [], "100 in flight": []} for mode in modes
    }
    for n in range(rounds):
        # Alternate which goes first, so warming up (caches, the page cache) is fair.
        for mode in modes if n % 2 == 0 else modes[::-1]:
            alone, crowd, latencies = await engine_round(url_of(), make_broker, sagas, mode)
            by_mode[mode]["1 in flight"].append(alone)
            by_mode[mode]["100 in flight"].append(crowd)
            if mode == modes[0]:
                rows["1 in flight"].append(alone)
                rows["100 in flight"].append(crowd)
                rows["p50 ms"].append(pct(latencies, 0.5))
                rows["p95 ms"].append(pct(latencies, 0.95))
        rows["store alone, 100 in flight"].append((await store_only(url_of(), sagas, 100))[0])
        # The floor of a saga alone: its four appends, each a commit (synchronous=FULL).
        _, floor = await store_only(url_of(), max(200, sagas // 10), 1)
        rows["store alone, p50 ms of one"].append(pct(floor, 0.5))
    print(f"\n== {name}: 3-step sagas (median of {rounds} rounds, {describe(modes[0])})")
    for label, values in rows.items():
        unit = "" if "ms" in label else " sagas/s"
        print(f"{label:<32}{statistics.median(values):>12,.2f}{unit}")
    ratio = statistics.median(rows["100 in flight"]) / statistics.median(
        rows["store alone, 100 in flight"]
    )
    print(f"{'engine / store alone':<32}{ratio:>12.2f}")
    for mode in modes[1:]:
        for label in ("1 in flight", "100 in flight"):
            off = statistics.median(by_mode[modes[0]][label])
            on = statistics.median(by_mode[mode][label])
            print(
                f"{describe(mode) + ', ' + label:<40}{on:>12,.2f} sagas/s  "
                f"({describe(modes[0])} {off:,.2f}: cost {(1 - on / off) * 100:+.1f}%)"
            )


def describe(mode: Mode) -> str:
    on = [name for name, flag in zip(("metrics", "tracing"), mode, strict=True) if flag]
    return " + ".join(on) + " on" if on else "telemetry off"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", "redis", "both"], default="both")
    parser.add_argument("--sagas", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--metrics",
        choices=["off", "on", "both"],
        default="off",
        help="Prometheus metrics in the engine; both: each round twice, and their cost",
    )
    parser.add_argument(
        "--tracing",
        choices=["off", "on", "both"],
        default="off",
        help="OpenTelemetry spans in the engine (needs the [otel] extra); both: their cost",
    )
    args = parser.parse_args()
    flags = {"off": [False], "on": [True], "both": [False, True]}
    modes: list[Mode] = list(itertools.product(flags[args.metrics], flags[args.tracing]))
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
            modes,
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
                modes,
            )
        finally:
            server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
