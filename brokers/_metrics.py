"""Counters every broker keeps, read by ``Broker.get_metrics()`` and by the orchestrator's
Prometheus collector (the same integers: the two cannot disagree).

Nothing here knows Prometheus: the counters are plain attributes, and the delivery
latency goes to ``observe_delivery`` when someone set it (no call, no cost, otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

_WINDOW = 10  # seconds of history behind throughput_per_second


class BrokerMetrics:
    """Plain counters (O(1) per event) plus a 10 s sliding throughput window.

    ``Broker.connect()`` starts a new one: counters count from the connection.
    """

    observe_delivery: Callable[[float], None] | None
    """Called with each first delivery's latency (seconds from publish to consume),
    when set; a Prometheus histogram's ``observe``, say."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self.published = 0
        self.consumed = 0
        self.acknowledged = 0
        self.nacked = 0
        self.retried = 0
        self.dead_lettered = 0
        self._latency_total = 0.0
        self._latency_count = 0
        self._buckets = [0] * _WINDOW
        self._bucket_second = [0] * _WINDOW
        self.observe_delivery = None

    def _tick(self, n: int) -> None:
        second = int(self._clock())
        slot = second % _WINDOW
        if self._bucket_second[slot] != second:
            self._bucket_second[slot] = second
            self._buckets[slot] = 0
        self._buckets[slot] += n

    def on_publish(self, n: int = 1) -> None:
        self.published += n
        self._tick(n)

    def on_consume(self, latency_s: float) -> None:
        """One message delivered; ``latency_s`` < 0 for a redelivery (not timed)."""
        self.consumed += 1
        self._tick(1)
        if latency_s >= 0:
            self._latency_total += latency_s
            self._latency_count += 1
            if self.observe_delivery is not None:
                self.observe_delivery(latency_s)

    @property
    def latency_seconds_total(self) -> float:
        """Sum of the first deliveries' latencies (the seed's average's numerator)."""
        return self._latency_total

    @property
    def latency_count(self) -> int:
        """First deliveries timed (the seed's average's denominator)."""
        return self._latency_count

    def uptime(self) -> float:
        return self._clock() - self.started_at

    @property
    def failed(self) -> int:
        """Messages that failed for good: dead-lettered (the seed's ``messages_failed``).
        A nack that leads to a retry is not a failure yet: see ``nacked``."""
        return self.dead_lettered

    def throughput(self) -> float:
        """Messages published and delivered per second over the last 10 seconds (or
        since connecting, if that is sooner)."""
        now = int(self._clock())
        recent = sum(
            count
            for count, second in zip(self._buckets, self._bucket_second, strict=True)
            if now - _WINDOW < second <= now
        )
        span = min(float(_WINDOW), max(self.uptime(), 1e-9))
        return recent / span

    def snapshot(self) -> dict[str, Any]:
        average = self._latency_total / self._latency_count if self._latency_count else 0.0
        return {
            "messages_published": self.published,
            "messages_consumed": self.consumed,
            "messages_acknowledged": self.acknowledged,
            "messages_failed": self.failed,
            "messages_nacked": self.nacked,
            "messages_retried": self.retried,
            "messages_dead_lettered": self.dead_lettered,
            "throughput_per_second": round(self.throughput(), 3),
            "average_latency_ms": round(average * 1000.0, 3),
            "uptime_seconds": round(self.uptime(), 3),
        }
