"""The embedded default broker: one process, the same semantics as the Redis one.

Per topic an append-only log per priority lane (a list with a moving base offset,
trimmed in chunks); per group a cursor per lane, an ordered pending table (delivery
order = visibility-deadline order, so reclaiming looks only at its head) and a ready
queue for due retries. New entries are taken from the highest lane that has some.
Every operation is O(1) per message; waiting consumers sleep on futures that a
publish, a due retry or their own deadline wakes: nothing polls. Partition leases
(membership, :mod:`brokers._leases`) are dicts on the broker's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from brokers._base import Broker
from brokers._leases import LeaseTable
from brokers._message import Delivery

_MAIN = "log"


class _Pending:
    __slots__ = ("consumer", "data", "deadline")

    def __init__(self, data: bytes | None, consumer: str, deadline: float) -> None:
        self.data = data
        self.consumer = consumer
        self.deadline = deadline


class _Group:
    __slots__ = ("cursors", "next_token", "pending", "ready", "scheduled")

    def __init__(self, cursors: list[int]) -> None:
        self.cursors = cursors
        """Per lane: the absolute sequence number of the next entry to deliver."""
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.ready: deque[bytes] = deque()
        self.scheduled = 0
        self.next_token = 0


class _Lane:
    """One priority lane's log: entries ``base …`` (absolute sequence numbers)."""

    __slots__ = ("base", "log")

    def __init__(self) -> None:
        self.log: list[bytes | None] = []
        self.base = 0  # absolute sequence number of log[0]

    @property
    def end(self) -> int:
        return self.base + len(self.log)


class _Topic:
    __slots__ = ("discarded", "dlq", "dlq_seq", "groups", "lanes", "waiters")

    def __init__(self, levels: int) -> None:
        self.lanes = [_Lane() for _ in range(levels)]
        self.groups: dict[str, _Group] = {}
        self.waiters: list[asyncio.Future[None]] = []
        self.dlq: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.dlq_seq = 0
        self.discarded: deque[tuple[float, bytes]] = deque()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class _Leases:
    """The lease table of one (topic, group): partition → (member, expiry) and
    member → expiry, both on the broker's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.owners: dict[int, tuple[str, float]] = {}
        self.members: dict[str, float] = {}

    async def refresh(
        self, member: str, held: Sequence[int], ttl: float
    ) -> tuple[frozenset[int], int]:
        now = self._clock()
        self.members[member] = now + ttl
        for name, expiry in list(self.members.items()):
            if expiry <= now:
                del self.members[name]
        kept = [p for p in held if self._holder(p, now) == member]
        for partition in kept:
            self.owners[partition] = (member, now + ttl)
        return frozenset(kept), len(self.members)

    async def acquire(
        self, member: str, candidates: Sequence[int], want: int, ttl: float
    ) -> frozenset[int]:
        now = self._clock()
        got: list[int] = []
        for partition in candidates:
            if len(got) >= want:
                break
            if self._holder(partition, now) in (None, member):
                self.owners[partition] = (member, now + ttl)
                got.append(partition)
        return frozenset(got)

    async def release(self, member: str, partitions: Sequence[int], *, leave: bool) -> None:
        for partition in partitions:
            if self.owners.get(partition, ("", 0.0))[0] == member:
                del self.owners[partition]
        if leave:
            self.members.pop(member, None)

    async def holders(self, count: int) -> dict[int, str]:
        now = self._clock()
        return {p: holder for p in range(count) if (holder := self._holder(p, now)) is not None}

    def _holder(self, partition: int, now: float) -> str | None:
        lease = self.owners.get(partition)
        return lease[0] if lease is not None and lease[1] > now else None


def _wake_one(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class InMemoryBroker(Broker):
    """In-process broker. Constructor options: see :class:`Broker` (``max_retries``,
    ``retry``, ``consumer_options``, ``max_message_bytes``, ``message_ttl_days``,
    ``dlq_ttl_days``, ``max_stream_length``, ``clock``)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._topics: dict[str, _Topic] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._leases: dict[tuple[str, str], _Leases] = {}

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(self.priority_levels)
        return topic

    def _group(self, topic: _Topic, name: str) -> _Group:
        group = topic.groups.get(name)
        if group is None:
            # Like XGROUP CREATE … 0: a new group sees everything still retained.
            group = topic.groups[name] = _Group([lane.base for lane in topic.lanes])
        return group

    async def _delete(self, topic: str) -> None:
        state = self._topics.get(topic)
        if state is None:
            return
        state.wake()
        if state.dlq or state.discarded:  # dead letters stay until their TTL
            kept = self._topics[topic] = _Topic(self.priority_levels)
            kept.dlq, kept.dlq_seq, kept.discarded = state.dlq, state.dlq_seq, state.discarded
        else:
            del self._topics[topic]
        for key in [key for key in self._leases if key[0] == topic]:
            del self._leases[key]

    def _lease_table(self, topic: str, group: str) -> LeaseTable:
        table = self._leases.get((topic, group))
        if table is None:
            table = self._leases[(topic, group)] = _Leases(self._clock)
        return table

    async def _connect(self) -> None:
        return None

    async def _disconnect(self) -> None:
        return None

    async def _ping(self) -> None:
        return None

    async def _append(self, topic: str, datas: Sequence[bytes], lane: int, key: str | None) -> None:
        state = self._topic(topic)
        entries = state.lanes[lane]
        entries.log.extend(datas)
        excess = len(entries.log) - self.max_stream_length
        # Trim in chunks (like MAXLEN ~) so the cost stays O(1) amortised.
        if excess > max(1024, self.max_stream_length // 4):
            del entries.log[:excess]
            entries.base += excess
            for group in state.groups.values():
                group.cursors[lane] = max(group.cursors[lane], entries.base)
        if state.waiters:
            state.wake()

    async def _fetch(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        state = self._topic(topic)
        grp = self._group(state, group)
        out = self._take(state, grp, group, consumer, count)
        if out:
            return out
        loop = asyncio.get_running_loop()
        timeout = self.consumer_options.block_time
        if grp.pending:
            head = next(iter(grp.pending.values()))
            timeout = min(timeout, max(head.deadline - time.monotonic(), 0.0))
        fut: asyncio.Future[None] = loop.create_future()
        state.waiters.append(fut)
        timer = loop.call_later(timeout, _wake_one, fut)
        try:
            await fut
        finally:
            timer.cancel()
        return self._take(state, grp, group, consumer, count)

    def _take(
        self, state: _Topic, grp: _Group, group: str, consumer: str, count: int
    ) -> list[tuple[Delivery, bytes | None]]:
        out: list[tuple[Delivery, bytes | None]] = []
        now = time.monotonic()
        deadline = now + self.consumer_options.visibility_timeout
        pending = grp.pending
        # 1. Entries whose consumer never acknowledged them in time (crashed or slow).
        while pending and len(out) < count:
            token, entry = next(iter(pending.items()))
            if entry.deadline > now:
                break
            pending.move_to_end(token)
            entry.consumer = consumer
            entry.deadline = deadline
            out.append((Delivery(group, consumer, _MAIN, token), entry.data))
        # 2. Due retries and reprocessed dead letters, then 3. new entries, highest
        # priority lane first.
        ready = grp.ready
        while ready and len(out) < count:
            out.append(self._hand_out(grp, group, consumer, deadline, ready.popleft()))
        cursors = grp.cursors
        for lane in range(len(state.lanes) - 1, -1, -1):
            entries = state.lanes[lane]
            end = entries.end
            while len(out) < count and cursors[lane] < end:
                data = entries.log[cursors[lane] - entries.base]
                cursors[lane] += 1
                out.append(self._hand_out(grp, group, consumer, deadline, data))
        return out

    @staticmethod
    def _hand_out(
        grp: _Group, group: str, consumer: str, deadline: float, data: bytes | None
    ) -> tuple[Delivery, bytes | None]:
        token = str(grp.next_token)
        grp.next_token += 1
        grp.pending[token] = _Pending(data, consumer, deadline)
        return Delivery(group, consumer, _MAIN, token), data

    def _pending_group(self, topic: str, delivery: Delivery) -> _Group:
        return self._group(self._topic(topic), delivery.group)

    async def _ack(self, topic: str, delivery: Delivery) -> None:
        self._pending_group(topic, delivery).pending.pop(delivery.entry_id, None)

    async def _touch(self, topic: str, delivery: Delivery) -> None:
        pending = self._pending_group(topic, delivery).pending
        entry = pending.get(delivery.entry_id)
        if entry is not None and entry.consumer == delivery.consumer:
            entry.deadline = time.monotonic() + self.consumer_options.visibility_timeout
            pending.move_to_end(delivery.entry_id)  # deadlines stay in order

    async def _retry_later(self, topic: str, delivery: Delivery, data: bytes, delay: float) -> None:
        grp = self._pending_group(topic, delivery)
        if grp.pending.pop(delivery.entry_id, None) is None:
            return  # already acknowledged or handed to someone else
        grp.scheduled += 1
        handle: asyncio.TimerHandle | None = None

        def release() -> None:
            grp.scheduled -= 1
            grp.ready.append(data)
            if handle is not None:
                self._timers.discard(handle)
            self._topic(topic).wake()

        handle = asyncio.get_running_loop().call_later(delay, release)
        self._timers.add(handle)

    async def _dead_letter(self, topic: str, delivery: Delivery, record: bytes) -> None:
        state = self._topic(topic)
        self._group(state, delivery.group).pending.pop(delivery.entry_id, None)
        now = self._clock()
        while state.dlq:
            oldest = next(iter(state.dlq.values()))
            if oldest[0] >= now - self.dlq_ttl:
                break
            state.dlq.popitem(last=False)
        state.dlq_seq += 1
        state.dlq[str(state.dlq_seq)] = (now, record)

    async def _read_dead_letter(self, topic: str, dlq_id: str) -> bytes | None:
        state = self._topics.get(topic)
        row = None if state is None else state.dlq.get(dlq_id)
        return None if row is None else row[1]

    async def _dead_letter_topics(self) -> list[str]:
        return [name for name, state in self._topics.items() if state.dlq]

    async def _discard(self, topic: str, dlq_id: str, record: bytes) -> bool:
        state = self._topic(topic)
        if state.dlq.pop(dlq_id, None) is None:
            return False
        now = self._clock()
        while state.discarded and state.discarded[0][0] < now - self.dlq_ttl:
            state.discarded.popleft()
        state.discarded.append((now, record))
        return True

    async def _read_discarded(self, topic: str, limit: int) -> list[bytes]:
        state = self._topics.get(topic)
        return [] if state is None else [record for _, record in state.discarded][:limit]

    async def _count_dead_letters(self, topic: str) -> int:
        state = self._topics.get(topic)
        return 0 if state is None else len(state.dlq)

    async def _read_dead_letters(self, topic: str, limit: int) -> list[tuple[str, bytes]]:
        rows: list[tuple[str, bytes]] = []
        for dlq_id, (_, record) in self._topic(topic).dlq.items():
            if len(rows) >= limit:
                break
            rows.append((dlq_id, record))
        return rows

    async def _reprocess(self, topic: str, group: str, dlq_id: str, data: bytes) -> None:
        state = self._topic(topic)
        if state.dlq.pop(dlq_id, None) is None:
            return  # reprocessed already
        self._group(state, group).ready.append(data)
        state.wake()

    async def _lag(self, topic: str, group: str) -> int:
        state = self._topic(topic)
        grp = state.groups.get(group)
        if grp is None:
            return sum(len(lane.log) for lane in state.lanes)
        undelivered = sum(lane.end - at for lane, at in zip(state.lanes, grp.cursors, strict=True))
        return undelivered + len(grp.pending) + len(grp.ready) + grp.scheduled
