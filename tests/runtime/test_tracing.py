"""OpenTelemetry tracing: one saga is one trace, with a span for the saga, one per step
attempt and one per compensation, linked by the ``traceparent`` header across real
Redis and Kafka hops between an engine and a worker that share no tracer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from brokers import Broker, InMemoryBroker, KafkaBroker, RedisStreamsBroker
from eventstore import EventStore
from orchestrator import RetryPolicy, StepError, WorkflowBuilder
from orchestrator.core.events import SagaStarted
from orchestrator.runtime.client import request_saga
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.runtime.worker import StepWorker, current_step
from orchestrator.telemetry.tracing import SagaTracing
from tests.runtime.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]

INNER: dict[str, list[tuple[int, int]]] = {}
"""Saga id → (trace id, span id) of the current span inside each call of ``pay``."""
BROKEN: set[str] = set()

shop = WorkflowBuilder("shop")
RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.02)


@shop.step(compensation=lambda data: None, retry=RETRY)
def reserve(data: dict[str, Any]) -> dict[str, Any]:
    return {"reserved": True}


def _refund(data: dict[str, Any]) -> None:
    if current_step().saga_id in BROKEN:
        raise StepError("refund desk closed", retryable=False)


@shop.step(after=["reserve"], compensation=_refund, retry=RETRY)
def pay(data: dict[str, Any]) -> dict[str, Any]:
    ctx = current_step()
    span = trace.get_current_span().get_span_context()
    INNER.setdefault(ctx.saga_id, []).append((span.trace_id, span.span_id))
    if data.get("flaky") and ctx.attempt == 1:
        raise RuntimeError("card network hiccup")
    return {"paid": True}


@shop.step(after=["pay"], kind="pivot")
def ship(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("fail"):
        raise StepError("no courier", retryable=False)
    return {"shipped": True}


SHOP = shop.build()


class Traced:
    """A tracer provider of its own, whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = SagaTracing(self.provider)

    def spans(self, saga_id: str) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get("sagaflow.saga_id") == saga_id
        ]


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def attempts(spans: list[ReadableSpan], name: str) -> list[tuple[Any, str, StatusCode]]:
    """(attempt, outcome, status) of each span called ``name``, by attempt."""
    found = [
        (attrs["sagaflow.attempt"], attrs["sagaflow.outcome"], s.status.status_code)
        for s in named(spans, name)
        if (attrs := s.attributes or {})
    ]
    return sorted(found)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    opened = await EventStore.open("sqlite:///:memory:")
    yield opened
    await opened.close()


async def test_one_saga_is_one_trace_with_a_span_per_attempt_and_compensation(
    store: EventStore,
) -> None:
    traced = Traced()
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    caller = traced.provider.get_tracer("the-callers-app")
    options = EngineOptions(tracing=traced.tracing)
    try:
        async with Engine(store, broker, [SHOP], options=options) as engine:
            with caller.start_as_current_span("POST /orders") as request:
                ok = await engine.start_saga("shop", {"flaky": True})
            undone = await engine.start_saga("shop", {"fail": True})
            assert (await engine.wait(ok, timeout=30)).status == "completed"
            assert (await engine.wait(undone, timeout=30)).status == "compensated"
    finally:
        await broker.disconnect()

    spans = traced.spans(ok)
    (saga,) = named(spans, "saga shop")
    trace_id = saga.context.trace_id
    # The saga joins the caller's trace; every span of it is in that trace.
    assert trace_id == request.get_span_context().trace_id
    assert parent_id(saga) == request.get_span_context().span_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert (saga.attributes or {})["sagaflow.saga.status"] == "completed"
    assert saga.status.status_code is StatusCode.UNSET
    events = [e.name for e in saga.events]
    assert events[0] == "saga.started" and events[-1] == "saga.step_succeeded"
    assert events.count("saga.step_failed") == 1  # pay's first attempt
    # One span per attempt, each a child of the saga's span, kind CONSUMER.
    assert attempts(spans, "step reserve") == [(1, "succeeded", StatusCode.UNSET)]
    assert attempts(spans, "step pay") == [
        (1, "failed", StatusCode.ERROR),
        (2, "succeeded", StatusCode.UNSET),
    ]
    assert attempts(spans, "step ship") == [(1, "succeeded", StatusCode.UNSET)]
    steps = [s for s in spans if s is not saga]
    assert {parent_id(s) for s in steps} == {saga.context.span_id}
    assert {s.kind for s in steps} == {SpanKind.CONSUMER}
    for s in steps:
        attrs = s.attributes or {}
        assert attrs["sagaflow.workflow"] == "shop" and attrs["sagaflow.compensation"] is False
    # While the step function runs, its span is the current one: its own spans nest.
    pay_spans = {s.context.span_id for s in named(spans, "step pay")}
    assert {(t, sid in pay_spans) for t, sid in INNER[ok]} == {(trace_id, True)}
    # The saga's span is recorded with its start, so another process can continue it.
    records = await store.read_stream(f"saga-{ok}")
    (started,) = [r for r in records if r.type == SagaStarted.type_name]
    recorded = started.metadata["traceparent"]
    assert recorded.startswith(f"00-{trace_id:032x}-{saga.context.span_id:016x}-")

    spans = traced.spans(undone)
    (saga,) = named(spans, "saga shop")
    assert saga.parent is None  # started outside any span: a trace of its own
    assert (saga.attributes or {})["sagaflow.saga.status"] == "compensated"
    assert saga.status.status_code is StatusCode.ERROR
    assert attempts(spans, "step ship") == [(1, "failed", StatusCode.ERROR)]
    compensations = named(spans, "compensate pay") + named(spans, "compensate reserve")
    assert len(compensations) == 2
    for s in compensations:
        assert parent_id(s) == saga.context.span_id
        assert (s.attributes or {})["sagaflow.compensation"] is True
    # Dependents are undone first: pay's compensation ends before reserve's starts.
    undo_pay, undo_reserve = compensations
    assert undo_pay.end_time is not None and undo_reserve.start_time is not None
    assert undo_pay.end_time <= undo_reserve.start_time


async def test_a_resumed_saga_continues_its_trace_and_a_client_request_joins_the_callers(
    store: EventStore,
) -> None:
    """A saga that failed (needs a person) ends its span; the resume opens a new one,
    a child of the recorded span, in the same trace. A saga requested through the store
    with the caller's ``traceparent`` is started by the engine inside that trace."""
    traced = Traced()
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    caller_trace = uuid.uuid4().int >> 64 << 64 | 1  # any 128-bit id that is not zero
    caller_span = 0x1234_5678_9ABC_DEF0
    traceparent = f"00-{caller_trace:032x}-{caller_span:016x}-01"
    saga_id = await request_saga(store, "shop", {"fail": True}, traceparent=traceparent)
    BROKEN.add(saga_id)
    try:
        async with Engine(store, broker, [SHOP], options=EngineOptions(tracing=traced.tracing)):
            from orchestrator.runtime.client import wait_in_store

            failed = await wait_in_store(store, saga_id, timeout=30)
            assert failed.status == "failed"
            (first,) = named(traced.spans(saga_id), "saga shop")
            assert first.context.trace_id == caller_trace
            assert parent_id(first) == caller_span
            assert (first.attributes or {})["sagaflow.saga.status"] == "failed"
            BROKEN.discard(saga_id)
        async with Engine(
            store, broker, [SHOP], options=EngineOptions(tracing=traced.tracing)
        ) as engine:
            assert (await engine.resume_saga(saga_id)).status != "failed"
            assert (await engine.wait(saga_id, timeout=30)).status == "compensated"
    finally:
        BROKEN.discard(saga_id)
        await broker.disconnect()
    spans = traced.spans(saga_id)
    first, second = sorted(named(spans, "saga shop"), key=lambda s: s.start_time or 0)
    assert second.context.trace_id == caller_trace
    assert parent_id(second) == first.context.span_id
    assert (second.attributes or {})["sagaflow.saga.continued"] is True
    assert second.events[0].name == "saga.resume_requested"
    refunds = named(spans, "compensate pay")
    assert [s.status.status_code for s in refunds] == [StatusCode.ERROR, StatusCode.UNSET]
    assert parent_id(refunds[0]) == first.context.span_id
    assert parent_id(refunds[1]) == second.context.span_id


async def test_without_tracing_nothing_is_recorded_or_sent(store: EventStore) -> None:
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    sent: list[dict[str, str]] = []
    publish_batch = broker.publish_batch

    async def spy(topic: str, payloads: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs.get("headers") or {}))
        return await publish_batch(topic, payloads, **kwargs)

    broker.publish_batch = spy  # type: ignore[method-assign]
    try:
        async with Engine(store, broker, [SHOP]) as engine:
            saga_id = await engine.start_saga("shop", {})
            assert (await engine.wait(saga_id, timeout=30)).status == "completed"
    finally:
        await broker.disconnect()
    assert sent and all("traceparent" not in headers for headers in sent)
    records = await store.read_stream(f"saga-{saga_id}")
    assert all("traceparent" not in r.metadata for r in records)


@pytest.fixture(params=["redis", "kafka"])
def make_broker(request: pytest.FixtureRequest) -> Callable[[], Broker]:
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return lambda: RedisStreamsBroker(redis_url=redis_url, consumer_options=FAST)
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    prefix = f"traced-{uuid.uuid4().hex[:8]}."
    return lambda: KafkaBroker(bootstrap, topic_prefix=prefix, consumer_options=FAST)


async def test_the_trace_crosses_a_real_broker_between_engine_and_worker(
    store: EventStore, make_broker: Callable[[], Broker]
) -> None:
    """The engine and the worker have separate connections and separate tracer
    providers: only the ``traceparent`` header links the worker's spans to the saga."""
    at_engine, at_worker = Traced(), Traced()
    engine_broker, worker_broker = make_broker(), make_broker()
    await engine_broker.connect()
    await worker_broker.connect()
    options = EngineOptions(run_workers=False, tracing=at_engine.tracing)
    try:
        async with Engine(store, engine_broker, [SHOP], options=options) as engine:
            worker = StepWorker(worker_broker, {"shop": SHOP}, tracing=at_worker.tracing)
            working = asyncio.create_task(worker.run())
            try:
                ids = [await engine.start_saga("shop", {"fail": i == 1}) for i in range(2)]
                for saga_id in ids:
                    await engine.wait(saga_id, timeout=60)
            finally:
                working.cancel()
                await asyncio.gather(working, return_exceptions=True)
    finally:
        await engine_broker.disconnect()
        await worker_broker.disconnect()
    steps = ["step reserve", "step pay", "step ship"]
    undos = ["compensate pay", "compensate reserve"]
    for saga_id, expected in zip(ids, (steps, steps + undos), strict=True):
        (saga,) = named(at_engine.spans(saga_id), "saga shop")
        assert not [s for s in at_engine.spans(saga_id) if s is not saga]  # none ran here
        remote = at_worker.spans(saga_id)
        assert sorted(s.name for s in remote) == sorted(expected)
        for span in remote:
            assert span.context.trace_id == saga.context.trace_id
            assert parent_id(span) == saga.context.span_id
            assert span.parent is not None and span.parent.is_remote


def test_an_engine_without_tracing_loads_no_tracer() -> None:
    """Off costs nothing: neither the tracing module nor the SDK's tracer is loaded
    (redis-py 8 imports parts of OpenTelemetry on its own when it is installed)."""
    script = """
import asyncio, sys
from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator import Engine
from tests.runtime.flows import WORKFLOWS

async def main():
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker()
    await broker.connect()
    async with Engine(store, broker, WORKFLOWS) as engine:
        saga_id = await engine.start_saga("diamond", {})
        assert (await engine.wait(saga_id, timeout=30)).status == "completed"
    await broker.disconnect()
    await store.close()

asyncio.run(main())
loaded = ("orchestrator.telemetry.tracing", "opentelemetry.sdk.trace")
print(sorted(m for m in loaded if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
