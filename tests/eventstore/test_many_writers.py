"""Several store instances on one database, as several processes would be: the chain
never forks, stale head caches are caught, and a live subscriber never skips a position."""

from __future__ import annotations

import asyncio

from eventstore import ANY, NO_STREAM, ConcurrencyError, EventStore, NewRecord


def ev(n: int) -> NewRecord:
    return NewRecord("event", "thing.happened", {"n": n})


async def test_fifty_writers_across_instances_at_one_version(shared_url: str) -> None:
    stores = [await EventStore.open(shared_url) for _ in range(5)]
    try:
        await stores[0].append("contended", [ev(0)], NO_STREAM)
        outcomes = await asyncio.gather(
            *(stores[i % 5].append("contended", [ev(i)], 1) for i in range(50)),
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert sum(isinstance(o, ConcurrencyError) for o in outcomes) == 49
        assert await stores[3].stream_version("contended") == 2
        assert (await stores[4].verify()).ok
    finally:
        for store in stores:
            await store.close()


async def test_a_stale_head_cache_is_caught_by_the_database(shared_url: str) -> None:
    first, second = await EventStore.open(shared_url), await EventStore.open(shared_url)
    try:
        await first.append("s", [ev(1)], NO_STREAM)  # first caches head 1
        await second.append("s", [ev(2)], 1)  # the stream moves on behind first's back
        # first's cache says 1; the exact expected version 2 is right and must succeed
        await first.append("s", [ev(3)], 2)
        # "any" from second, whose cache says 2, must land at 4, linked to 3
        result = await second.append("s", [ev(4)], ANY)
        assert result.last_version == 4
        caught = None
        try:
            await first.append("s", [ev(5)], 3)
        except ConcurrencyError as exc:
            caught = exc
        assert caught is not None and caught.actual == 4
        assert [r.data["n"] for r in await first.read_stream("s")] == [1, 2, 3, 4]
        assert (await first.verify()).ok
    finally:
        await first.close()
        await second.close()


async def test_live_subscriber_never_skips_a_position_while_writers_race(
    shared_url: str,
) -> None:
    writers = [await EventStore.open(shared_url) for _ in range(4)]
    reader = await EventStore.open(shared_url)
    total = 4 * 10 * 20
    seen: list[int] = []

    async def follow() -> None:
        async for record in reader.subscribe(0, batch_size=50, poll_interval=0.01):
            seen.append(record.position)
            if len(seen) == total:
                return

    async def write(store: EventStore, w: int) -> None:
        async def one_stream(s: int) -> None:
            for n in range(20):
                await store.append(f"w{w}-s{s}", [ev(n)], n)

        await asyncio.gather(*(one_stream(s) for s in range(10)))

    try:
        follower = asyncio.create_task(follow())
        await asyncio.gather(*(write(store, w) for w, store in enumerate(writers)))
        await asyncio.wait_for(follower, 30)
        assert seen == sorted(seen) and len(set(seen)) == total
        everything = [r.position for r in await reader.read_all(0, total + 10)]
        assert seen == everything
        assert (await reader.verify()).ok
    finally:
        for store in [*writers, reader]:
            await store.close()
