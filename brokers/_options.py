"""Consumer tuning shared by every broker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """How consumers wait, and when un-acknowledged messages are handed to someone else."""

    visibility_timeout: float = 30.0
    """Seconds a delivered, un-acknowledged message stays with its consumer before
    another member of the group may claim it (Redis: XAUTOCLAIM min-idle-time)."""
    block_time: float = 1.0
    """Longest single wait for new messages, in seconds; bounds how late a consumer
    notices due retries or reclaimable messages on servers that cannot wake it, and
    how late it reports a change of its membership assignment."""
    claim_interval: float | None = None
    """Seconds between scans for reclaimable messages; default half the visibility
    timeout."""
    membership_partitions: int = 16
    """Virtual partitions of a topic shared out among the members of a group that
    consume with ``on_assigned`` (Redis and the in-memory broker; Kafka uses the
    topic's real partitions). Every member of a group must use the same number."""
    membership_ttl: float = 10.0
    """Seconds a partition lease lives without renewal (Redis and the in-memory
    broker): how long the partitions of a killed process stay unowned before the
    other members take them. Leases are renewed, and free partitions looked for,
    every third of it."""

    idle_consumer_ttl: float = 3600.0
    """Seconds a consumer of a Redis group may stay idle before it is removed from the
    group (``XGROUP DELCONSUMER``), once it holds no pending entry: consumers that
    ended (a finished ``consume()``, a process gone) do not pile up. The group's live
    loops sweep every half of it, at most once a minute."""

    def __post_init__(self) -> None:
        if not self.idle_consumer_ttl > 0:
            raise ValueError(f"idle_consumer_ttl must be > 0, got {self.idle_consumer_ttl}")
        if self.visibility_timeout <= 0:
            raise ValueError(f"visibility_timeout must be > 0, got {self.visibility_timeout}")
        if self.block_time <= 0:
            raise ValueError(f"block_time must be > 0, got {self.block_time}")
        if type(self.membership_partitions) is not int or self.membership_partitions < 1:
            raise ValueError(
                f"membership_partitions must be an int >= 1, got {self.membership_partitions!r}"
            )
        if not self.membership_ttl > 0:
            raise ValueError(f"membership_ttl must be > 0, got {self.membership_ttl}")

    @property
    def effective_claim_interval(self) -> float:
        if self.claim_interval is not None:
            return self.claim_interval
        return self.visibility_timeout / 2

    @property
    def membership_interval(self) -> float:
        """Seconds between lease renewals (and looks for free partitions)."""
        return self.membership_ttl / 3
