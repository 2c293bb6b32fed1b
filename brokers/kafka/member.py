"""One ``consume`` loop's membership of a Kafka consumer group.

A member owns an ``AIOKafkaConsumer`` subscribed to the topic and to its group's retry
topic, a local buffer of fetched records and an :class:`OffsetTracker` per partition.
Fetched records are handed out in publish order across partitions (the head with the
lowest publish sequence first; one partition's order is never changed), retries only
once they are due. Acknowledgements move the trackers; the member commits what is
contiguous before each fetch, when its partitions are revoked and when it closes. How
partitions are shared among the members: :mod:`brokers.kafka.assignor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from brokers._message import Delivery
from brokers.kafka.offsets import OffsetTracker
from brokers.kafka.records import DUE_HEADER, SEQ_HEADER, header

logger = logging.getLogger("brokers")


class _Held:
    """A fetched record waiting in the member's buffer."""

    __slots__ = ("due", "offset", "seq", "tp", "value")

    def __init__(self, tp: TopicPartition, record: Any, retry: bool) -> None:
        self.tp = tp
        self.offset: int = record.offset
        self.value: bytes | None = record.value
        seq = header(record, SEQ_HEADER)
        self.seq = int.from_bytes(seq, "big") if seq else 0
        due = header(record, DUE_HEADER) if retry else None
        self.due = float(due) if due else 0.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: Member) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._member.commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._member.reassigned(set(assigned))


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
    ) -> None:
        self.token = token
        self.name = name
        self.group = group
        self.main = main
        self.retry = retry
        self.consumer: AIOKafkaConsumer | None = None
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.inflight: dict[TopicPartition, set[int]] = {}
        self._queues: dict[TopicPartition, deque[_Held]] = {}
        self._delayed: list[_Held] = []
        self._clock = clock
        self._commit_interval = commit_interval
        self._next_commit = 0.0
        self.closing = False
        self.closed = asyncio.Event()
        self.on_assigned: Any = None

    # -- group membership --------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    def claims(self) -> list[TopicPartition]:
        return [tp for tp, offsets in self.inflight.items() if offsets]

    def reassigned(self, assigned: set[TopicPartition]) -> None:
        for tp in list(self.trackers):
            if tp not in assigned:  # lost: whatever was fetched is the new owner's
                del self.trackers[tp]
                self.inflight.pop(tp, None)
                self._queues.pop(tp, None)
        self._delayed = [held for held in self._delayed if held.tp in assigned]
        consumer = self.consumer
        for tp in assigned:
            tracker = self.trackers.get(tp)
            if tracker is not None and tracker.next_offset is not None and consumer is not None:
                consumer.seek(tp, tracker.next_offset)  # go on after what we hold
        if self.on_assigned is not None:
            self.on_assigned(self, assigned)

    # -- fetching ------------------------------------------------------------------

    def add(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        for tp, records in batches.items():
            tracker = self.trackers.get(tp)
            if tracker is None:
                tracker = self.trackers[tp] = OffsetTracker()
            retry = tp.topic == self.retry
            queue = self._queues.get(tp)
            if queue is None and not retry:
                queue = self._queues[tp] = deque()
            for record in records:
                if tracker.next_offset is not None and record.offset < tracker.next_offset:
                    continue  # already held (a fetch raced a seek)
                tracker.deliver(record.offset)
                held = _Held(tp, record, retry)
                if retry:
                    self._delayed.append(held)
                else:
                    assert queue is not None
                    queue.append(held)

    def wait_hint(self, block: float) -> float:
        """How long a fetch may wait before a held retry falls due."""
        if not self._delayed:
            return block
        due = min(held.due for held in self._delayed)
        wait: float = due - self._clock()
        return max(0.0, min(block, wait))

    def take(self, count: int) -> list[tuple[Delivery, bytes | None]]:
        out: list[tuple[Delivery, bytes | None]] = []
        if self._delayed:
            now = self._clock()
            ready = [h for h in self._delayed if h.due <= now]
            due = sorted(ready, key=lambda h: (h.due, h.seq))[:count]
            if due:
                taken = {id(h) for h in due}
                self._delayed = [h for h in self._delayed if id(h) not in taken]
                out.extend(self._hand_out(h) for h in due)
        queues = [q for q in self._queues.values() if q]
        while len(out) < count and queues:
            queue = min(queues, key=lambda q: q[0].seq) if len(queues) > 1 else queues[0]
            out.append(self._hand_out(queue.popleft()))
            if not queue:
                queues.remove(queue)
        return out

    def _hand_out(self, held: _Held) -> tuple[Delivery, bytes | None]:
        self.inflight.setdefault(held.tp, set()).add(held.offset)
        entry = f"{held.tp.topic}:{held.tp.partition}:{held.offset}"
        return Delivery(self.group_name, self.name, self.token, entry), held.value

    group_name = ""
    """The caller's group name (without the broker's prefix), set by the broker."""

    # -- acknowledgement and commits ---------------------------------------------

    def ack(self, tp: TopicPartition, offset: int) -> bool:
        offsets = self.inflight.get(tp)
        if offsets is not None:
            offsets.discard(offset)
        tracker = self.trackers.get(tp)
        return tracker is not None and tracker.ack(offset)

    def due_commit(self) -> bool:
        return time.monotonic() >= self._next_commit and any(
            t.dirty for t in self.trackers.values()
        )

    async def commit(self) -> None:
        """Commit every partition's contiguous acknowledged offset (failures are logged:
        the messages are then delivered again, which at-least-once allows)."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: tracker.committable
            for tp, tracker in self.trackers.items()
            if tracker.dirty and tp in assigned
        }
        if not offsets:
            return
        self._next_commit = time.monotonic() + self._commit_interval
        try:
            await consumer.commit(
                {tp: OffsetAndMetadata(off, "") for tp, off in offsets.items() if off is not None}
            )
        except (KafkaError, AssertionError, RuntimeError) as exc:
            logger.debug("commit of %s for group %s failed: %s", offsets, self.group, exc)
            return
        for tp, off in offsets.items():
            if off is not None and tp in self.trackers:
                self.trackers[tp].committed(off)
