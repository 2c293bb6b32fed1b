"""Ownership follows the broker's membership: an engine that leaves hands its sagas to
the engines that stay, which adopt them and fire the timers it had armed, with no
restart (on every store x broker pairing; killed processes: test_node_loss.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from eventstore import EventStore
from orchestrator.runtime.engine import Engine
from tests.runtime.flows import CALLS


async def _record_types(store: EventStore, saga_id: str) -> list[str]:
    return [r.type for r in await store.read_stream(f"saga-{saga_id}")]


async def test_a_survivor_adopts_the_sagas_of_an_engine_that_left_and_fires_its_timers(
    store: EventStore, make_engine: Callable[..., Engine]
) -> None:
    first, second = make_engine(), make_engine()
    saga_id = f"later-{uuid.uuid4().hex[:8]}"  # FLAKY counts per saga id, per process
    await first.start()
    try:
        await first.start_saga("later", {"flaky": "once_more"}, saga_id=saga_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while "saga.schedule_retry" not in await _record_types(store, saga_id):
            assert loop.time() < deadline, "the first attempt never failed"
            await asyncio.sleep(0.02)
        await second.start()  # a live engine, joining while the retry is pending
    finally:
        await first.stop()  # leaves, its retry timer unfired: only the log has it
    try:
        state = await second.wait(saga_id, timeout=30)
    finally:
        await second.stop()
    assert state.status == "completed"
    assert CALLS[saga_id] == ["once_more", "once_more"]
    assert second.counts["adopted"] == 1
    types = await _record_types(store, saga_id)
    assert types.count("saga.timer_fired") == 1
    assert (await store.verify()).ok
