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
    notices due retries or reclaimable messages on servers that cannot wake it."""
    claim_interval: float | None = None
    """Seconds between scans for reclaimable messages; default half the visibility
    timeout."""

    def __post_init__(self) -> None:
        if self.visibility_timeout <= 0:
            raise ValueError(f"visibility_timeout must be > 0, got {self.visibility_timeout}")
        if self.block_time <= 0:
            raise ValueError(f"block_time must be > 0, got {self.block_time}")

    @property
    def effective_claim_interval(self) -> float:
        if self.claim_interval is not None:
            return self.claim_interval
        return self.visibility_timeout / 2
