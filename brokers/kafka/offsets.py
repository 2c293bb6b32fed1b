"""Contiguous-commit tracking for one Kafka partition (pure; no I/O).

Kafka keeps one committed offset per (group, partition): everything below it counts as
done. Messages are acknowledged in any order, so the offset that may be committed is
the lowest delivered-but-unacknowledged offset, or one past the highest delivered one
when nothing is outstanding. An out-of-order acknowledgement therefore never commits
past a message that is still being worked on, and offsets may have gaps (compaction,
transaction markers) without stalling the commit.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Delivered and acknowledged offsets of one partition, in delivery (= offset) order."""

    __slots__ = ("_committed", "_next", "_open", "_order")

    def __init__(self, committed: int | None = None) -> None:
        self._order: deque[int] = deque()
        """Delivered offsets, oldest first; its head is never acknowledged."""
        self._open: set[int] = set()
        """Delivered offsets not yet acknowledged."""
        self._next: int | None = committed
        """One past the highest delivered offset (or the start position)."""
        self._committed: int | None = committed
        """What the group is known to have committed."""

    def deliver(self, offset: int) -> None:
        """Record that ``offset`` was handed to the application (offsets increase)."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} delivered after {self._next - 1}")
        self._order.append(offset)
        self._open.add(offset)
        self._next = offset + 1

    def ack(self, offset: int) -> bool:
        """Mark ``offset`` done; True when that moved the committable offset forward."""
        if offset not in self._open:
            return False  # not delivered here, or acknowledged already
        self._open.discard(offset)
        order = self._order
        if order[0] != offset:
            return False  # out of order: an earlier message is still being worked on
        order.popleft()
        while order and order[0] not in self._open:
            order.popleft()
        return True

    @property
    def committable(self) -> int | None:
        """The offset to commit now: the oldest unacknowledged one, else one past the
        newest delivered one (``None`` before anything is known)."""
        if self._order:
            return self._order[0]
        return self._next

    @property
    def next_offset(self) -> int | None:
        """Where fetching resumes after this member's last delivered message."""
        return self._next

    @property
    def outstanding(self) -> int:
        """Delivered messages not yet acknowledged."""
        return len(self._open)

    @property
    def dirty(self) -> bool:
        """Whether :attr:`committable` is ahead of what was last committed."""
        target = self.committable
        return target is not None and (self._committed is None or target > self._committed)

    def committed(self, offset: int) -> None:
        """Record a successful commit of ``offset``."""
        if self._committed is None or offset > self._committed:
            self._committed = offset

    @property
    def known_committed(self) -> int | None:
        """What the group is known to have committed (or where tracking started)."""
        return self._committed

    def moved_back(self, offset: int) -> None:
        """The group's committed offset is found at ``offset``, behind what this tracker
        committed: someone moved it back, so :attr:`dirty` commits ours again."""
        if self._committed is not None and offset < self._committed:
            self._committed = offset
