"""Group commit of round trips (brokers._coalesce), alone and in the Redis broker."""

from __future__ import annotations

import asyncio

import pytest

from brokers import Broker, BrokerError
from brokers._coalesce import Coalescer
from tests.brokers.conftest import Backend, take


class Server:
    """A fake round trip that records each batch and answers after a yield."""

    def __init__(self, refuse: set[int] | None = None, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.refuse = refuse or set()
        self.fail_first = fail_first

    async def send(self, items: list[int]) -> list[Exception | None]:
        self.batches.append(items)
        await asyncio.sleep(0.001)
        if self.fail_first and len(self.batches) == 1:
            raise BrokerError("connection lost")
        return [ValueError(f"refused {i}") if i in self.refuse else None for i in items]


async def test_concurrent_callers_share_round_trips_in_order() -> None:
    server = Server()
    coalescer = Coalescer(server.send)
    await asyncio.gather(*(coalescer.submit(i) for i in range(50)))
    assert [i for batch in server.batches for i in batch] == list(range(50))
    assert len(server.batches) <= 3  # the first alone, the rest waited together
    await coalescer.submit(99)  # alone: its own round trip at once
    assert server.batches[-1] == [99]


async def test_a_failed_round_trip_fails_its_callers_only() -> None:
    server = Server(fail_first=True)
    coalescer = Coalescer(server.send)
    results = await asyncio.gather(
        *(coalescer.submit(i) for i in range(10)), return_exceptions=True
    )
    first = server.batches[0]
    for i, result in enumerate(results):
        if i in first:
            assert isinstance(result, BrokerError)
        else:
            assert result is None
    await coalescer.submit(11)


async def test_a_refused_item_fails_its_own_caller() -> None:
    coalescer = Coalescer(Server(refuse={3}).send)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(6)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["ValueError"] + [
        "NoneType"
    ] * 2


async def test_a_cancelled_caller_stops_waiting_but_its_item_is_sent() -> None:
    server = Server()
    coalescer = Coalescer(server.send)
    sending = asyncio.ensure_future(coalescer.submit(1))  # its own round trip, at once
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(coalescer.submit(2))  # waits for the next
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await sending
    await coalescer.close()
    assert server.batches == [[1], [2]]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_concurrent_acknowledgements_are_done_when_they_return(backend: Backend) -> None:
    broker: Broker = await backend.make()
    await asyncio.gather(*(broker.publish("jobs", {"n": n}) for n in range(300)))
    got = await take(broker, "jobs", "g", 300, ack=False, batch_size=100)
    assert sorted(m.payload["n"] for m in got) == list(range(300))
    await asyncio.gather(*(broker.acknowledge(m) for m in got))
    assert await broker.get_consumer_lag("jobs", "g") == 0  # no waiting: already done
    await broker.publish("jobs", {"n": -1})
    [last] = await take(broker, "jobs", "g", 1)  # nothing acknowledged comes back
    assert last.payload == {"n": -1}
