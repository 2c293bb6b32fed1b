"""One ``consume`` loop's membership of a Kafka consumer group.

A member owns an ``AIOKafkaConsumer`` subscribed to the topic, its priority lanes and
its group's retry topic, a buffer of fetched records (:mod:`brokers.kafka.buffer`:
priority and publish order, due retries, records handed out again after
``visibility_timeout``) and an :class:`OffsetTracker` per partition. How partitions are
shared: :mod:`brokers.kafka.assignor`.

**Commits.** Acknowledgements move the trackers; a committer task of the member's own
commits every partition's contiguous acknowledged offset as soon as it moves (at most
every ``commit_interval``), whether or not the loop is fetching, and tries a failed
commit again until it goes through. Around a rebalance: the member commits when its
partitions are revoked, commits nothing more until the new assignment arrives (a commit
then could only fail and make the group rebalance again), then commits what it kept.

**A partition kept or regained.** A member keeps its tracker, buffer and position for
a partition it is assigned again, unless it was out of the group in between: a member
the group expelled (aiokafka resets its member id) forgets everything it had fetched,
and a kept partition whose committed offset another member moved past this member's
starts again from that offset, like any new holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from brokers._errors import BrokerError
from brokers._message import Delivery
from brokers.kafka.assignor import StickyInFlightAssignor
from brokers.kafka.buffer import Buffer, Held
from brokers.kafka.clients import KafkaIO, stop
from brokers.kafka.offsets import OffsetTracker

logger = logging.getLogger("brokers")

FetchCommitted = Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int | None]]]
"""The group's committed offsets of some partitions (``None``: nothing committed)."""

MAX_RETRY_DELAY = 1.0
"""The longest wait before a failed commit is tried again."""

CHECK_TIMEOUT = 2.0
"""The longest a new assignment waits for the group's committed offsets."""


def _expelled(consumer: AIOKafkaConsumer) -> bool:
    """Whether the group no longer knows this consumer: aiokafka resets its member id
    (to ``""``) before rejoining after a heartbeat or commit said it was unknown."""
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "member_id", None) == ""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: Member) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._member.revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._member.assigned(set(assigned))


class Member:
    """One consume loop of ``group`` on ``topic`` (see the module docstring)."""

    def __init__(
        self,
        token: str,
        name: str,
        group: str,
        main: str,
        retry: str,
        clock: Any,
        commit_interval: float,
        *,
        visibility_timeout: float,
        group_name: str,
        fetch_committed: FetchCommitted,
        lanes: Mapping[str, int] | None = None,
    ) -> None:
        self.token = token
        self.name = name
        self.group = group
        self.group_name = group_name
        """The caller's group name (without the broker's prefix)."""
        self.main = main
        self.retry = retry
        self.lanes = dict(lanes or {})
        """Kafka topic → priority lane, of the topic's lanes above 0."""
        self.consumer: AIOKafkaConsumer | None = None
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.buffer = Buffer(visibility_timeout, clock)
        self._commit_interval = commit_interval
        self._fetch_committed = fetch_committed
        self._next_commit = 0.0
        self._commit_lock = asyncio.Lock()
        self._to_commit = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._rebalancing = False
        self.closing = False
        self.closed = asyncio.Event()
        self.gained: Callable[[Member, set[TopicPartition]], None] | None = None
        """Told of every assignment (the broker's late acknowledgements)."""
        self.held: frozenset[int] | None = None
        """The partitions of the main topic held, once the first assignment is known."""
        self.held_changed = asyncio.Event()
        """Set when :attr:`held` changes; a fetch watching it returns at once."""
        self.watched = False
        """Whether a membership session reports :attr:`held` (fetches wake on changes)."""

    # -- group membership --------------------------------------------------------

    async def start(self, settings: dict[str, Any], io: KafkaIO) -> None:
        """Join: start a consumer of the main and retry topics with ``settings``, and
        the committer task."""
        consumer = AIOKafkaConsumer(
            **settings,
            group_id=self.group,
            partition_assignment_strategy=(StickyInFlightAssignor(self.buffer.claims),),
        )
        consumer.subscribe([self.main, *self.lanes, self.retry], listener=_Listener(self))
        self.consumer = consumer
        try:
            await io(consumer.start)
        except BaseException:
            self.consumer = None
            await stop(consumer)
            raise
        self._committer = asyncio.create_task(
            self._commit_forever(), name=f"kafka-commits:{self.group}/{self.token}"
        )

    async def stop(self) -> None:
        """Stop the committer task (the caller commits a last time)."""
        task, self._committer = self._committer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def revoked(self) -> None:
        """A rebalance begins: commit what is acknowledged while the group still takes
        this member's commits, then hold commits until the new assignment. A member the
        group expelled (its session lapsed: the process was frozen, or its loop starved
        the event loop) holds nothing any more: it says so at once and forgets what it
        had fetched, which the group has handed to another member meanwhile."""
        self._rebalancing = True
        if self.consumer is not None and _expelled(self.consumer):
            for tp in {*self.trackers, *self.buffer.inflight}:
                self._forget(tp)
            if self.held:
                self.held = frozenset()
                self.held_changed.set()
            return
        await self.commit()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """The new assignment: forget what is lost, check what is kept, report it."""
        for tp in {*self.trackers, *self.buffer.inflight} - assigned:
            self._forget(tp)  # whatever was fetched is the new holder's
        await self._check_kept([tp for tp in self.trackers if tp in assigned])
        consumer = self.consumer
        for tp, tracker in self.trackers.items():
            if tracker.next_offset is not None and consumer is not None:
                consumer.seek(tp, tracker.next_offset)  # go on after what we hold
        self._rebalancing = False
        if any(t.dirty for t in self.trackers.values()):
            self._to_commit.set()
        held = frozenset(tp.partition for tp in assigned if tp.topic == self.main)
        if held != self.held:
            self.held = held
            self.held_changed.set()
        if self.gained is not None:
            self.gained(self, assigned)

    async def _check_kept(self, kept: list[TopicPartition]) -> None:
        """Drop the trackers of kept partitions that another member moved on meanwhile
        (the group's offset is past what this member committed)."""
        if not kept:
            return
        try:  # briefly: aiokafka heartbeats again only once the listener returns
            async with asyncio.timeout(CHECK_TIMEOUT):
                committed = await self._fetch_committed(kept)
        except (BrokerError, KafkaError, TimeoutError) as exc:  # keep them: the likeliest
            logger.debug("reading %s's committed offsets failed: %r", self.group, exc)
            return
        for tp in kept:
            at, ours = committed.get(tp), self.trackers[tp].known_committed
            if at is None or ours is None:
                continue
            if at > ours:
                logger.info("%s of %s moved on to %d meanwhile; resuming there", tp, self.group, at)
                self._forget(tp)
            elif at < ours:
                self.trackers[tp].moved_back(at)

    def _forget(self, tp: TopicPartition) -> None:
        self.trackers.pop(tp, None)
        self.buffer.forget(tp)

    # -- fetching ------------------------------------------------------------------

    async def poll(self, timeout: float, max_records: int) -> dict[TopicPartition, list[Any]]:
        """Fetch; a watched member returns early, empty, when its assignment changes."""
        consumer = self.consumer
        assert consumer is not None
        fetch = consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        if not self.watched:
            batches: dict[TopicPartition, list[Any]] = await fetch
            return batches
        if self.held_changed.is_set():
            fetch.close()
            return {}
        task = asyncio.ensure_future(fetch)
        changed = asyncio.ensure_future(self.held_changed.wait())
        try:
            await asyncio.wait((task, changed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not task.done():  # cancelled while waiting: nothing was taken
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return {} if task.cancelled() else task.result()

    async def poll_lanes(self) -> None:
        """Add the priority lanes' records fetched meanwhile, without waiting, so they go
        before the lower-lane records already held."""
        consumer = self.consumer
        if consumer is None or not self.lanes:
            return
        tps = [tp for tp in consumer.assignment() if tp.topic in self.lanes]
        if tps:
            # A consume loop working from its buffer may never wait on anything; this
            # lets the fetcher take in what the server sent meanwhile.
            await asyncio.sleep(0)
            self.add(await consumer.getmany(*tps, timeout_ms=0))

    def add(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        for tp, records in batches.items():
            if not records:
                continue
            tracker = self.trackers.get(tp)
            if tracker is None:  # tracking starts where the group's offset put us
                tracker = self.trackers[tp] = OffsetTracker(records[0].offset)
            retry = tp.topic == self.retry
            lane = self.lanes.get(tp.topic, 0)
            for record in records:
                if tracker.next_offset is not None and record.offset < tracker.next_offset:
                    continue  # already held (a fetch raced a seek)
                tracker.deliver(record.offset)
                self.buffer.hold(tp, record, retry, lane)

    def take(self, count: int) -> list[tuple[Delivery, bytes | None]]:
        return [self._delivery(held) for held in self.buffer.take(count)]

    def _delivery(self, held: Held) -> tuple[Delivery, bytes | None]:
        entry = f"{held.tp.topic}:{held.tp.partition}:{held.offset}"
        return Delivery(self.group_name, self.name, self.token, entry), held.value

    # -- acknowledgement and commits ---------------------------------------------

    def ack(self, tp: TopicPartition, offset: int) -> bool:
        self.buffer.done(tp, offset)
        tracker = self.trackers.get(tp)
        if tracker is None or not tracker.ack(offset):
            return False
        self._to_commit.set()
        return True

    async def commit(self) -> bool:
        """Commit every assigned partition's contiguous acknowledged offset; False when
        the commit failed (logged: the committer tries again)."""
        consumer = self.consumer
        if consumer is None:
            return True
        async with self._commit_lock:
            assigned = consumer.assignment()
            todo = [
                (tp, tracker, tracker.committable)
                for tp, tracker in self.trackers.items()
                if tracker.dirty and tp in assigned
            ]
            offsets = {tp: OffsetAndMetadata(off, "") for tp, _, off in todo if off is not None}
            if not offsets:
                return True
            self._next_commit = time.monotonic() + self._commit_interval
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # any failure: the committer tries again
                logger.debug("commit of %s for group %s failed: %s", offsets, self.group, exc)
                return False
            for _, tracker, off in todo:
                if off is not None:
                    tracker.committed(off)
            return True

    async def _commit_forever(self) -> None:
        """Commit as soon as an acknowledgement moves a partition's offset (at most every
        ``commit_interval``), and again after a failure, until it goes through."""
        retry_delay = self._commit_interval
        while True:
            await self._to_commit.wait()
            wait = self._next_commit - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._to_commit.clear()
            if self._rebalancing:
                continue  # the new assignment sets _to_commit again
            if await self.commit():
                retry_delay = self._commit_interval
                continue
            await asyncio.sleep(retry_delay)
            retry_delay = min(max(retry_delay * 2, 0.05), MAX_RETRY_DELAY)
            self._to_commit.set()
