"""Regression tests for what the chaos runs caught when PostgreSQL went down under a
running engine (before: replies were nacked until they were dead-lettered, and a timer
whose callback hit the outage was dropped, so sagas stayed unfinished until every
engine was restarted). Now the engine waits and resumes by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from brokers import ConsumerOptions, InMemoryBroker, RedeliveryPolicy
from eventstore import EventStore
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.options import EngineOptions
from orchestrator.runtime.wire import Topics
from tests.runtime.flows import CALLS, WORKFLOWS
from tests.servers import PostgresServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so that killing it disturbs no other test."""
    with PostgresServer(durable_commits=True) as server:
        yield server


async def _wait_for(store: EventStore, saga_id: str, record_type: str) -> None:
    async with asyncio.timeout(20):
        while record_type not in [r.type for r in await store.read_stream(f"saga-{saga_id}")]:  # noqa: ASYNC110 (a condition in the store)
            await asyncio.sleep(0.02)


async def test_replies_and_a_timer_wait_for_the_store_and_nothing_is_dead_lettered(
    postgres: PostgresServer,
) -> None:
    store = await EventStore.open(postgres.create_database("outage"))
    # A small redelivery budget: a reply nacked during the outage would be dead-lettered
    # within half a second; it must wait instead.
    broker = InMemoryBroker(
        consumer_options=ConsumerOptions(visibility_timeout=2.0),
        retry=RedeliveryPolicy(max_retries=1, base_delay=0.1, max_delay=0.2),
    )
    await broker.connect()
    engine = Engine(store, broker, WORKFLOWS, options=EngineOptions(reissue_after=None))
    retried = f"later-{uuid.uuid4().hex[:8]}"
    crossing = f"diamond-{uuid.uuid4().hex[:8]}"
    try:
        async with engine:
            # A retry due 2 s from now: it falls due while the store is down.
            await engine.start_saga("later", {"flaky": "once_more"}, saga_id=retried)
            await _wait_for(store, retried, "saga.schedule_retry")
            await engine.start_saga("diamond", {}, saga_id=crossing)
            await asyncio.to_thread(postgres.kill)  # replies of `crossing` are on their way
            down = await engine.health()
            await asyncio.sleep(3.0)
            await asyncio.to_thread(postgres.start)
            first = await engine.wait(retried, timeout=60)
            second = await engine.wait(crossing, timeout=60)
            up = await engine.health()
        dead = await broker.get_dead_letter_messages(Topics().replies)
    finally:
        await broker.disconnect()
        await store.close()
    assert down["status"] == "degraded" and down["store"]["status"] == "unavailable"
    assert up["status"] == "ok"
    assert first.status == "completed" and CALLS[retried] == ["once_more", "once_more"]
    assert second.status == "completed"
    assert dead == [], [d.failure_reason for d in dead]
