"""Group membership: which partitions each consume loop with ``on_assigned`` holds.

The contract runs on every backend (Kafka: the topic's real partitions; Redis and the
in-memory broker: leased virtual ones); how a dead member's leases lapse is the lease
backends' alone. Every wait polls a condition up to a deadline (Kafka rebalances take
seconds); nothing sleeps a fixed time and asserts.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from brokers import (
    Assignment,
    Broker,
    BrokerConnectionError,
    CircuitBreakerPolicy,
    ConsumerOptions,
    InMemoryBroker,
    RedisStreamsBroker,
)
from brokers._leases import LeaseTable
from brokers._membership import crc32_partitioner
from brokers._redis_layout import members_key, text
from tests.brokers.conftest import Backend, take
from tests.servers import RedisServer

TTL = 1.0
PARTITIONS = 8
OPTIONS = ConsumerOptions(
    visibility_timeout=0.3,
    block_time=0.05,
    membership_ttl=TTL,
    membership_partitions=PARTITIONS,
)
LEASE_BACKENDS = pytest.mark.parametrize("backend", ["memory", "redis"], indirect=True)
KEYS = [f"saga-{i}" for i in range(200)]


class Loop:
    """A consume loop of ``group`` on ``topic`` that records every assignment, and
    every partition it was told it holds while a running ``peer`` held it too."""

    def __init__(
        self, broker: Broker, topic: str, group: str, name: str, peers: Sequence[Loop] = ()
    ) -> None:
        self.broker = broker
        self.name = name
        self.peers = list(peers)
        self.assignments: list[Assignment] = []
        self.overlaps: set[int] = set()
        self.task = asyncio.create_task(self._run(topic, group))

    async def _on_assigned(self, assignment: Assignment) -> None:
        for peer in self.peers:
            if not peer.task.done():
                self.overlaps |= assignment.partitions & peer.held
        self.assignments.append(assignment)

    async def _run(self, topic: str, group: str) -> None:
        async for message in self.broker.consume(
            topic, group, consumer=self.name, on_assigned=self._on_assigned
        ):
            await self.broker.acknowledge(message)

    @property
    def last(self) -> Assignment | None:
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            raise AssertionError(f"loop {self.name} failed") from self.task.exception()
        return self.assignments[-1] if self.assignments else None

    @property
    def held(self) -> frozenset[int]:
        return frozenset() if self.last is None else self.last.partitions

    def holds_all(self) -> bool:
        last = self.last
        return last is not None and last.partitions == frozenset(range(last.count))

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.exception()  # ended by a disconnect: retrieved, not logged


async def until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while not check():  # noqa: ASYNC110 (polls what other tasks change)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


def split_settled(a: Loop, b: Loop) -> bool:
    if a.last is None or b.last is None:
        return False
    everything = frozenset(range(a.last.count))
    return (
        not a.held & b.held
        and a.held | b.held == everything
        and bool(a.held)
        and bool(b.held)
        and not a.task.done()
        and not b.task.done()
    )


def is_lease_backend(backend: Backend) -> bool:
    return backend.name in ("memory", "redis")


def topic_name() -> str:
    return f"members-{uuid.uuid4().hex[:8]}"


async def start_pair(backend: Backend) -> tuple[Broker, str, Loop, Loop]:
    """Two loops of group ``g`` on one broker, once they have split the partitions."""
    broker = await backend.make(consumer_options=OPTIONS)
    topic = topic_name()
    a = Loop(broker, topic, "g", "a")
    await until(a.holds_all, "a alone holds every partition")
    b = Loop(broker, topic, "g", "b", peers=[a])
    a.peers.append(b)
    await until(lambda: split_settled(a, b), "a and b split the partitions")
    return broker, topic, a, b


async def test_one_loop_alone_holds_every_partition(backend: Backend) -> None:
    broker = await backend.make(consumer_options=OPTIONS)
    topic = topic_name()
    loop = Loop(broker, topic, "g", "a")
    await until(loop.holds_all, "the only loop holds every partition")
    assignment = loop.last
    assert assignment is not None
    assert (assignment.topic, assignment.group) == (topic, "g")
    assert assignment.count >= 1
    for key in KEYS:
        partition = assignment.partitioner(key, assignment.count)
        assert 0 <= partition < assignment.count
        assert assignment.owns(key)
    if is_lease_backend(backend):
        assert assignment.count == PARTITIONS
        assert assignment.partitioner is crc32_partitioner
    await loop.stop()


async def test_two_loops_hold_disjoint_sets_covering_every_partition(backend: Backend) -> None:
    _, _, a, b = await start_pair(backend)
    # Called once at first, even with nothing to hold yet (a held everything).
    assert b.assignments
    if is_lease_backend(backend):
        assert b.assignments[0].partitions == frozenset()
        # A shrink is reported before the lease is released, a gain after it is taken.
        assert a.overlaps == b.overlaps == set()
    last_a, last_b = a.last, b.last
    assert last_a is not None and last_b is not None
    for key in KEYS:
        partition = last_a.partitioner(key, last_a.count)
        assert last_a.owns(key) is (partition in a.held)
        assert last_b.owns(key) is (partition in b.held)
        assert last_a.owns(key) is not last_b.owns(key)
    await a.stop()
    await b.stop()


async def test_the_broker_names_who_holds_each_partition(backend: Backend) -> None:
    broker, topic, a, b = await start_pair(backend)

    async def settled() -> bool:
        holders = await broker.get_partition_holders(topic, "g")
        by_member: dict[str, set[int]] = {}
        for partition, member in holders.items():
            by_member.setdefault(member, set()).add(partition)
        return sorted(map(frozenset, by_member.values()), key=sorted) == sorted(
            [a.held, b.held], key=sorted
        )

    async with asyncio.timeout(30):  # the loops' own view settles first
        while not await settled():  # noqa: ASYNC110 (polls the broker)
            await asyncio.sleep(0.05)
    holders = await broker.get_partition_holders(topic, "g")
    if is_lease_backend(backend):
        names = {holders[p].split("#")[0] for p in a.held} | {
            holders[p].split("#")[0] + "'" for p in b.held
        }
        assert names == {"a", "b'"}  # each loop by its consumer name
    await a.stop()
    await b.stop()
    assert await broker.get_partition_holders(topic_name(), "nobody") == {}


async def test_a_loop_that_ends_hands_its_partitions_over_at_once(backend: Backend) -> None:
    broker, topic, a, b = await start_pair(backend)
    await b.stop()
    if is_lease_backend(backend):
        # Released on the way out, not left to expire: nothing of b's is left.
        holders, members = await lease_state(broker, topic, "g")
        assert not [m for m in holders.values() if m.startswith("b#")]
        assert not [m for m in members if m.startswith("b#")]
    await until(a.holds_all, "the survivor holds every partition")
    if is_lease_backend(backend):
        assert a.overlaps == b.overlaps == set()
    await a.stop()


@LEASE_BACKENDS
async def test_a_member_that_stops_renewing_loses_its_partitions(backend: Backend) -> None:
    broker, topic, a, b = await start_pair(backend)
    # b's process "dies": its renewals stop, nothing is released.
    [renewer] = [
        t for t in asyncio.all_tasks() if t.get_name().startswith(f"membership:{topic}/g/b#")
    ]
    renewer.cancel()
    await asyncio.wait([renewer])
    await until(a.holds_all, "the survivor holds every partition after the leases lapse")
    holders, _ = await lease_state(broker, topic, "g")
    assert set(holders) == set(range(PARTITIONS))
    assert all(m.startswith("a#") for m in holders.values())
    await a.stop()
    await b.stop()


async def test_consume_without_on_assigned_registers_nothing(backend: Backend) -> None:
    broker = await backend.make(consumer_options=OPTIONS)
    topic = topic_name()
    ids = await broker.publish_batch(topic, [{"i": i} for i in range(3)])
    got = await take(broker, topic, "g", 3)
    assert [m.id for m in got] == ids
    if isinstance(broker, InMemoryBroker):
        assert broker._leases == {}
    if isinstance(broker, RedisStreamsBroker):
        assert await broker._redis.keys(f"{topic}:lease:*") == []
        assert not await broker._redis.exists(members_key(topic, "g"))


class _Flaky:
    """A lease table whose every step fails while ``down`` is set (a lost server)."""

    def __init__(self, inner: LeaseTable) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BrokerConnectionError("server unreachable (test)")

    async def refresh(
        self, member: str, held: Sequence[int], ttl: float
    ) -> tuple[frozenset[int], int]:
        self._check()
        return await self.inner.refresh(member, held, ttl)

    async def acquire(
        self, member: str, candidates: Sequence[int], want: int, ttl: float
    ) -> frozenset[int]:
        self._check()
        return await self.inner.acquire(member, candidates, want, ttl)

    async def release(self, member: str, partitions: Sequence[int], *, leave: bool) -> None:
        self._check()
        await self.inner.release(member, partitions, leave=leave)

    async def holders(self, count: int) -> dict[int, str]:
        self._check()
        return await self.inner.holders(count)


async def test_failing_renewals_keep_the_loop_then_empty_it_then_recover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = InMemoryBroker(consumer_options=OPTIONS)
    await broker.connect()
    flaky = _Flaky(broker._lease_table("t", "g"))
    monkeypatch.setattr(broker, "_lease_table", lambda topic, group: flaky)
    loop = Loop(broker, "t", "g", "a")
    await until(loop.holds_all, "the loop holds every partition")
    flaky.down = True
    await until(lambda: loop.held == frozenset(), "the loop reports it holds nothing")
    assert not loop.task.done()
    flaky.down = False
    await until(loop.holds_all, "the loop holds every partition again")
    await loop.stop()
    await broker.disconnect()


async def test_redis_outage_empties_the_assignment_and_recovery_refills_it() -> None:
    server = RedisServer()
    server.start()
    policy = CircuitBreakerPolicy(
        failure_threshold=3, reset_timeout=0.2, reconnect_base_delay=0.02, reconnect_max_delay=0.1
    )
    broker = RedisStreamsBroker(
        redis_url=server.url, consumer_options=OPTIONS, circuit=policy, socket_connect_timeout=1.0
    )
    try:
        await broker.connect()
        loop = Loop(broker, "t", "g", "a")
        await until(loop.holds_all, "the loop holds every partition")
        server.stop()
        await until(lambda: loop.held == frozenset(), "the loop reports it holds nothing")
        assert not loop.task.done()
        server.start()  # empty: the leases, the group and the stream are all gone
        await until(loop.holds_all, "the loop holds every partition again")
        await loop.stop()
    finally:
        await broker.disconnect()
        server.cleanup()


@LEASE_BACKENDS
async def test_disconnect_releases_the_leases_of_running_loops(backend: Backend) -> None:
    broker, topic, a, b = await start_pair(backend)
    # In memory the state outlives the connection; Redis is looked at from elsewhere.
    observer = broker if isinstance(broker, InMemoryBroker) else await backend.make()
    await broker.disconnect()
    holders, members = await lease_state(observer, topic, "g")
    assert (holders, members) == ({}, [])
    await a.stop()
    await b.stop()


# -- a real process killed with SIGKILL (Redis) ----------------------------------------

DOOMED = """
import asyncio, sys
from brokers import ConsumerOptions, RedisStreamsBroker

async def main():
    options = ConsumerOptions(block_time=0.05, membership_ttl={ttl}, membership_partitions={n})
    broker = RedisStreamsBroker(redis_url=sys.argv[1], consumer_options=options)
    await broker.connect()

    async def on_assigned(assignment):
        print(len(assignment.partitions), flush=True)

    async for message in broker.consume(sys.argv[2], "g", consumer="doomed",
                                        on_assigned=on_assigned):
        await broker.acknowledge(message)

asyncio.run(main())
"""


async def test_redis_partitions_of_a_killed_process_move_to_the_survivor(
    redis_url: str,
) -> None:
    topic = topic_name()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DOOMED.format(ttl=TTL, n=PARTITIONS),
        redis_url,
        topic,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    broker = RedisStreamsBroker(redis_url=redis_url, consumer_options=OPTIONS)
    await broker.connect()
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) != f"{PARTITIONS}\n".encode():
                assert line, "the process ended before it held every partition"
        survivor = Loop(broker, topic, "g", "survivor")
        await until(lambda: len(survivor.held) == PARTITIONS // 2, "the survivor gets half")
        proc.kill()
        await proc.wait()
        await until(survivor.holds_all, "the survivor holds every partition")
        await survivor.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await broker.disconnect()


# -- helpers that read the lease backends' state ----------------------------------------


async def lease_state(broker: Broker, topic: str, group: str) -> tuple[dict[int, str], list[str]]:
    """Who holds which lease, and which members are registered."""
    holders = await broker._lease_table(topic, group).holders(PARTITIONS)
    if isinstance(broker, InMemoryBroker):
        return holders, list(broker._leases[(topic, group)].members)
    assert isinstance(broker, RedisStreamsBroker)
    members = await broker._redis.zrange(members_key(topic, group), 0, -1)
    return holders, [text(m) for m in members]
