"""The storage primitives a concrete broker implements.

:class:`~brokers._base.Broker` decides everything brokers share (validation, limits,
provenance, the retry and dead-letter decisions, reconnects, metrics) and calls these
for the storage alone, so a new backend implements this class and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from brokers._message import Delivery

if TYPE_CHECKING:
    from brokers._leases import LeaseTable


class BrokerStorage(ABC):
    """What a backend stores and fetches; every method is called by ``Broker``."""

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _append(self, topic: str, datas: Sequence[bytes], lane: int, key: str | None) -> None:
        """Store encoded messages at the end of the topic's priority ``lane``
        (``0 … priority_levels - 1``), in order. ``key`` is their partition key
        (:attr:`Headers.partition_key`, the same for every message of one call), for a
        broker that partitions by it."""

    @abstractmethod
    async def _fetch(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        """Up to ``count`` entries for the group (reclaimed, due retries, then new ones
        from the highest priority lane that has some, down to lane 0), waiting at most
        the block time; an empty result is fine."""

    @abstractmethod
    async def _ack(self, topic: str, delivery: Delivery) -> None: ...

    async def _ack_many(self, topic: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge several entries of ``topic``; one by one unless the backend can
        do better."""
        for delivery in deliveries:
            await self._ack(topic, delivery)

    async def _touch(self, topic: str, delivery: Delivery) -> None:  # noqa: B027
        """Restart the entry's visibility timeout: it stays with its consumer. Nothing to
        do for a backend whose deliveries stay with their consumer until it leaves."""

    @abstractmethod
    async def _retry_later(self, topic: str, delivery: Delivery, data: bytes, delay: float) -> None:
        """Atomically acknowledge the entry and re-deliver ``data`` to the same group
        after ``delay`` seconds, without blocking any consumer."""

    @abstractmethod
    async def _dead_letter(self, topic: str, delivery: Delivery, record: bytes) -> None:
        """Atomically acknowledge the entry and append ``record`` to the topic's DLQ."""

    @abstractmethod
    async def _read_dead_letters(self, topic: str, limit: int) -> list[tuple[str, bytes]]: ...

    @abstractmethod
    async def _count_dead_letters(self, topic: str) -> int:
        """How many dead letters the topic's DLQ holds, without reading them."""

    @abstractmethod
    async def _reprocess(self, topic: str, group: str, dlq_id: str, data: bytes) -> None:
        """Atomically re-deliver ``data`` to ``group`` and remove the DLQ record."""

    @abstractmethod
    async def _read_dead_letter(self, topic: str, dlq_id: str) -> bytes | None:
        """The DLQ record ``dlq_id`` of the topic (``None``: there is none)."""

    @abstractmethod
    async def _dead_letter_topics(self) -> list[str]:
        """The topics whose DLQ holds at least one record, in any order."""

    @abstractmethod
    async def _discard(self, topic: str, dlq_id: str, record: bytes) -> bool:
        """Remove DLQ record ``dlq_id`` and append ``record`` to the topic's discard
        archive (the archive first: a crash in between leaves it in both, never in
        neither). ``False``: there was no such DLQ record, and nothing is written."""

    @abstractmethod
    async def _read_discarded(self, topic: str, limit: int) -> list[bytes]:
        """The oldest ``limit`` records of the topic's discard archive."""

    @abstractmethod
    async def _lag(self, topic: str, group: str) -> int: ...

    @abstractmethod
    async def _delete(self, topic: str) -> None:
        """Remove the topic's messages, groups and retries (its DLQ stays)."""

    def _lease_table(self, topic: str, group: str) -> LeaseTable:
        """Where the partition leases and live members of (topic, group) are kept, for
        consume loops with ``on_assigned``. A backend whose membership is its own (Kafka)
        overrides ``Broker._join`` instead."""
        raise NotImplementedError(f"{type(self).__name__} keeps no partition leases")
