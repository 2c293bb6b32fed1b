"""The engine on every store x broker pairing: sagas complete, compensate, retry, time
out, fail for good and resume; duplicates change nothing; the log verifies."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from brokers import Broker
from eventstore import EventStore
from orchestrator import CodecError, Engine, SagaExistsError, StepSucceeded, UnknownWorkflowError
from orchestrator.runtime.client import request_saga
from orchestrator.runtime.wire import Topics, parse_command, payload
from tests.runtime.flows import BROKEN_UNDO, CALLS


async def _types(store: EventStore, saga_id: str) -> list[str]:
    return [r.type for r in await store.read_stream(f"saga-{saga_id}")]


async def test_a_saga_completes_with_merged_outputs(engine: Engine, store: EventStore) -> None:
    saga_id = await engine.start_saga("diamond", {"order": 7})
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "completed"
    assert state.output == {"order": 7, "a": 1, "b": 2, "c": 3, "d": 5, "e": True}
    assert sorted(CALLS[saga_id]) == ["a", "b", "c", "d", "e"]
    assert CALLS[saga_id][0] == "a" and CALLS[saga_id][-2:] == ["d", "e"]
    types = await _types(store, saga_id)
    assert types[:2] == ["saga.start", "saga.started"] and types[-1] == "saga.finish"
    assert Counter(types)["saga.step_succeeded"] == 5
    assert (await store.verify(f"saga-{saga_id}")).ok


async def test_a_failure_compensates_dependents_before_their_dependencies(
    engine: Engine,
    store: EventStore,
) -> None:
    saga_id = await engine.start_saga("diamond", {"fail": "d"})
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "compensated"
    assert state.failure is not None and state.failure.step == "d"
    calls = CALLS[saga_id]
    undone = [c for c in calls if c.startswith("undo:")]
    assert sorted(undone) == ["undo:a", "undo:b", "undo:c"]  # each exactly once
    assert undone[-1] == "undo:a"  # b and c (which depend on a) are undone first
    assert "e" not in calls  # nothing starts after the failure
    records = await store.read_stream(f"saga-{saga_id}")
    comp = [r.data["step"] for r in records if r.type == "saga.compensation_succeeded"]
    assert sorted(comp) == ["a", "b", "c"] and comp[-1] == "a"


async def test_retries_then_succeeds(engine: Engine, store: EventStore) -> None:
    saga_id = await engine.start_saga("diamond", {"flaky": "c", "flaky_times": 2})
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "completed"
    assert CALLS[saga_id].count("c") == 3
    types = await _types(store, saga_id)
    assert Counter(types)["saga.schedule_retry"] == 2
    assert Counter(types)["saga.step_failed"] == 2


async def test_retries_exhausted_compensate(engine: Engine) -> None:
    saga_id = await engine.start_saga("diamond", {"flaky": "b", "flaky_times": 5})
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "compensated"
    assert CALLS[saga_id].count("b") == 3
    assert state.failure is not None and "hiccup 3" in state.failure.reason


async def test_a_step_that_hangs_times_out_and_the_saga_compensates(engine: Engine) -> None:
    saga_id = await engine.start_saga("slow", {})
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "compensated"
    assert CALLS[saga_id].count("hang") == 2  # retried once, per its policy
    assert CALLS[saga_id][-1] == "undo:first"
    assert "last" not in CALLS[saga_id]


async def test_a_compensation_that_keeps_failing_ends_failed_then_resumes(
    engine: Engine,
) -> None:
    saga_id = f"broken-undo-{uuid.uuid4().hex[:8]}"
    BROKEN_UNDO.add(saga_id)
    await engine.start_saga("diamond", {"fail": "d", "broken_undo": "b"}, saga_id=saga_id)
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "failed"
    assert state.compensation_failure is not None
    assert state.compensation_failure.step == "b"
    assert "undo of b is broken" in state.compensation_failure.reason
    assert "undo:a" not in CALLS[saga_id]  # a depends-before b: never undone before b

    BROKEN_UNDO.discard(saga_id)
    await engine.resume_saga(saga_id)
    state = await engine.wait(saga_id, timeout=20)
    assert state.status == "compensated"
    assert CALLS[saga_id][-1] == "undo:a"


async def test_duplicate_replies_are_recorded_once(
    make_engine: Callable[..., Engine],
    broker: Broker,
    store: EventStore,
) -> None:
    topics = Topics()
    async with make_engine(run_workers=False) as engine:
        saga_id = await engine.start_saga("diamond", {})
        async for message in broker.consume(topics.steps("diamond"), "test-worker"):
            command = parse_command(message.payload)
            await broker.acknowledge(message)
            break
        assert command.step == "a"
        reply = payload(StepSucceeded(saga_id, "a", 1, {"a": 1}, 0.0))
        for _ in range(3):
            await broker.publish(topics.replies, reply)
        for _ in range(200):
            types = await _types(store, saga_id)
            if types.count("saga.execute_step") == 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        types = await _types(store, saga_id)
    assert types.count("saga.step_succeeded") == 1
    assert types.count("saga.execute_step") == 3  # a, then b and c: issued once each


async def test_a_new_engine_reissues_what_a_crashed_one_left_in_flight(
    make_engine: Callable[..., Engine],
    store: EventStore,
    pair: tuple[str, Callable[[], Broker]],
) -> None:
    async with make_engine(run_workers=False) as first:
        saga_id = await first.start_saga("diamond", {})
        # the step command is published, nobody runs it; the engine then "crashes"
    fresh_broker = pair[1]()
    await fresh_broker.connect()
    try:
        from orchestrator.runtime.engine import EngineOptions
        from tests.runtime.flows import WORKFLOWS

        async with Engine(store, fresh_broker, WORKFLOWS, options=EngineOptions()) as second:
            state = await second.wait(saga_id, timeout=20)
    finally:
        await fresh_broker.disconnect()
    assert state.status == "completed"
    types = await _types(store, saga_id)
    assert types.count("saga.step_succeeded") == 5


async def test_sagas_requested_through_the_store_are_picked_up(
    engine: Engine,
    store: EventStore,
) -> None:
    ids = [await request_saga(store, "diamond", {"n": i}) for i in range(5)]
    states = [await engine.wait(saga_id, timeout=20) for saga_id in ids]
    assert [s.status for s in states] == ["completed"] * 5
    with pytest.raises(SagaExistsError):
        await request_saga(store, "diamond", {}, saga_id=ids[0])


async def test_many_sagas_at_once_each_record_each_outcome_once(
    engine: Engine,
    store: EventStore,
) -> None:
    inputs = [{"fail": "d"} if i % 5 == 0 else {} for i in range(40)]
    ids = await asyncio.gather(*(engine.start_saga("diamond", data) for data in inputs))
    states = await asyncio.gather(*(engine.wait(i, timeout=30) for i in ids))
    assert Counter(s.status for s in states) == {"completed": 32, "compensated": 8}
    for saga_id in ids:
        records = await store.read_stream(f"saga-{saga_id}")
        outcomes = Counter(
            (r.type, r.data.get("step"), r.data.get("attempt"))
            for r in records
            if r.kind == "event"
        )
        assert all(n == 1 for n in outcomes.values()), outcomes
    assert (await store.verify()).ok


async def test_clear_errors_for_unknown_workflows_duplicates_and_bad_input(
    engine: Engine,
) -> None:
    with pytest.raises(UnknownWorkflowError, match=r"unknown workflow 'nope'.*diamond"):
        await engine.start_saga("nope", {})
    await engine.start_saga("diamond", {}, saga_id="same")
    with pytest.raises(SagaExistsError, match="'same' already exists"):
        await engine.start_saga("diamond", {}, saga_id="same")
    with pytest.raises(CodecError):
        await engine.start_saga("diamond", {"when": object()})


async def test_a_step_command_lost_on_the_way_is_sent_again(
    make_engine: Callable[..., Engine],
    broker: Broker,
    store: EventStore,
) -> None:
    topics = Topics()
    async with make_engine(run_workers=False, reissue_after=0.3) as engine:
        saga_id = await engine.start_saga("diamond", {})
        async for message in broker.consume(topics.steps("diamond"), "saga-workers"):
            lost = parse_command(message.payload)
            await broker.acknowledge(message)  # taken, never answered: the reply is lost
            break
        from orchestrator import StepWorker

        worker = asyncio.create_task(StepWorker(broker, engine.workflows).run())
        try:
            state = await engine.wait(saga_id, timeout=20)
        finally:
            worker.cancel()
    assert lost.step == "a" and state.status == "completed"
    assert engine.counts["reissued"] >= 1
    types = await _types(store, saga_id)
    assert types.count("saga.step_succeeded") == 5
    assert types.count("saga.execute_step") == 5  # sent again, not recorded again


async def test_two_engines_sharing_the_replies_lose_nothing(
    store: EventStore,
    broker: Broker,
) -> None:
    """Replies of one saga land on either engine: a state one engine cached may be
    behind what the other has appended since; an outcome must never be taken for a
    duplicate on that stale view (it would be acknowledged and lost)."""
    from orchestrator import EngineOptions
    from tests.runtime.flows import WORKFLOWS

    first = Engine(store, broker, WORKFLOWS, options=EngineOptions(reissue_after=None))
    second = Engine(
        store, broker, WORKFLOWS, options=EngineOptions(run_workers=False, reissue_after=None)
    )
    async with first, second:
        ids = await asyncio.gather(*(first.start_saga("diamond", {}) for _ in range(30)))
        states = await asyncio.gather(*(second.wait(i, timeout=30) for i in ids))
    assert [s.status for s in states] == ["completed"] * 30
    for saga_id in ids:
        types = await _types(store, saga_id)
        assert types.count("saga.step_succeeded") == 5
    assert (await store.verify()).ok


async def test_time_waiting_in_a_queue_uses_up_no_attempt(
    make_engine: Callable[..., Engine], broker: Broker, store: EventStore
) -> None:
    """A step's timeout counts from the moment a worker starts the attempt
    (start-to-close): a command that waits in the queue for longer than the timeout,
    with no worker running, still runs as attempt 1 and succeeds."""
    from orchestrator import StepWorker

    async with make_engine(run_workers=False) as engine:
        saga_id = await engine.start_saga("slow", {"quick": True})
        await asyncio.sleep(0.6)  # three times `first`'s timeout of 0.2 s, in the queue
        assert "saga.step_timed_out" not in await _types(store, saga_id)
        worker = asyncio.create_task(StepWorker(broker, engine.workflows).run())
        try:
            state = await engine.wait(saga_id, timeout=20)
        finally:
            worker.cancel()
    assert state.status == "completed"
    types = await _types(store, saga_id)
    assert "saga.step_timed_out" not in types
    assert types.count("saga.execute_step") == 3  # first, hang, last: attempt 1 each


async def test_a_step_longer_than_the_visibility_timeout_runs_once(
    make_engine: Callable[..., Engine],
) -> None:
    """The worker keeps its command alive while the step runs, so the broker does not
    hand it to a second worker after the visibility timeout (2 s here)."""
    async with make_engine() as first, make_engine() as second:
        saga_id = await first.start_saga("long", {"seconds": 2.8})
        state = await second.wait(saga_id, timeout=20)
    assert state.status == "completed"
    assert CALLS[saga_id] == ["crunch"]


async def test_health_reports_store_broker_and_partitions(
    make_engine: Callable[..., Engine], broker: Broker
) -> None:
    async with make_engine() as engine:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not engine.ownership.partitions:  # the first assignment
            assert loop.time() < deadline, "no partitions were ever assigned"
            await asyncio.sleep(0.05)
        health = await engine.health()
        assert health["status"] == "ok", health
        assert health["store"]["status"] == "ok" and health["broker"]["status"] == "healthy"
        assert health["partitions"] and "started" in health["counts"]
        await broker.disconnect()  # the broker goes away under the engine
        degraded = await engine.health()
        await broker.connect()
    assert degraded["status"] == "degraded"
    assert degraded["broker"]["status"] == "unhealthy"
