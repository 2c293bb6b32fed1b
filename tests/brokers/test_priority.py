"""Priority, on every backend: waiting messages of a higher priority are delivered first.

A topic has ``priority_levels`` lanes (3 by default); a message's priority, clamped to
``0 … levels - 1``, is its lane, and a consumer takes waiting messages from the highest
lane first, each lane in publish order.
"""

from __future__ import annotations

import asyncio

import pytest

from brokers import Broker, MessagingConfig
from tests.brokers.conftest import Backend, eventually, take


async def _publish_three_lanes(broker: Broker, topic: str) -> None:
    await broker.publish_batch(topic, [{"n": n} for n in range(10)])  # priority 0
    await broker.publish_batch(topic, [{"n": n} for n in range(10, 20)], priority=1)
    await broker.publish_batch(topic, [{"n": n} for n in range(20, 25)], priority=9)
    for n in range(25, 30):  # one by one, and above the top lane: clamped into it
        await broker.publish(topic, {"n": n}, priority=2 + n)


async def test_waiting_messages_of_higher_priority_are_delivered_first(broker: Broker) -> None:
    await _publish_three_lanes(broker, "jobs")
    got = await take(broker, "jobs", "g", 30, batch_size=4)
    assert [m.payload["n"] for m in got] == [*range(20, 30), *range(10, 20), *range(10)]
    assert [m.priority for m in got[:10]] == [9] * 5 + list(range(27, 32))
    assert await broker.get_consumer_lag("jobs", "g") == 0


async def test_each_group_sees_every_lane_in_priority_order(broker: Broker) -> None:
    await _publish_three_lanes(broker, "jobs")
    first = await take(broker, "jobs", "a", 30, batch_size=7)
    second = await take(broker, "jobs", "b", 30, batch_size=30)
    assert [m.payload["n"] for m in first] == [m.payload["n"] for m in second]
    assert [m.payload["n"] for m in second][:10] == list(range(20, 30))


async def test_lag_counts_every_lane_until_acknowledged(broker: Broker) -> None:
    await _publish_three_lanes(broker, "jobs")
    assert await broker.get_consumer_lag("jobs", "g") == 30
    got = await take(broker, "jobs", "g", 12, ack=False)
    assert {m.payload["n"] for m in got} == {*range(20, 30), 10, 11}
    assert await broker.get_consumer_lag("jobs", "g") == 30  # delivered, not acknowledged
    for message in got:
        await broker.acknowledge(message)
    assert await broker.get_consumer_lag("jobs", "g") == 18


async def test_a_high_priority_message_overtakes_a_backlog(backend: Backend) -> None:
    """A consumer working through a backlog gets a high-priority message published
    meanwhile before the rest of the backlog.

    Each message takes the handler a little work (5 ms), as real ones do. On Kafka the
    urgent record reaches the loop one fetch round trip after it is written (0.2 to 3 ms
    on this machine); a loop doing no work at all would hand out dozens of buffered
    messages in that time, which priority does not take back (docs/brokers.md)."""
    broker = await backend.make()
    await broker.publish_batch("work", [{"n": n} for n in range(200)])
    seen: list[int] = []
    async for message in broker.consume("work", "g", batch_size=5):
        seen.append(message.payload["n"])
        await asyncio.sleep(0.005)  # the handler's work
        await broker.acknowledge(message)
        if len(seen) == 20:
            await broker.publish("work", {"n": -1}, priority=2)
        if -1 in seen:
            break
        assert len(seen) < 200, "the urgent message waited behind the whole backlog"
    assert seen.index(-1) < 60


async def test_one_level_keeps_publish_order(backend: Backend) -> None:
    broker = await backend.make(priority_levels=1)
    await _publish_three_lanes(broker, "jobs")
    got = await take(broker, "jobs", "g", 30)
    assert [m.payload["n"] for m in got] == list(range(30))


async def test_retry_of_a_high_priority_message_is_not_lost(broker: Broker) -> None:
    await broker.publish("jobs", {"n": 1}, priority=2)
    [first] = await take(broker, "jobs", "g", 1, ack=False)
    await broker.nack(first, "try again")
    [again] = await take(broker, "jobs", "g", 1)
    assert again.id == first.id and again.retry_count == 1 and again.priority == 2

    async def drained() -> bool:
        return await broker.get_consumer_lag("jobs", "g") == 0

    await eventually(drained, "the retried message acknowledged")


@pytest.mark.parametrize("levels", [0, 11, 2.5])
def test_priority_levels_are_checked(levels: object) -> None:
    from brokers import InMemoryBroker

    with pytest.raises(ValueError, match="priority_levels must be an int from 1 to 10"):
        InMemoryBroker(priority_levels=levels)


def test_the_setting_reaches_the_broker() -> None:
    config = MessagingConfig.load({"priority_levels": 5})
    assert config.create_broker().priority_levels == 5
    assert MessagingConfig.load().create_broker().priority_levels == 3
