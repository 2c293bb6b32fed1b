"""Prometheus metrics: the families and their values, in process (an engine with its
metrics, scraped over HTTP) and from ``orchestrator run`` as a user runs it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator.runtime.client import request_saga
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.telemetry.metrics import Metrics
from orchestrator.telemetry.server import MetricsServer
from tests.runtime.conftest import FAST
from tests.runtime.flows import WORKFLOWS
from tests.runtime.processes import serving

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """The family names and every sample, keyed by (sample name, sorted labels)."""
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text: str = response.read().decode()
            return text

    return await asyncio.to_thread(get)


FAMILIES = {
    "sagaflow_sagas_started",
    "sagaflow_sagas_completed",
    "sagaflow_sagas_compensated",
    "sagaflow_sagas_failed",
    "sagaflow_sagas_adopted",
    "sagaflow_sagas_in_flight",
    "sagaflow_commands_reissued",
    "sagaflow_step_attempts",
    "sagaflow_step_retries",
    "sagaflow_step_timeouts",
    "sagaflow_step_outcomes",
    "sagaflow_step_duration_seconds",
    "sagaflow_compensation_duration_seconds",
    "sagaflow_transition_conflicts",
    "sagaflow_duplicate_events",
    "sagaflow_broker_messages_published",
    "sagaflow_broker_messages_consumed",
    "sagaflow_broker_messages_acknowledged",
    "sagaflow_broker_messages_nacked",
    "sagaflow_broker_messages_retried",
    "sagaflow_broker_messages_dead_lettered",
    "sagaflow_broker_publish_duration_seconds",
    "sagaflow_broker_delivery_latency_seconds",
    "sagaflow_broker_consumer_lag",
    "sagaflow_broker_dead_letters",
    "sagaflow_eventstore_appends",
    "sagaflow_eventstore_records",
    "sagaflow_eventstore_transactions",
    "sagaflow_eventstore_rejected_appends",
    "sagaflow_eventstore_checkpoints",
    "sagaflow_eventstore_writer_queue_depth",
    "sagaflow_eventstore_append_duration_seconds",
    "sagaflow_eventstore_batch_records",
}
"""Every family an engine with workers reports (the circuit breaker's needs a broker
with one: Redis or Kafka)."""


async def test_an_engine_reports_its_sagas_steps_broker_and_store() -> None:
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    names = [wf.name for wf in WORKFLOWS]
    metrics = Metrics(broker, workflows=names, probe_interval=0.01, store_stats=store.stats)
    engine = Engine(store, broker, WORKFLOWS, options=EngineOptions(observer=metrics))
    metrics.attach_engine(engine)
    server = MetricsServer(metrics.render, "127.0.0.1", 0)
    await server.start()
    try:
        async with engine:
            inputs: list[tuple[str, dict[str, Any]]] = [
                *[("diamond", {}) for _ in range(3)],
                ("diamond", {"fail": "b"}),
                ("diamond", {"flaky": "c"}),
                ("slow", {}),
            ]
            ids = [await engine.start_saga(name, data) for name, data in inputs]
            ends = [(await engine.wait(saga_id, timeout=30)).status for saga_id in ids]
            assert ends == ["completed"] * 3 + ["compensated", "completed", "compensated"]
            families, samples = parse(await scrape(server.url))
    finally:
        await server.close()
        await broker.disconnect()
        await store.close()

    assert families >= FAMILIES, FAMILIES - families
    assert all(name.startswith("sagaflow_") for name in families)
    assert value(samples, "sagaflow_sagas_started_total", workflow="diamond") == 5
    assert value(samples, "sagaflow_sagas_completed_total", workflow="diamond") == 4
    assert value(samples, "sagaflow_sagas_compensated_total", workflow="diamond") == 1
    assert value(samples, "sagaflow_sagas_started_total", workflow="slow") == 1
    assert value(samples, "sagaflow_sagas_compensated_total", workflow="slow") == 1
    assert value(samples, "sagaflow_sagas_failed_total", workflow="diamond") == 0
    for workflow in names:  # every loaded workflow, even one that ran nothing
        assert value(samples, "sagaflow_sagas_in_flight", workflow=workflow) == 0
    step = {"workflow": "diamond", "kind": "step"}
    assert value(samples, "sagaflow_step_attempts_total", step="a", **step) == 5
    assert value(samples, "sagaflow_step_retries_total", step="c", **step) == 1
    assert value(samples, "sagaflow_step_attempts_total", step="c", **step) == 6
    slow = {"workflow": "slow", "step": "hang", "kind": "step"}
    assert value(samples, "sagaflow_step_timeouts_total", **slow) == 2
    assert value(samples, "sagaflow_step_outcomes_total", outcome="timed_out", **slow) == 2
    undo = {"workflow": "diamond", "step": "a", "kind": "compensation"}
    assert value(samples, "sagaflow_step_attempts_total", **undo) == 1
    assert value(samples, "sagaflow_step_outcomes_total", outcome="succeeded", **undo) == 1
    timed = {"workflow": "diamond", "step": "a"}
    assert value(samples, "sagaflow_step_duration_seconds_count", **timed) == 5
    assert value(samples, "sagaflow_compensation_duration_seconds_count", **timed) == 1
    assert value(samples, "sagaflow_step_duration_seconds_bucket", le="+Inf", **timed) == 5
    hang = {"workflow": "slow", "step": "hang"}
    assert value(samples, "sagaflow_step_duration_seconds_sum", **hang) >= 0.4  # 2 x 0.2 s
    stats, seed = store.stats, broker.get_metrics()
    assert value(samples, "sagaflow_eventstore_appends_total") == stats.appends > 0
    assert value(samples, "sagaflow_eventstore_records_total") == stats.records
    assert value(samples, "sagaflow_eventstore_batch_records_count") == stats.transactions
    assert value(samples, "sagaflow_eventstore_append_duration_seconds_count") == stats.appends
    memory = {"broker": "memory"}
    published = value(samples, "sagaflow_broker_messages_published_total", **memory)
    assert published == seed["messages_published"] > 0  # the seed's dict, same counters
    consumed = value(samples, "sagaflow_broker_messages_consumed_total", **memory)
    assert consumed == seed["messages_consumed"] >= published
    assert value(samples, "sagaflow_broker_delivery_latency_seconds_count", **memory) > 0
    replies = {"topic": "saga.replies"}
    assert value(samples, "sagaflow_broker_publish_duration_seconds_count", **replies) > 0
    assert ("sagaflow_broker_consumer_lag", (("group", "saga-engine"), *replies.items())) in (
        samples
    )
    assert value(samples, "sagaflow_broker_dead_letters", topic="saga.steps.diamond") == 0


async def test_the_server_answers_only_get_metrics() -> None:
    async def render() -> bytes:
        return b"# nothing\n"

    server = MetricsServer(render, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 404")
        writer.close()
        assert await scrape(server.url) == "# nothing\n"
    finally:
        await server.close()


# -- orchestrator run, as a user runs it --------------------------------------------


def run_engine(config: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """``orchestrator run --config config``, once it said it runs: the process (stdout
    and stderr on one pipe) and its start line."""
    return serving(["run", "--config", str(config)], cwd, "engine running")


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for engine in started:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


ORDER = {
    "order_id": "o-1",
    "sku": "widget",
    "quantity": 1,
    "address": "1 Main St",
    "card": "4242424242424242",
}


def test_orchestrator_run_serves_metrics_while_sagas_run(
    tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    config = tmp_path / "sagaflow.yaml"
    config.write_text(
        f"store: {url}\nworkflows: {ROOT / 'workflows'}\nmetrics:\n  port: 0\n"
        "  probe_interval: 0.1\nengine:\n  intake_poll_interval: 0.05\n"
    )
    engine, line = run_engine(config, tmp_path)
    stopper.append(engine)
    assert "metrics at http://127.0.0.1:" in line, line
    address = line.split("metrics at ", 1)[1].split(";", 1)[0].split(",", 1)[0].strip()
    declined = {**ORDER, "card": "4000000000000002"}

    async def run() -> Samples:
        store = await EventStore.open(url)
        try:
            for n in range(5):
                await request_saga(store, "order_fulfilment", {**ORDER, "order_id": f"o-{n}"})
            await request_saga(store, "order_fulfilment", declined)
            _, during = parse(await scrape(address))  # while they run
            assert value(during, "sagaflow_broker_messages_published_total", broker="memory") >= 0
            deadline = time.monotonic() + 60
            while True:
                families, samples = parse(await scrape(address))
                done = value(samples, "sagaflow_sagas_completed_total", workflow="order_fulfilment")
                if done >= 5 and value(
                    samples, "sagaflow_sagas_compensated_total", workflow="order_fulfilment"
                ):
                    assert families >= FAMILIES, FAMILIES - families
                    return samples
                assert time.monotonic() < deadline, samples
                await asyncio.sleep(0.1)
        finally:
            await store.close()

    samples = asyncio.run(run())
    flow = {"workflow": "order_fulfilment"}
    assert value(samples, "sagaflow_sagas_started_total", **flow) == 6
    assert value(samples, "sagaflow_sagas_completed_total", **flow) == 5
    assert value(samples, "sagaflow_sagas_compensated_total", **flow) == 1
    assert value(samples, "sagaflow_sagas_in_flight", **flow) == 0
    assert value(samples, "sagaflow_sagas_started_total", workflow="esg_report") == 0
    assert value(samples, "sagaflow_eventstore_appends_total") > 0
    engine.send_signal(signal.SIGTERM)
    out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
    counts = json.loads(out.rsplit("stopping; counts ", 1)[1].splitlines()[0])
    assert counts["started"] == 6 and counts["completed"] == 5  # the same numbers


@pytest.fixture(params=["redis", "kafka"])
def real_broker(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """A real broker's type and its section of the seed's config."""
    if request.param == "redis":
        return "redis", {"redis": {"url": request.getfixturevalue("redis_url")}}
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return "kafka", {"kafka": {"bootstrap_servers": bootstrap}}


async def test_dead_letters_lag_and_the_circuit_on_a_real_broker(
    real_broker: tuple[str, dict[str, Any]],
) -> None:
    """Read from a real broker at scrape time: a dead letter, a message waiting, and the
    breaker's state; disabled by the seed's key, it says so."""
    from brokers import MessagingConfig

    kind, section = real_broker
    run = uuid.uuid4().hex[:8]
    for enabled in (True, False):
        config = MessagingConfig(
            broker_type=kind,  # type: ignore[arg-type]
            circuit_breaker_enabled=enabled,
            **section,
        )
        broker = config.create_broker(consumer_options=FAST)
        await broker.connect()
        try:
            workflow = f"w{run}{int(enabled)}"
            topic = f"saga.steps.{workflow}"
            metrics = Metrics(broker, workflows=[workflow], broker_type=kind, probe_interval=0.0)
            await broker.publish(topic, {"n": 1})
            async for message in broker.consume(topic, "saga-workers"):
                await broker.nack(message, "poison", requeue=False)
                break
            await broker.publish(topic, {"n": 2})
            _, samples = parse((await metrics.render()).decode())
        finally:
            await broker.disconnect()
        assert value(samples, "sagaflow_broker_dead_letters", topic=topic) == 1
        assert (
            value(samples, "sagaflow_broker_consumer_lag", topic=topic, group="saga-workers") == 1
        )
        assert value(samples, "sagaflow_broker_messages_dead_lettered_total", broker=kind) == 1
        assert value(samples, "sagaflow_broker_messages_published_total", broker=kind) == 2
        state = "closed" if enabled else "disabled"
        for each in ("closed", "open", "half_open", "disabled"):
            expected = 1 if each == state else 0
            assert value(samples, "sagaflow_broker_circuit_state", broker=kind, state=each) == (
                expected
            )
