"""What the store-wide chain (``log_hash``) costs an append, measured in one run.

Run by hand:  python bench/chain_cost.py [--backend sqlite|postgres|both] [--rounds 5]

Three writers take turns, round after round, on fresh stores without the append-only
trigger (bench/eventstore.py measures that one):

- ``hashed``:   the store as it is, every record's ``log_hash`` computed;
- ``constant``: the same 64 characters stored, no SHA-256 computed;
- ``empty``:    nothing stored in ``log_hash``, nothing computed (the store before it).

``hashed`` against ``empty`` is the link's whole cost: the hash and the column. The
writer's link function is swapped for the two others, which only a benchmark may do.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eventstore._writer as writer
from eventstore import EventStore, NewRecord

PAYLOAD = {"step": "charge_payment", "attempt": 1, "output": {"amount": 42.5, "ok": True}}
META = {"correlation_id": "c0ffee", "actor": "bench"}
LINKS: dict[str, Callable[[str, str, int], str]] = {
    "hashed": writer.log_link,
    "constant": lambda prev, hash_, position: "a" * 64,
    "empty": lambda prev, hash_, position: "",
}


def new(n: int) -> NewRecord:
    return NewRecord("event", "saga.step_succeeded", {**PAYLOAD, "n": n}, META)


async def batches(store: EventStore) -> float:
    start = time.perf_counter()
    for c in range(200):
        await store.append("batch", [new(i) for i in range(100)], c * 100)
    return 20_000 / (time.perf_counter() - start)


async def concurrent(store: EventStore) -> float:
    async def write(w: int) -> None:
        for i in range(200):
            await store.append(f"w{w}", [new(i)], i)

    start = time.perf_counter()
    await asyncio.gather(*(write(w) for w in range(100)))
    return 20_000 / (time.perf_counter() - start)


CASES = [("append, 100 events/call", batches), ("append, 100 concurrent writers", concurrent)]


async def once(url: str, link: str, case: Callable[[EventStore], Awaitable[float]]) -> float:
    writer.log_link = LINKS[link]  # type: ignore[assignment]
    store = await EventStore.open(url)
    try:
        drop = "DROP TRIGGER records_append_only"
        async with store._engine.begin() as conn:
            await conn.exec_driver_sql(
                drop + (" ON records" if store._dialect.name == "postgresql" else "")
            )
        return await case(store)
    finally:
        await store.close()
        writer.log_link = LINKS["hashed"]  # type: ignore[assignment]


async def bench(name: str, fresh_url: Callable[[], str], rounds: int) -> None:
    print(f"\n== {name} (median of {rounds} rounds, events/s)")
    print(
        f"{'case':<34}{'hashed':>9}{'constant':>10}{'empty':>9}{'hash':>8}{'column':>8}{'link':>8}"
    )
    for label, case in CASES:
        rates: dict[str, list[float]] = {link: [] for link in LINKS}
        for _ in range(rounds):
            for link in LINKS:
                rates[link].append(await once(fresh_url(), link, case))
        h, c, e = (statistics.median(rates[link]) for link in LINKS)
        print(
            f"{label:<34}{h:>9,.0f}{c:>10,.0f}{e:>9,.0f}"
            f"{1 - h / c:>8.1%}{1 - c / e:>8.1%}{1 - h / e:>8.1%}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    numbers = iter(range(10**6))
    if args.backend in ("sqlite", "both"):
        tmp = Path(tempfile.mkdtemp(prefix="bench-chain-"))
        await bench(
            "SQLite file", lambda: f"sqlite:///{tmp / f'db{next(numbers)}.sqlite'}", args.rounds
        )
    if args.backend in ("postgres", "both"):
        from tests.servers import PostgresServer

        server = PostgresServer()
        server.start()
        try:
            await bench(
                "PostgreSQL (local, fsync off)",
                lambda: server.create_database(f"chain_{next(numbers)}"),
                args.rounds,
            )
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
