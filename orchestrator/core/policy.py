"""Step options: kind, retry policy and timeouts, as small frozen dataclasses."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["RetryPolicy", "StepKind", "StepOptions"]


class StepKind(StrEnum):
    """What a step promises, in the saga sense (Garcia-Molina & Salem)."""

    COMPENSATABLE = "compensatable"
    """Can be undone: it must have a compensation, and must come before every pivot."""
    PIVOT = "pivot"
    """The point of no return: once it has succeeded the saga only goes forward."""
    RETRIABLE = "retriable"
    """Needs no undo (read-only, or after the pivot): retried, never compensated."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a failed attempt is retried.

    The delay before retry ``k`` (1 for the first retry) is
    ``min(max_interval, initial_interval * backoff_coefficient ** (k - 1))``, shortened
    by up to ``jitter`` of itself. The jitter is derived from a hash of the next
    attempt's idempotency key, never from a random source, so replaying a saga
    reproduces the same timers.
    """

    max_attempts: int | None = 3
    """Attempts in total, the first included; ``1`` means never retry, ``None`` means
    retry for ever."""
    initial_interval: float = 1.0
    """Seconds before the first retry."""
    backoff_coefficient: float = 2.0
    """Each retry waits this many times longer than the one before (>= 1)."""
    max_interval: float = 60.0
    """No retry waits longer than this many seconds."""
    jitter: float = 0.2
    """Fraction (0 to 1) by which a delay may be shortened, to spread retries out."""

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be an int >= 1 or None, not {self.max_attempts!r}")
        for name in ("initial_interval", "max_interval"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not _finite(self.backoff_coefficient) or self.backoff_coefficient < 1:
            raise ValueError(
                "backoff_coefficient must be a finite number >= 1, "
                f"not {self.backoff_coefficient!r}"
            )
        if not _finite(self.jitter) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")

    def allows(self, attempts: int) -> bool:
        """Whether another attempt may follow ``attempts`` failed ones."""
        return self.max_attempts is None or attempts < self.max_attempts

    def delay(self, retry: int, key: str) -> float:
        """Seconds to wait before retry number ``retry`` (>= 1) of the attempt ``key``."""
        try:
            base = self.initial_interval * self.backoff_coefficient ** (retry - 1)
        except OverflowError:
            base = self.max_interval
        base = min(self.max_interval, base)
        if self.jitter == 0 or base == 0:
            return base
        digest = hashlib.sha256(key.encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return base * (1.0 - self.jitter * fraction)

    def describe(self) -> dict[str, Any]:
        """A plain-JSON description (part of a workflow's ``definition_hash``)."""
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": self.max_interval,
            "jitter": self.jitter,
        }


@dataclass(frozen=True, slots=True)
class StepOptions:
    """Everything about a step except its function and its dependencies."""

    kind: StepKind = StepKind.COMPENSATABLE
    """Compensatable (default), pivot or retriable; see ``StepKind``."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy of the step's own attempts."""
    timeout: float | None = None
    """Seconds one attempt may take before it counts as failed; ``None``: no limit."""
    compensation_retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy of the step's compensation."""
    compensation_timeout: float | None = None
    """Seconds one compensation attempt may take; ``None``: no limit."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StepKind(self.kind))
        for name in ("retry", "compensation_retry"):
            if not isinstance(getattr(self, name), RetryPolicy):
                raise ValueError(f"{name} must be a RetryPolicy, not {getattr(self, name)!r}")
        for name in ("timeout", "compensation_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not _finite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a number of seconds > 0 or None, not {value!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
