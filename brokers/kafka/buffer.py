"""The records one consume loop has fetched: those waiting to be handed out, and those
handed out and not acknowledged yet (pure; no I/O).

Fetched records are handed out by priority lane, highest first, and within a lane in
publish order across partitions (the head with the lowest publish sequence first; one
partition's order is never changed); retries only once they are due. A record handed out
and neither acknowledged nor kept alive (:meth:`Buffer.touch`) within
``visibility_timeout`` is handed out again, like Redis hands a message idle that long to
another consumer: on Kafka only the loop holding the partition may deliver it, so it is
this loop, to whichever handler takes it next. A handler that died without acknowledging
(or whose ``nack`` failed) therefore does not hold its partition's committed offset back
for ever.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from brokers.kafka.records import DUE_HEADER, SEQ_HEADER, header


class Held:
    """A fetched record: waiting in the buffer, or handed out."""

    __slots__ = ("deadline", "due", "lane", "offset", "seq", "tp", "value")

    def __init__(self, tp: TopicPartition, record: Any, retry: bool, lane: int = 0) -> None:
        self.tp = tp
        self.lane = lane
        self.offset: int = record.offset
        self.value: bytes | None = record.value
        seq = header(record, SEQ_HEADER)
        self.seq = int.from_bytes(seq, "big") if seq else 0
        due = header(record, DUE_HEADER) if retry else None
        self.due = float(due) if due else 0.0
        self.deadline = 0.0
        """When a handed-out record is handed out again (monotonic seconds)."""


def _rank(queue: deque[Held]) -> tuple[int, int]:
    """Which partition's head goes first: the highest lane, then the oldest publish."""
    return -queue[0].lane, queue[0].seq


class Buffer:
    """Fetched and handed-out records of one consume loop (see the module docstring)."""

    def __init__(self, visibility_timeout: float, clock: Callable[[], float]) -> None:
        self._visibility = visibility_timeout
        self._clock = clock
        self._queues: dict[TopicPartition, deque[Held]] = {}
        self._delayed: list[Held] = []
        self.inflight: dict[TopicPartition, dict[int, Held]] = {}
        """Handed out, not acknowledged: partition → offset → record."""
        self._deadlines: list[tuple[float, int, Held]] = []
        self._order = itertools.count()

    def hold(self, tp: TopicPartition, record: Any, retry: bool, lane: int = 0) -> None:
        held = Held(tp, record, retry, lane)
        if retry:
            self._delayed.append(held)
        else:
            self._queues.setdefault(tp, deque()).append(held)

    @property
    def queued(self) -> bool:
        """Whether fetched records wait to be handed out."""
        return any(self._queues.values())

    def claims(self) -> list[TopicPartition]:
        """The partitions with records handed out and not acknowledged."""
        return [tp for tp, held in self.inflight.items() if held]

    def wait_hint(self, block: float) -> float:
        """How long a fetch may wait before a held retry falls due or a record handed out
        is due to be handed out again."""
        wait = block
        if self._delayed:
            wait = min(wait, min(held.due for held in self._delayed) - self._clock())
        if self._prune():
            wait = min(wait, self._deadlines[0][0] - time.monotonic())
        return max(0.0, wait)

    def _prune(self) -> bool:
        """Drop outdated deadlines from the heap's top; whether a live one is left."""
        heap = self._deadlines
        while heap:
            deadline, _, held = heap[0]
            current = self.inflight.get(held.tp, {}).get(held.offset)
            if current is held and held.deadline == deadline:
                return True
            heapq.heappop(heap)
        return False

    def take(self, count: int) -> list[Held]:
        """Up to ``count`` records to hand out: those due again, due retries, then the
        queued ones, highest lane first, in publish order."""
        out = self._overdue(count)
        if self._delayed and len(out) < count:
            now = self._clock()
            ready = [h for h in self._delayed if h.due <= now]
            due = sorted(ready, key=lambda h: (h.due, h.seq))[: count - len(out)]
            if due:
                taken = {id(h) for h in due}
                self._delayed = [h for h in self._delayed if id(h) not in taken]
                out.extend(due)
        queues = [q for q in self._queues.values() if q]
        while len(out) < count and queues:
            queue = min(queues, key=_rank) if len(queues) > 1 else queues[0]
            out.append(queue.popleft())
            if not queue:
                queues.remove(queue)
        for held in out:
            self.inflight.setdefault(held.tp, {})[held.offset] = held
            self.touch(held.tp, held.offset)
        return out

    def _overdue(self, count: int) -> list[Held]:
        out: list[Held] = []
        now = time.monotonic()
        while len(out) < count and self._prune() and self._deadlines[0][0] <= now:
            out.append(heapq.heappop(self._deadlines)[2])
        return out

    def touch(self, tp: TopicPartition, offset: int) -> None:
        """Restart the visibility timeout of a record handed out."""
        held = self.inflight.get(tp, {}).get(offset)
        if held is not None:
            held.deadline = time.monotonic() + self._visibility
            heapq.heappush(self._deadlines, (held.deadline, next(self._order), held))

    def done(self, tp: TopicPartition, offset: int) -> None:
        """A record handed out was acknowledged (or nacked)."""
        held = self.inflight.get(tp)
        if held is not None:
            held.pop(offset, None)
            if not held:
                del self.inflight[tp]
        if not self.inflight:
            self._deadlines.clear()

    def forget(self, tp: TopicPartition) -> None:
        """Drop every record of ``tp`` (the partition went to another member)."""
        self._queues.pop(tp, None)
        self.inflight.pop(tp, None)
        self._delayed = [held for held in self._delayed if held.tp != tp]
        if not self.inflight:
            self._deadlines.clear()
