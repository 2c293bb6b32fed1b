"""PostgreSQL goes down (``pg_ctl stop -m immediate``) and comes back: the store fails
fast with ``StoreUnavailableError`` meanwhile, and afterwards carries on by itself, with
no new ``EventStore``: appends land exactly once, subscriptions resume where they were.

These tests take down a PostgreSQL of their own (commits waited for, so a crash keeps
every acknowledged one), never the session's shared server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from eventstore import (
    ConcurrencyError,
    EventStore,
    NewRecord,
    Record,
    StoreUnavailableError,
)
from tests.servers import PostgresServer

pytestmark = pytest.mark.postgres

_names = itertools.count(1)
HANG = 60.0  # a guard against hanging, never a measurement


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with PostgresServer(durable_commits=True) as server:
        yield server


@pytest.fixture
def server(own_server: PostgresServer) -> Iterator[PostgresServer]:
    """The module's server, running again after each test whatever the test did."""
    yield own_server
    if not own_server.running:
        own_server.start()


@pytest.fixture
def url(server: PostgresServer) -> str:
    return server.create_database(f"outage_{next(_names)}")


def ev(n: int) -> NewRecord:
    return NewRecord("event", "thing.happened", {"n": n})


async def until(check: Callable[[], bool], what: str, seconds: float = HANG) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        await asyncio.sleep(0.02)


async def kill(server: PostgresServer) -> None:
    await asyncio.to_thread(server.kill)


async def stop(server: PostgresServer, how: str) -> None:
    await asyncio.to_thread(server.kill if how == "crash" else server.shutdown)


async def start(server: PostgresServer) -> None:
    await asyncio.to_thread(server.start)


async def append_exactly_once(store: EventStore, stream: str, n: int, tally: Any) -> None:
    """Append record ``n`` at expected version ``n``, retrying (with backoff) after
    ``StoreUnavailableError`` at the same expected version, until it is in the stream.

    A ConcurrencyError is only allowed after an unavailable attempt, and must then show
    that attempt's record at version n + 1 (its COMMIT succeeded as the connection died).
    """
    delay, unavailable = 0.02, False
    while True:
        try:
            await store.append(stream, [ev(n)], n)
            tally["ok"] += 1
            return
        except StoreUnavailableError:
            tally["unavailable"] += 1
            unavailable = True
        except ConcurrencyError as exc:
            assert unavailable, f"{stream} at {n}: {exc}"
            assert exc.actual == n + 1, exc
            tally["committed_unseen"] += 1
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    while True:  # the record that COMMIT wrote must be ours
        try:
            record = (await store.read_stream(stream, n + 1, 1))[0]
            break
        except StoreUnavailableError:
            await asyncio.sleep(0.1)
    assert record.data == {"n": n}


async def test_concurrent_appends_across_a_crash_land_exactly_once(
    server: PostgresServer, url: str
) -> None:
    stores = [await EventStore.open(url) for _ in range(2)]  # as two processes
    streams, per_stream = 20, 30
    tally = {"ok": 0, "unavailable": 0, "committed_unseen": 0}

    async def writer(index: int) -> None:
        store = stores[index % 2]
        for n in range(per_stream):
            await append_exactly_once(store, f"w-{index}", n, tally)

    try:
        writers = asyncio.gather(*(writer(i) for i in range(streams)))
        await until(lambda: tally["ok"] >= streams * 5, "appends before the crash")
        await kill(server)
        await until(lambda: tally["unavailable"] >= streams, "appends failing while down")
        await start(server)
        await asyncio.wait_for(writers, HANG * 2)

        total = streams * per_stream
        everything = await stores[0].read_all(0, total + 10)
        assert [r.position for r in everything] == list(range(1, total + 1))  # no gap
        for index in range(streams):
            records = await stores[1].read_stream(f"w-{index}")
            assert [r.data["n"] for r in records] == list(range(per_stream))  # once each
        report = await stores[1].verify()
        assert report.ok and report.records_checked == total
        assert tally["ok"] + tally["committed_unseen"] == total
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize("how", ["crash", "clean shutdown"])
async def test_a_subscription_runs_through_an_outage_and_misses_nothing(
    server: PostgresServer, url: str, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.INFO, logger="eventstore")
    writer, reader = await EventStore.open(url), await EventStore.open(url)
    seen: dict[str, list[Record]] = {"own store": [], "other store": []}

    async def follow(store: EventStore, into: list[Record]) -> None:
        async for record in store.subscribe(
            0, batch_size=7, poll_interval=0.05, retry_delay=0.05, max_retry_delay=0.5
        ):
            into.append(record)

    def warnings(level: int, start: str) -> int:
        return sum(r.levelno == level and r.getMessage().startswith(start) for r in caplog.records)

    followers = [
        asyncio.create_task(follow(writer, seen["own store"])),
        asyncio.create_task(follow(reader, seen["other store"])),
    ]
    try:
        for n in range(30):
            await writer.append(f"s-{n % 3}", [ev(n)], "any")
        await until(lambda: all(len(s) == 30 for s in seen.values()), "history delivered")

        await stop(server, how)
        await until(
            lambda: warnings(logging.WARNING, "subscription after position 30") == 2,
            "both subscriptions noticing the outage",
        )
        await start(server)
        for n in range(30, 60):  # the first append after the restart must work
            await writer.append(f"s-{n % 3}", [ev(n)], "any")
        await until(lambda: all(len(s) == 60 for s in seen.values()), "delivery after restart")

        everything = await reader.read_all(0, 100)
        assert [r.position for r in everything] == list(range(1, 61))
        for records in seen.values():
            assert records == everything  # in order, each once, nothing skipped
        assert not any(task.done() for task in followers)  # still running
        # one warning per subscription for the whole outage, and one info on resuming
        assert warnings(logging.WARNING, "subscription after position") == 2
        assert warnings(logging.INFO, "subscription resumed after") == 2
    finally:
        for task in followers:
            task.cancel()
        done, _ = await asyncio.wait(followers, timeout=HANG)
        assert len(done) == 2, "cancellation must end a subscription"
        await writer.close()
        await reader.close()


async def test_while_down_everything_fails_fast_and_health_says_so(
    server: PostgresServer, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventstore")
    store = await EventStore.open(url)
    other = await EventStore.open(url)
    try:
        await store.append("a", [ev(0)], "no_stream")
        healthy = await store.health()
        assert healthy["status"] == "ok" and healthy["error"] is None

        await kill(server)
        down = await asyncio.wait_for(store.health(), HANG)
        assert down["status"] == "unavailable" and down["error"]
        assert down["latency_ms"] >= 0

        operations: dict[str, Callable[[], Awaitable[Any]]] = {
            "append to 'a'": lambda: store.append("a", [ev(1)], 1),
            "read_stream('a')": lambda: store.read_stream("a"),
            "read_all": lambda: store.read_all(0),
            "last_position": store.last_position,
            "stream_version('a')": lambda: store.stream_version("a"),
            "streams": store.streams,
            "verify": store.verify,
        }
        for name, operation in operations.items():
            with pytest.raises(StoreUnavailableError) as caught:
                await asyncio.wait_for(operation(), HANG)
            assert caught.value.operation == name
            assert caught.value.__cause__ is not None

        # appends queued together all fail promptly, none left waiting
        queued = await asyncio.wait_for(
            asyncio.gather(
                *(store.append(f"q-{i}", [ev(i)], "no_stream") for i in range(50)),
                return_exceptions=True,
            ),
            HANG,
        )
        assert all(isinstance(outcome, StoreUnavailableError) for outcome in queued)
        assert all("nothing was written" in str(outcome) for outcome in queued)

        with pytest.raises(StoreUnavailableError, match="opening the event store"):
            await asyncio.wait_for(EventStore.open(url), HANG)
        await asyncio.wait_for(other.close(), HANG)  # closing while down neither hangs

        await start(server)
        assert (await store.health())["status"] == "ok"
        result = await store.append("a", [ev(1)], 1)  # the writer reconnected by itself
        assert result.last_version == 2
        assert [r.data["n"] for r in await store.read_stream("a")] == [0, 1]
        assert (await store.verify()).ok
        said = [r.getMessage() for r in caplog.records if r.name == "eventstore"]
        assert sum(m.startswith("event store appends failing") for m in said) == 1
        assert sum(m.startswith("event store appends resumed") for m in said) == 1
    finally:
        await store.close()
        await other.close()


async def test_after_a_restart_the_first_operations_all_work(
    server: PostgresServer, url: str
) -> None:
    """The report: a restart while the store was idle leaves every pooled connection and
    the writer's own dead; none of them may fail an operation once the server is back."""
    store = await EventStore.open(url)
    try:
        await store.append("a", [ev(0)], "no_stream")  # the writer holds its connection
        await asyncio.gather(*(store.read_all(0) for _ in range(12)))  # the pool fills
        await kill(server)
        await start(server)  # and nothing ran in between
        appended = asyncio.create_task(store.append("a", [ev(1)], 1))
        health = asyncio.create_task(store.health())
        reads = await asyncio.gather(*(store.read_all(0) for _ in range(12)), store.streams())
        assert (await appended).last_version == 2
        assert (await health)["status"] == "ok"
        assert all(reads)
    finally:
        await store.close()
