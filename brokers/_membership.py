"""Which partitions of a topic one consume loop holds for its group: the broker's own
membership, which callers use to decide who owns what (the saga engine: who drives a
saga, who fires its timers).

Every topic has ``count`` partitions (Kafka: the topic's real partitions; Redis and the
in-memory broker: virtual ones, held by leases that expire). A key (a saga id) belongs
to one partition, ``partitioner(key, count)``; on Kafka that is the partition the
producer routes messages with that key to, so the loop that receives a saga's messages
is the one that holds it.

Among the live consume loops of one group on one topic that asked for an assignment,
each partition is held by at most one loop at a time (while their leases or sessions
are kept up), and every partition is held once membership has settled. A loop that
dies (its process was killed) loses its partitions within the broker's membership
timeout (Kafka: the session timeout; leases: their time to live), and the survivors
get them, each told through ``on_assigned``.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Assignment", "MembershipSession", "OnAssigned", "Partitioner", "crc32_partitioner"]

Partitioner = Callable[[str, int], int]
"""``partitioner(key, count)``: the partition of ``key`` among ``count``."""


def crc32_partitioner(key: str, count: int) -> int:
    """The virtual partition of ``key`` (Redis, in-memory): stable across processes."""
    return zlib.crc32(key.encode()) % count


@dataclass(frozen=True, slots=True)
class Assignment:
    """The partitions of ``topic`` a consume loop of ``group`` holds right now."""

    topic: str
    group: str
    partitions: frozenset[int]
    """The partitions held (may be empty: more loops than partitions, or not settled)."""
    count: int
    """How many partitions the topic has."""
    partitioner: Partitioner

    def owns(self, key: str) -> bool:
        """Whether ``key``'s partition is held."""
        return self.count > 0 and self.partitioner(key, self.count) in self.partitions


class OnAssigned(Protocol):
    """``await on_assigned(assignment)``: called by a consume loop, from its own task,
    whenever its assignment changes (first when it is known). Keep it short: the loop
    does not fetch while it runs."""

    def __call__(self, assignment: Assignment, /) -> Awaitable[None]: ...


class MembershipSession(Protocol):
    """One consume loop's part in its group's membership, driven by ``Broker.consume``
    from the loop's task (leases: :mod:`brokers._leases`; a backend with membership of
    its own returns its own session from ``Broker._join``)."""

    async def start(self) -> None:
        """Join, and report the first assignment (even an empty one)."""

    async def sync(self) -> None:
        """Report the assignment if it changed; the loop calls this before each fetch."""

    async def close(self) -> None:
        """Leave at once, giving up what is held (idempotent; never raises a broker
        error: what cannot be released expires)."""
