"""The seed's metric names count what they say (``BrokerMetrics``, on a fake clock)."""

from __future__ import annotations

from brokers._metrics import BrokerMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throughput_counts_publishes_and_deliveries_over_the_last_ten_seconds() -> None:
    clock = Clock()
    metrics = BrokerMetrics(clock)
    clock.now += 20.0  # connected a while ago: the window is a full 10 s
    metrics.on_publish(3)
    for _ in range(3):
        metrics.on_consume(0.001)
    assert metrics.snapshot()["throughput_per_second"] == 0.6  # 6 messages / 10 s
    clock.now += 5.0
    metrics.on_publish(4)
    assert metrics.snapshot()["throughput_per_second"] == 1.0
    clock.now += 6.0  # the first six are more than 10 s old now
    assert metrics.snapshot()["throughput_per_second"] == 0.4
    clock.now += 60.0
    assert metrics.snapshot()["throughput_per_second"] == 0.0


def test_throughput_just_after_connecting_divides_by_the_time_connected() -> None:
    clock = Clock()
    metrics = BrokerMetrics(clock)
    clock.now += 2.0
    metrics.on_publish(10)
    assert metrics.snapshot()["throughput_per_second"] == 5.0


def test_failed_means_failed_for_good_and_nacks_are_counted_apart() -> None:
    metrics = BrokerMetrics(Clock())
    metrics.nacked += 3  # two retries, then the third nack dead-letters it
    metrics.retried += 2
    metrics.dead_lettered += 1
    snapshot = metrics.snapshot()
    assert snapshot["messages_nacked"] == 3
    assert snapshot["messages_retried"] == 2
    assert snapshot["messages_failed"] == snapshot["messages_dead_lettered"] == 1
