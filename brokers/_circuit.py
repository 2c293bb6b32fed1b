"""A circuit breaker around broker I/O: closed → open after N failures → half-open probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from brokers._errors import BrokerConnectionError, CircuitOpenError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    """When the breaker opens, how long it stays open, and how consumers reconnect."""

    failure_threshold: int = 5
    """Consecutive connection failures that open the circuit."""
    reset_timeout: float = 5.0
    """Seconds the circuit stays open before one half-open probe is let through."""
    reconnect_base_delay: float = 0.1
    """First wait of a consumer loop that lost its connection, in seconds."""
    reconnect_max_delay: float = 5.0
    """Cap on a consumer loop's reconnect wait (doubles from the base)."""
    enabled: bool = True
    """False: the breaker never opens and every call goes through (the seed's
    ``circuit_breaker_enabled: false``); consumers still reconnect with backoff."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be > 0, got {self.reset_timeout}")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    """The policy turned the breaker off: it never opens."""


class CircuitBreaker:
    """Counts consecutive :class:`BrokerConnectionError`; other errors do not count."""

    def __init__(
        self,
        name: str,
        policy: CircuitBreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = CircuitState.CLOSED
        self._probe: asyncio.Future[None] | None = None

    @property
    def state(self) -> CircuitState:
        if not self.policy.enabled:
            return CircuitState.DISABLED
        if self._state is CircuitState.OPEN and self.retry_in() <= 0:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self._state is CircuitState.CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.policy.reset_timeout - self._clock())

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.policy.enabled:
            return await fn()
        if self._state is not CircuitState.CLOSED:
            if self._probe is not None or self.retry_in() > 0:
                raise CircuitOpenError(self.name, self._failures, self.retry_in())
            # Half-open: exactly one caller probes; the others keep failing fast.
            self._state = CircuitState.HALF_OPEN
            self._probe = asyncio.get_running_loop().create_future()
            try:
                result = await fn()
            except BrokerConnectionError:
                self._trip()
                raise
            finally:
                probe, self._probe = self._probe, None
                probe.set_result(None)
            self._reset()
            return result
        try:
            result = await fn()
        except BrokerConnectionError:
            self._failures += 1
            if self._failures >= self.policy.failure_threshold:
                self._trip()
            raise
        self._failures = 0
        return result

    def _trip(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()

    def _reset(self) -> None:
        self._state = CircuitState.CLOSED
        self._failures = 0
