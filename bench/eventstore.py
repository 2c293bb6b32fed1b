"""Event-store throughput beside raw SQLAlchemy doing the same inserts and selects.

Run by hand:  python bench/eventstore.py [--backend sqlite|postgres|both] [--rounds 3]
                                        [--only TEXT: the cases whose name holds it]

Prints the median of each figure over the rounds, and the ratio to raw SQLAlchemy
(Core, same engine settings, same rows) measured in the same run:
- 1 event per append, sequential (raw: one INSERT + COMMIT per row)
- 1 event per append from 100 concurrent writers (raw: 100 tasks, one transaction per
  row, serialised on one connection as SQLite must)
- 100 events per append (raw: executemany of 100 rows per transaction)
- reads of a 10,000-event stream (raw: the same SELECT, rows fetched, no decoding; and
  the same with each row's data and metadata decoded, which any reader needs, the
  issue-16 baseline)

and the store again with its append-only trigger dropped, to show what the database's
check of every INSERT costs (the raw inserts keep it: they must extend the chains too).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from eventstore import LOG_GENESIS, NO_STREAM, EventStore, NewRecord, genesis_hash, log_link
from eventstore._schema import records

PAYLOAD = {"step": "charge_payment", "attempt": 1, "output": {"amount": 42.5, "ok": True}}
META = {"correlation_id": "c0ffee", "actor": "bench"}


def new(n: int) -> NewRecord:
    return NewRecord("event", "saga.step_succeeded", {**PAYLOAD, "n": n}, META)


class Run:
    def __init__(
        self, url_factory: Callable[[], Awaitable[str]], *, append_trigger: bool = True
    ) -> None:
        self.url_factory = url_factory
        self.append_trigger = append_trigger

    async def fresh(self) -> EventStore:
        store = await EventStore.open(await self.url_factory())
        if not self.append_trigger:  # what the database's append-only check costs
            drop = "DROP TRIGGER records_append_only"
            if store._dialect.name == "postgresql":
                drop += " ON records"
            async with store._engine.begin() as conn:
                await conn.exec_driver_sql(drop)
        return store


class RawChain:
    """Rows the raw baseline inserts: the store's own triggers insist that each extends
    the chains (next position, next version, linked hashes), so they are linked with
    fixed hashes; only the per-record SHA-256 of the store-wide link is computed."""

    def __init__(self) -> None:
        self.log = LOG_GENESIS

    def row(self, position: int, stream: str, version: int) -> dict[str, Any]:
        self.log = log_link(self.log, "1" * 64, position)
        return {
            "position": position,
            "stream_id": stream,
            "version": version,
            "kind": "event",
            "type": "saga.step_succeeded",
            "data": '{"n":1}',
            "metadata": "{}",
            "recorded_at": "2026-12-01T00:00:00.000000Z",
            "prev_hash": genesis_hash(stream) if version == 1 else "1" * 64,
            "hash": "1" * 64,
            "log_hash": self.log,
        }


async def store_sequential(run: Run, n: int = 2000) -> float:
    store = await run.fresh()
    start = time.perf_counter()
    for i in range(n):
        await store.append("seq", [new(i)], i)
    elapsed = time.perf_counter() - start
    await store.close()
    return n / elapsed


async def store_concurrent(run: Run, writers: int = 100, per_writer: int = 200) -> float:
    store = await run.fresh()

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await store.append(f"w{w}", [new(i)], i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    await store.close()
    return writers * per_writer / elapsed


async def store_batches(run: Run, calls: int = 200, size: int = 100) -> float:
    store = await run.fresh()
    start = time.perf_counter()
    for c in range(calls):
        await store.append("batch", [new(i) for i in range(size)], c * size)
    elapsed = time.perf_counter() - start
    await store.close()
    return calls * size / elapsed


async def store_reads(run: Run, n: int = 10_000, repeat: int = 5) -> float:
    store = await run.fresh()
    await store.append("big", [new(i) for i in range(n)], NO_STREAM)
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        got = await store.read_stream("big")
        rates.append(len(got) / (time.perf_counter() - start))
    await store.close()
    return statistics.median(rates)


async def raw_sequential(run: Run, n: int = 2000) -> float:
    store = await run.fresh()  # for its schema and engine settings only
    engine = store._engine
    chain = RawChain()
    start = time.perf_counter()
    for i in range(n):
        async with engine.begin() as conn:
            await conn.execute(records.insert(), [chain.row(i + 1, "seq", i + 1)])
    elapsed = time.perf_counter() - start
    await store.close()
    return n / elapsed


async def raw_concurrent(run: Run, writers: int = 100, per_writer: int = 200) -> float:
    store = await run.fresh()
    engine = store._engine
    lock = asyncio.Lock()
    counter = iter(range(1, writers * per_writer + 1))
    chain = RawChain()

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with lock, engine.begin() as conn:
                await conn.execute(records.insert(), [chain.row(next(counter), f"w{w}", i + 1)])

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    await store.close()
    return writers * per_writer / elapsed


async def raw_batches(run: Run, calls: int = 200, size: int = 100) -> float:
    store = await run.fresh()
    engine = store._engine
    chain = RawChain()
    start = time.perf_counter()
    for c in range(calls):
        rows = [chain.row(c * size + i + 1, "batch", c * size + i + 1) for i in range(size)]
        async with engine.begin() as conn:
            await conn.execute(records.insert(), rows)
    elapsed = time.perf_counter() - start
    await store.close()
    return calls * size / elapsed


async def raw_reads(run: Run, n: int = 10_000, repeat: int = 5, *, decode: bool = False) -> float:
    """The same SELECT through SQLAlchemy, rows fetched; with ``decode``, each row's data
    and metadata decoded too (what any reader needs)."""
    store = await run.fresh()
    await store.append("big", [new(i) for i in range(n)], NO_STREAM)
    query = select(*records.c).where(records.c.stream_id == "big").order_by(records.c.version)
    rates = []
    for _ in range(repeat):
        async with store._engine.connect() as conn:
            start = time.perf_counter()
            rows = (await conn.execute(query)).all()
            if decode:
                rows = [(orjson.loads(row.data), orjson.loads(row.metadata)) for row in rows]
            rates.append(len(rows) / (time.perf_counter() - start))
    await store.close()
    return statistics.median(rates)


async def raw_reads_decoded(run: Run) -> float:
    return await raw_reads(run, decode=True)


CASES = [
    ("append, 1 event/call, sequential", store_sequential, raw_sequential),
    ("append, 1 event/call, 100 concurrent writers", store_concurrent, raw_concurrent),
    ("append, 100 events/call", store_batches, raw_batches),
    ("read a 10,000-event stream", store_reads, raw_reads),
    ("read a 10,000-event stream, raw rows decoded", store_reads, raw_reads_decoded),
]


async def bench(name: str, run: Run, rounds: int, only: str = "") -> None:
    """Each case in rounds, the three variants taking turns within a round."""
    bare = Run(run.url_factory, append_trigger=False)
    print(f"\n== {name} (median of {rounds} rounds, events/s)")
    print(
        f"{'case':<48}{'eventstore':>12}{'raw SQLAlchemy':>16}{'ratio':>8}"
        f"{'no append trigger':>19}{'trigger cost':>14}"
    )
    for label, ours, raw in CASES:
        if only not in label:
            continue
        mine, base, untriggered = [], [], []
        for _ in range(rounds):
            mine.append(await ours(run))
            base.append(await raw(run))
            untriggered.append(await ours(bare))
        m, b, u = (statistics.median(x) for x in (mine, base, untriggered))
        print(f"{label:<48}{m:>12,.0f}{b:>16,.0f}{m / b:>8.2f}{u:>19,.0f}{1 - m / u:>14.1%}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="run the cases whose name holds this")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        tmp = Path(tempfile.mkdtemp(prefix="bench-es-"))
        counter = iter(range(10**6))

        async def sqlite_url() -> str:
            return f"sqlite:///{tmp / f'db{next(counter)}.sqlite'}"

        await bench("SQLite file (WAL, synchronous=FULL)", Run(sqlite_url), args.rounds, args.only)
    if args.backend in ("postgres", "both"):
        from tests.servers import PostgresServer

        server = PostgresServer()
        server.start()
        numbers = iter(range(10**6))

        async def pg_url() -> str:
            return server.create_database(f"bench_{next(numbers)}")

        try:
            await bench("PostgreSQL (local, fsync off)", Run(pg_url), args.rounds, args.only)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
