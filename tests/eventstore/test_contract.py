"""The event store's contract, held on every backend."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    EventStore,
    NewRecord,
    StoreClosedError,
    genesis_hash,
)


def ev(n: int, type_: str = "thing.happened") -> NewRecord:
    return NewRecord("event", type_, {"n": n}, {"correlation_id": f"c-{n}"})


async def test_append_assigns_versions_positions_and_chains(store: EventStore) -> None:
    result = await store.append(
        "order-1", [ev(1), ev(2), NewRecord("command", "ship", {})], NO_STREAM
    )
    assert (result.first_version, result.last_version) == (1, 3)
    got = await store.read_stream("order-1")
    assert [r.version for r in got] == [1, 2, 3]
    assert [r.kind for r in got] == ["event", "event", "command"]
    assert got[0].data == {"n": 1} and got[0].metadata == {"correlation_id": "c-1"}
    assert got[0].prev_hash == genesis_hash("order-1")
    assert got[1].prev_hash == got[0].hash and got[2].prev_hash == got[1].hash
    assert [r.position for r in got] == list(range(result.first_position, result.last_position + 1))
    assert result.last_hash == got[-1].hash
    assert got[0].recorded_at.endswith("Z")


async def test_expected_version_exact_any_and_no_stream(store: EventStore) -> None:
    await store.append("s", [ev(1)], NO_STREAM)
    await store.append("s", [ev(2)], 1)
    await store.append("s", [ev(3)], ANY)
    assert await store.stream_version("s") == 3
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("s", [ev(4)], 2)
    assert caught.value.stream_id == "s"
    assert (caught.value.expected, caught.value.actual) == (2, 3)
    assert "'s'" in str(caught.value) and "2" in str(caught.value) and "3" in str(caught.value)
    with pytest.raises(ConcurrencyError):
        await store.append("s", [ev(4)], NO_STREAM)
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("new", [ev(1)], 5)
    assert caught.value.actual == 0
    assert await store.stream_version("s") == 3
    assert await store.stream_version("new") == 0


async def test_a_rejected_append_writes_nothing_and_spares_its_neighbours(
    store: EventStore,
) -> None:
    await store.append("a", [ev(1)], NO_STREAM)
    outcomes = await asyncio.gather(
        store.append("a", [ev(2), ev(3)], 7),  # wrong: the stream is at 1
        store.append("b", [ev(1), ev(2)], NO_STREAM),
        store.append("a", [ev(2)], 1),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ConcurrencyError)
    assert not isinstance(outcomes[1], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert [r.data["n"] for r in await store.read_stream("a")] == [1, 2]
    assert [r.data["n"] for r in await store.read_stream("b")] == [1, 2]


async def test_read_stream_from_a_version_and_with_a_limit(store: EventStore) -> None:
    await store.append("s", [ev(i) for i in range(1, 11)], NO_STREAM)
    assert [r.version for r in await store.read_stream("s", from_version=8)] == [8, 9, 10]
    assert [r.version for r in await store.read_stream("s", 3, limit=2)] == [3, 4]
    assert await store.read_stream("missing") == []


async def test_read_all_in_commit_order_from_a_position(store: EventStore) -> None:
    await store.append("x", [ev(1)], NO_STREAM)
    await store.append("y", [ev(2), ev(3)], NO_STREAM)
    await store.append("x", [ev(4)], 1)
    everything = await store.read_all()
    assert [(r.stream_id, r.data["n"]) for r in everything] == [
        ("x", 1),
        ("y", 2),
        ("y", 3),
        ("x", 4),
    ]
    positions = [r.position for r in everything]
    assert positions == sorted(positions) and len(set(positions)) == 4
    after = await store.read_all(after_position=positions[1], limit=10)
    assert [r.data["n"] for r in after] == [3, 4]
    assert [r.data["n"] for r in await store.read_all(0, limit=1)] == [1]
    assert await store.last_position() == positions[-1]


async def test_streams_lists_ids_by_prefix(store: EventStore) -> None:
    await store.append("saga-1", [ev(1), ev(2)], NO_STREAM)
    await store.append("saga-2", [ev(1)], NO_STREAM)
    await store.append("sagax_3", [ev(1)], NO_STREAM)
    await store.append("other", [ev(1)], NO_STREAM)
    await store.append("saga-1", [NewRecord("command", "finish", {})], 2)
    assert await store.streams("saga-") == [
        ("saga-1", 3, "finish"),
        ("saga-2", 1, "thing.happened"),
    ]
    assert [s.stream_id for s in await store.streams()] == ["other", "saga-1", "saga-2", "sagax_3"]
    page = await store.streams(after="saga-1", limit=1)
    assert [s.stream_id for s in page] == ["saga-2"]


async def test_read_all_and_subscribe_can_keep_only_some_types(store: EventStore) -> None:
    await store.append("a", [ev(1, "keep"), ev(2, "drop"), ev(3, "keep")], NO_STREAM)
    await store.append("b", [ev(4, "other")], NO_STREAM)
    assert [r.data["n"] for r in await store.read_all(types=["keep", "other"])] == [1, 3, 4]
    assert await store.read_all(types=[]) == []
    seen = []
    async for record in store.subscribe(0, types={"keep"}, batch_size=1, poll_interval=0.01):
        seen.append(record.data["n"])
        if len(seen) == 2:
            break
    assert seen == [1, 3]


async def test_subscription_catches_up_goes_live_and_resumes_without_gap(
    store: EventStore,
) -> None:
    await store.append("s", [ev(1), ev(2)], NO_STREAM)
    seen: list[int] = []
    positions: list[int] = []

    async def follow(after: int, until: int) -> None:
        async for record in store.subscribe(after, batch_size=2, poll_interval=0.05):
            seen.append(record.data["n"])
            positions.append(record.position)
            if record.data["n"] == until:
                return

    live = asyncio.create_task(follow(0, 5))
    await asyncio.sleep(0.05)
    for n in (3, 4, 5):
        await store.append("s", [ev(n)], n - 1)
    await asyncio.wait_for(live, 10)
    assert seen == [1, 2, 3, 4, 5]

    saved = positions[2]  # a consumer that stopped after n=3 resumes from its position
    await store.append("t", [ev(6)], NO_STREAM)
    seen.clear()
    await asyncio.wait_for(follow(saved, 6), 10)
    assert seen == [4, 5, 6]


async def test_group_commit_coalesces_concurrent_appends(store: EventStore) -> None:
    before = store.stats.transactions
    await asyncio.gather(*(store.append(f"s-{i}", [ev(i)], NO_STREAM) for i in range(300)))
    transactions = store.stats.transactions - before
    assert store.stats.appends >= 300
    assert transactions < 300 / 5, f"{transactions} transactions for 300 appends"
    assert (await store.verify()).ok


async def test_many_appends_to_one_stream_in_one_batch_keep_order(store: EventStore) -> None:
    await asyncio.gather(*(store.append("one", [ev(i)], ANY) for i in range(200)))
    got = await store.read_stream("one")
    assert [r.version for r in got] == list(range(1, 201))
    assert sorted(r.data["n"] for r in got) == list(range(200))
    assert (await store.verify("one")).ok


async def test_fifty_writers_at_the_same_version_exactly_one_wins(store: EventStore) -> None:
    await store.append("contended", [ev(0)], NO_STREAM)
    outcomes = await asyncio.gather(
        *(store.append("contended", [ev(i), ev(i)], 1) for i in range(1, 51)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
    assert len(winners) == 1 and len(losers) == 49
    assert all(e.actual == 3 for e in losers)
    assert await store.stream_version("contended") == 3
    assert (await store.verify()).ok


async def test_closed_store_refuses_appends_but_kept_what_it_accepted(store_url: str) -> None:
    store = await EventStore.open(store_url)
    tasks = [asyncio.create_task(store.append(f"s{i}", [ev(i)], NO_STREAM)) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    written = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, StoreClosedError) for r in results if isinstance(r, BaseException))
    with pytest.raises(StoreClosedError):
        await store.append("late", [ev(1)], NO_STREAM)
    if store_url.endswith(":memory:"):
        return
    reopened = await EventStore.open(store_url)
    try:
        assert len(await reopened.read_all(0, 1000)) == len(written)
    finally:
        await reopened.close()
