"""A Kafka consume loop's part in group membership (``consume(..., on_assigned=...)``).

Kafka's own group protocol decides who holds what: the partitions of the main topic
assigned to the loop's consumer are what it holds, and a key's partition is the one the
producer sends its messages to (:func:`brokers.kafka.records.key_partition`, Kafka's
murmur2). aiokafka tells the member of a new assignment in its rebalance listener, on
aiokafka's coordinator task; the callback is not called there (the group would wait for
it, and the caller's code would run on a task not its own). The member records the
change and wakes a fetch in progress; the loop then reports it from its own task
before its next fetch (:meth:`KafkaMembership.sync`, called by ``Broker.consume``).

A partition moving from loop A to loop B can therefore be reported held by B a little
before A reports losing it: by the time A's loop next syncs (at once if it is waiting
for messages; else after the message it is handing out is handled).
"""

from __future__ import annotations

from collections.abc import Callable

from brokers._membership import Assignment, OnAssigned
from brokers.kafka.member import Member
from brokers.kafka.records import key_partition


class KafkaMembership:
    """The membership session of one Kafka consume loop (``brokers._membership``)."""

    def __init__(
        self,
        member: Member,
        topic: str,
        group: str,
        on_assigned: OnAssigned,
        count: Callable[[], int],
    ) -> None:
        self._member = member
        self._topic = topic
        self._group = group
        self._on_assigned = on_assigned
        self._count = count
        self._reported: frozenset[int] | None = None
        self._closed = False
        member.watched = True

    async def start(self) -> None:
        """Nothing to do: the member joins with its first fetch, and the first
        assignment is reported by the :meth:`sync` after it arrives."""

    async def sync(self) -> None:
        member = self._member
        member.held_changed.clear()
        held = member.held
        if self._closed or held is None or held == self._reported:
            return
        self._reported = held
        assignment = Assignment(self._topic, self._group, held, self._count(), key_partition)
        await self._on_assigned(assignment)

    async def close(self) -> None:
        """The loop ends; the member leaves the group when the broker closes it."""
        self._closed = True
        self._member.watched = False
