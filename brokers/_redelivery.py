"""Redelivery policy: when a nacked message is delivered again (exponential backoff with
jitter), shared by every broker. The orchestrator's step retries are its own ``RetryPolicy``."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedeliveryPolicy:
    """How a nacked message is delivered again before it goes to the dead-letter queue.

    Retry ``n`` (1-based) waits ``min(max_delay, base_delay * multiplier**(n-1))``
    scaled down by up to ``jitter`` (so ``jitter=0.5`` waits between 50% and 100% of it).
    """

    max_retries: int = 3
    """Re-deliveries after a nack; the next nack after that dead-letters the message."""
    base_delay: float = 1.0
    """Seconds before the first retry."""
    max_delay: float = 60.0
    """Cap on any single delay, in seconds."""
    multiplier: float = 2.0
    """Growth factor between consecutive retries."""
    jitter: float = 0.5
    """Fraction (0..1) of the delay that is randomised away, to spread retry storms."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry ``attempt`` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base_delay * self.multiplier**exponent
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, raw)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (1-based), jitter applied."""
        ceiling = self.ceiling(attempt)
        draw = (rng or random).random()
        return ceiling * (1.0 - self.jitter * draw)
