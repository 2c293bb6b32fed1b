"""Sagas over a real Apache Kafka: the engine and its workers on ``KafkaBroker``.

Sagas complete and compensate; a worker killed in the middle of a run leaves its step
commands unacknowledged, the group hands its partitions to the surviving worker, and
every saga still finishes with each outcome recorded exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from brokers import ConsumerOptions, KafkaBroker
from eventstore import EventStore
from orchestrator import Engine, WorkflowBuilder
from orchestrator.runtime.engine import EngineOptions
from orchestrator.runtime.worker import StepWorker, WorkerOptions, current_step
from tests.runtime.flows import CALLS, WORKFLOWS

FAST = ConsumerOptions(visibility_timeout=2.0, block_time=0.05)

HOLD = asyncio.Event()
"""While clear, the ``charge`` step of ``order`` blocks: the worker running it is stuck."""
RAN: Counter[tuple[str, str]] = Counter()

order = WorkflowBuilder("order")


def _undo(name: str) -> Any:
    def undo(data: dict[str, Any]) -> None:
        RAN[(current_step().saga_id, f"undo:{name}")] += 1

    undo.__name__ = f"undo_{name}"
    return undo


@order.step(compensation=_undo("reserve"))
def reserve(data: dict[str, Any]) -> dict[str, Any]:
    RAN[(current_step().saga_id, "reserve")] += 1
    return {"reserved": True}


@order.step(after=["reserve"], compensation=_undo("charge"))
async def charge(data: dict[str, Any]) -> dict[str, Any]:
    await HOLD.wait()
    RAN[(current_step().saga_id, "charge")] += 1
    if data.get("fail") == "charge":
        from orchestrator import StepError

        raise StepError("card declined", retryable=False)
    return {"charged": True}


@order.step(after=["charge"], kind="pivot")
def ship(data: dict[str, Any]) -> dict[str, Any]:
    RAN[(current_step().saga_id, "ship")] += 1
    return {"shipped": True}


ORDER = order.build()


@pytest.fixture
def make_broker(kafka_bootstrap: str) -> Callable[[], KafkaBroker]:
    prefix = f"sagas-{uuid.uuid4().hex[:8]}."
    return lambda: KafkaBroker(kafka_bootstrap, topic_prefix=prefix, consumer_options=FAST)


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    opened = await EventStore.open("sqlite:///:memory:")
    yield opened
    await opened.close()


async def _outcomes_once(store: EventStore, saga_id: str) -> None:
    records = await store.read_stream(f"saga-{saga_id}")
    outcomes = Counter(
        (r.type, r.data.get("step"), r.data.get("attempt")) for r in records if r.kind == "event"
    )
    assert all(n == 1 for n in outcomes.values()), outcomes


async def test_sagas_complete_and_compensate_over_kafka(
    store: EventStore, make_broker: Callable[[], KafkaBroker]
) -> None:
    broker = make_broker()
    await broker.connect()
    try:
        async with Engine(store, broker, WORKFLOWS, options=EngineOptions()) as engine:
            inputs = [{"fail": "d"} if i % 4 == 0 else {} for i in range(16)]
            ids = await asyncio.gather(*(engine.start_saga("diamond", d) for d in inputs))
            states = await asyncio.gather(*(engine.wait(i, timeout=60) for i in ids))
    finally:
        await broker.disconnect()
    assert Counter(s.status for s in states) == {"completed": 12, "compensated": 4}
    for saga_id, data in zip(ids, inputs, strict=True):
        await _outcomes_once(store, saga_id)
        calls = CALLS[saga_id]
        if data:
            assert sorted(c for c in calls if c.startswith("undo:")) == [
                "undo:a",
                "undo:b",
                "undo:c",
            ]
            assert calls[-1] == "undo:a"  # dependents first, their dependency last
        else:
            assert sorted(calls) == ["a", "b", "c", "d", "e"]
    assert (await store.verify()).ok


async def test_a_worker_killed_mid_run_has_its_commands_redelivered(
    store: EventStore, make_broker: Callable[[], KafkaBroker]
) -> None:
    HOLD.clear()
    engine_broker, doomed_broker, survivor_broker = make_broker(), make_broker(), make_broker()
    for b in (engine_broker, doomed_broker, survivor_broker):
        await b.connect()
    options = WorkerOptions(group="order-workers", batch_size=8)
    try:
        async with Engine(
            store, engine_broker, [ORDER], options=EngineOptions(run_workers=False)
        ) as engine:
            doomed = StepWorker(doomed_broker, {"order": ORDER}, options=_named(options, "doomed"))
            doomed_task = asyncio.create_task(doomed.run())
            inputs = [{"fail": "charge"} if i % 3 == 0 else {} for i in range(12)]
            ids = await asyncio.gather(*(engine.start_saga("order", d) for d in inputs))
            # Every saga reserves, then its charge command reaches the doomed worker,
            # which is stuck in it: nothing acknowledged.
            async with asyncio.timeout(30):
                while sum(RAN[(i, "reserve")] for i in ids) < len(ids):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
            assert not any(RAN[(i, "charge")] for i in ids)
            doomed_task.cancel()  # the kill: in-flight steps die, the member leaves
            with contextlib.suppress(asyncio.CancelledError):
                await doomed_task
            await doomed_broker.disconnect()
            HOLD.set()
            survivor = StepWorker(
                survivor_broker, {"order": ORDER}, options=_named(options, "survivor")
            )
            survivor_task = asyncio.create_task(survivor.run())
            try:
                states = await asyncio.gather(*(engine.wait(i, timeout=60) for i in ids))
            finally:
                survivor_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await survivor_task
    finally:
        for b in (engine_broker, doomed_broker, survivor_broker):
            await b.disconnect()
    assert Counter(s.status for s in states) == {"completed": 8, "compensated": 4}
    for saga_id, data in zip(ids, inputs, strict=True):
        await _outcomes_once(store, saga_id)
        assert RAN[(saga_id, "reserve")] == 1
        assert RAN[(saga_id, "charge")] == 1  # redelivered once, run once to the end
        if data:
            assert RAN[(saga_id, "undo:reserve")] == 1 and RAN[(saga_id, "ship")] == 0
        else:
            assert RAN[(saga_id, "ship")] == 1 and RAN[(saga_id, "undo:reserve")] == 0
    assert (await store.verify()).ok


def _named(options: WorkerOptions, name: str) -> WorkerOptions:
    from dataclasses import replace

    return replace(options, consumer=name)
