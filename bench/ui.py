"""The dashboard on a big store: how long a saga's page and a page of the list take.

Run by hand:  python bench/ui.py [--sagas 100000] [--requests 30] [--store PATH]

Fills a SQLite file (synchronous=FULL, as the engine runs it) with ``--sagas``
completed sagas of the shipped ``order_fulfilment`` workflow, ten records each, the
core's own (``simulate`` with every step succeeding); the file is kept and reused by the
next run. Then serves the dashboard over it, read-only, and times, over HTTP from
another thread, a saga's page (read its stream, verify it with its neighbours in the
log, fold it, lay out its DAG) and the first page of the list, and prints the medians
and p95s beside the raw ``read_stream`` of the same saga. The time to build the list's
index (a few records per saga, once, in the background) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventstore import NO_STREAM, EventStore
from orchestrator.cli.ui_command import serve_ui
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.saga_log import stream_of, to_record
from orchestrator.runtime.settings import UiSettings
from orchestrator.testing import simulate

ROOT = Path(__file__).resolve().parents[1]
ORDER = {
    "order_id": "o-1",
    "sku": "widget",
    "quantity": 1,
    "card": "4242424242424242",
    "address": "1 Main St",
}


async def fill(url: str, workflow: object, sagas: int) -> None:
    store = await EventStore.open(url)
    try:
        have = len(await store.streams("saga-", limit=sagas))
        if have >= sagas:
            print(f"store holds {have:,} sagas already")
            return
        print(f"writing {sagas - have:,} sagas …", flush=True)
        began = time.perf_counter()

        async def one(n: int) -> None:
            saga_id = f"bench-{n:07d}"
            trace = simulate(
                workflow,  # type: ignore[arg-type]
                random.Random(n),
                saga_id=saga_id,
                input={**ORDER, "order_id": saga_id},
                chaos_actions=0,
            )
            records = [to_record(m) for m in trace.log]
            await store.append(stream_of(saga_id), records, NO_STREAM)

        for start in range(have, sagas, 200):
            await asyncio.gather(*(one(n) for n in range(start, min(start + 200, sagas))))
        print(f"… in {time.perf_counter() - began:.0f} s")
    finally:
        await store.close()


def get(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        response.read()
    return (time.perf_counter() - began) * 1000


def summary(label: str, values: list[float]) -> None:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(f"{label:<44}{statistics.median(values):>10.1f} ms  p95 {p95:>8.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "bench-ui")
    args = parser.parse_args()
    workflows = load_workflows(ROOT / "workflows")
    wf = workflows["order_fulfilment"]
    path = args.store.with_suffix(f".{args.sagas}.sqlite")
    url = f"sqlite:///{path}"
    await fill(url, wf, args.sagas)
    store = await EventStore.open(url, read_only=True)
    running = await serve_ui(UiSettings(port=0), store, workflows)
    try:
        began = time.perf_counter()
        running.index.wake()
        await running.index.caught_up.wait()
        indexed = time.perf_counter() - began
        print(f"\n== the dashboard over {len(running.index):,} sagas (median of {args.requests})")
        print(f"{'building the list index (once, background)':<44}{indexed * 1000:>10.1f} ms")
        rng = random.Random(7)
        picks = [f"bench-{rng.randrange(args.sagas):07d}" for _ in range(args.requests)]
        pages = [await asyncio.to_thread(get, f"{running.url}sagas/{p}") for p in picks]
        summary("a saga's page (GET /sagas/<id>)", pages)
        raw = []
        for saga_id in picks:
            t0 = time.perf_counter()
            await store.read_stream(stream_of(saga_id))
            raw.append((time.perf_counter() - t0) * 1000)
        summary("  the raw read_stream of the same saga", raw)
        lists = [await asyncio.to_thread(get, running.url) for _ in range(args.requests)]
        summary("the list, first page of 50 (GET /)", lists)
        filtered = [
            await asyncio.to_thread(get, f"{running.url}?status=completed&offset=50000")
            for _ in range(args.requests)
        ]
        summary("the list, filtered, page 1,001", filtered)
    finally:
        await running.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
