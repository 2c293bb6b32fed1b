"""Prometheus metrics of one process, on a registry of its own.

Counters the engine, the broker and the event store already keep as plain integers
(``Engine.counts``, ``Broker.metrics``, ``EventStore.stats``) are read when
``/metrics`` is scraped, by :class:`_Snapshot`; timings are observed into
histograms through hooks the runtime calls only when metrics are on (the
``Observer`` of ``orchestrator.runtime.counts``, ``BrokerMetrics.observe_delivery``,
``WriterStats.observe_append`` / ``observe_batch``), kept as plain lists of bucket
counts (a bisect and an increment: a seventh of ``prometheus_client``'s locked
``observe``) and exposed at scrape time like the counters. Consumer lag and dead-letter
depth need the broker: :meth:`Metrics.refresh` reads them before a scrape, at most
once per ``probe_interval``, with a timeout.

Every label has bounded cardinality: workflow, step, kind (step or compensation),
outcome, topic, consumer group, broker type. Never a saga id.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from brokers import Broker, CircuitState
from eventstore import WriterStats
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.wire import Topics

__all__ = ["Metrics"]

logger = logging.getLogger("orchestrator")

STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Seconds: a step may be a trivial function or a call that takes minutes."""
IO_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
"""Seconds of a publish, a delivery or an append."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Records in one event-store transaction."""


_SAGA_COUNTS = {
    "started": "Sagas started by this engine.",
    "completed": "Sagas this engine saw complete.",
    "compensated": "Sagas this engine saw end compensated.",
    "failed": "Sagas this engine saw fail (waiting for a person: orchestrator resume).",
    "adopted": "Sagas adopted from another engine's partitions (commands re-sent).",
}
_STEP_COUNTS = {
    "attempts": "Step and compensation attempts issued (each recorded once).",
    "retries": "Attempts after the first (retries after a failure or a resume).",
    "timeouts": "Attempts that ran past their timeout, as recorded.",
}
_BROKER_COUNTS = {
    "published": "Messages published.",
    "consumed": "Messages delivered to this process's consumers.",
    "acknowledged": "Messages acknowledged.",
    "nacked": "Messages nacked (given back for a retry, or dead-lettered).",
    "retried": "Nacked messages scheduled for a retry.",
    "dead_lettered": "Messages moved to a dead-letter queue.",
}
_STORE_COUNTS = {
    "appends": "Appends committed.",
    "records": "Records committed.",
    "transactions": "Write transactions committed (group commit: many appends each).",
    "rejected_appends": "Appends refused with a concurrency conflict.",
    "checkpoints": "Signed checkpoints committed.",
}


class Metrics:
    """One process's metrics: ``registry`` holds them, ``render()`` is ``/metrics``.

    Built before the engine (it is the engine's ``observer``), then given it with
    :meth:`attach_engine`; a process of step workers only (``--role worker``) has no
    engine and reports the broker and its steps. ``store_stats`` is the event store's
    ``EventStore.stats``, for its writer's counters and timings.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        workflows: Iterable[str] = (),
        topics: Topics | None = None,
        reply_group: str = "saga-engine",
        worker_group: str = "saga-workers",
        broker_type: str = "memory",
        probe_interval: float = 5.0,
        probe_timeout: float = 2.0,
        store_stats: WriterStats | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.broker = broker
        self.engine: Engine | None = None
        self.broker_type = broker_type
        self._topics_of = topics or Topics()
        self._reply_group = reply_group
        self._probes: list[tuple[str, str]] = [
            (self._topics_of.steps(name), worker_group) for name in sorted(workflows)
        ]
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._probed_at = float("-inf")
        self._probe_lock = asyncio.Lock()
        self.lag: dict[tuple[str, str], int] = {}
        self.dead_letters: dict[str, int] = {}

        self._step_seconds = _Histogram(
            "sagaflow_step_duration_seconds",
            "Time a worker spent running one step attempt.",
            ("workflow", "step"),
            STEP_BUCKETS,
        )
        self._compensation_seconds = _Histogram(
            "sagaflow_compensation_duration_seconds",
            "Time a worker spent running one compensation attempt.",
            ("workflow", "step"),
            STEP_BUCKETS,
        )
        self._outcomes: dict[tuple[str, str, str, str], list[int]] = {}
        """(workflow, step, kind, outcome) → [attempts run by this process's workers]."""
        self._publish_seconds = _Histogram(
            "sagaflow_broker_publish_duration_seconds",
            "Time from publish (one call, maybe a batch) until the broker has the messages.",
            ("topic",),
            IO_BUCKETS,
        )
        self._delivery_seconds = _Histogram(
            "sagaflow_broker_delivery_latency_seconds",
            "Time from a message's publish to its first delivery to a consumer here.",
            ("broker",),
            IO_BUCKETS,
        )
        self._append_seconds = _Histogram(
            "sagaflow_eventstore_append_duration_seconds",
            "Time from an append to its commit, waiting for the group-commit writer included.",
            (),
            IO_BUCKETS,
        )
        self._batch_records = _Histogram(
            "sagaflow_eventstore_batch_records",
            "Records written by one event-store transaction.",
            (),
            BATCH_BUCKETS,
        )
        self.histograms = (
            self._step_seconds,
            self._compensation_seconds,
            self._publish_seconds,
            self._delivery_seconds,
            self._append_seconds,
            self._batch_records,
        )
        self._steps: dict[tuple[str, str, bool, str], tuple[_Series, list[int]]] = {}
        self._topics: dict[str, _Series] = {}
        self._store: WriterStats | None = None
        self.attach_broker(broker)
        self.attach_store(store_stats)
        self.registry.register(_Snapshot(self))

    # -- hooks ----------------------------------------------------------------------

    def attach_engine(self, engine: Engine) -> None:
        """Report ``engine``'s counts, its sagas in flight and its replies' lag."""
        self.engine = engine
        self._probes.insert(0, (self._topics_of.replies, self._reply_group))

    def attach_broker(self, broker: Broker) -> None:
        """Time ``broker``'s deliveries. Call it after ``connect()``, which starts the
        broker's counters (and their hook) afresh."""
        self.broker = broker
        broker.metrics.observe_delivery = self._delivery_seconds.child(self.broker_type).observe

    def attach_store(self, stats: WriterStats | None) -> None:
        """Read and time the event store's writer (``EventStore.stats``)."""
        self._store = stats
        if stats is not None:
            stats.observe_append = self._append_seconds.child().observe
            stats.observe_batch = self._batch_records.child().observe

    def detach(self) -> None:
        """Stop timing the broker's deliveries and the store's appends (the hooks)."""
        self.broker.metrics.observe_delivery = None
        if self._store is not None:
            self._store.observe_append = self._store.observe_batch = None
            self._store = None

    def step(
        self, workflow: str, step: str, compensation: bool, outcome: str, seconds: float
    ) -> None:
        """``Observer.step``: one attempt run by a worker of this process."""
        key = (workflow, step, compensation, outcome)
        children = self._steps.get(key)
        if children is None:
            family = self._compensation_seconds if compensation else self._step_seconds
            kind = "compensation" if compensation else "step"
            count = self._outcomes.setdefault((workflow, step, kind, outcome), [0])
            children = self._steps[key] = (family.child(workflow, step), count)
        children[0].observe(seconds)
        children[1][0] += 1

    def publish(self, topic: str, seconds: float) -> None:
        """``Observer.publish``: one publish of the engine or a worker."""
        child = self._topics.get(topic)
        if child is None:
            child = self._topics[topic] = self._publish_seconds.child(topic)
        child.observe(seconds)

    # -- scraping -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read consumer lag and dead-letter depth from the broker, unless they were
        read less than ``probe_interval`` ago: every topic at once, so a scrape waits
        at most ``probe_timeout``. A topic the broker cannot answer for in time is left
        out of this scrape (no stale value)."""
        async with self._probe_lock:
            now = time.monotonic()
            if now - self._probed_at < self._probe_interval:
                return
            self._probed_at = now
            read = await asyncio.gather(
                *(self._probe(topic, group) for topic, group in self._probes)
            )
            self.lag = {(topic, group): lag for topic, group, lag, _ in read if lag is not None}
            self.dead_letters = {topic: dead for topic, _, _, dead in read if dead is not None}

    async def _probe(self, topic: str, group: str) -> tuple[str, str, int | None, int | None]:
        lag = dead = None
        try:
            async with asyncio.timeout(self._probe_timeout):
                lag = await self.broker.get_consumer_lag(topic, group)
                dead = await self.broker.get_dead_letter_count(topic)
        except Exception as exc:  # a scrape reports what it can
            logger.debug("metrics: cannot read %s/%s from the broker: %s", topic, group, exc)
        return topic, group, lag, dead

    async def render(self) -> bytes:
        """The text exposition format of every metric (what ``/metrics`` serves)."""
        await self.refresh()
        text: bytes = generate_latest(self.registry)
        return text


class _Snapshot:
    """A custom collector: the plain counters, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        m = self._m
        if m.engine is not None:
            yield from _engine_families(m.engine)
        outcomes = CounterMetricFamily(
            "sagaflow_step_outcomes",
            "Attempts run by this process's workers, by outcome (succeeded, failed, timed_out).",
            labels=("workflow", "step", "kind", "outcome"),
        )
        for labels, count in sorted(m._outcomes.items()):
            outcomes.add_metric(labels, count[0])
        yield outcomes
        yield from _broker_families(m)
        if m._store is not None:
            yield from _store_families(m._store)
        for histogram in m.histograms:
            yield histogram.family()


class _Series:
    """One histogram's bucket counts (not cumulative; the last is +Inf) and sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.sum += value


class _Histogram:
    """A histogram family as plain lists, one ``_Series`` per label values."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.bounds = tuple(float(bound) for bound in buckets)
        self._le = [repr(bound) for bound in self.bounds] + ["+Inf"]
        self.series: dict[tuple[str, ...], _Series] = {}

    def child(self, *values: str) -> _Series:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = _Series(self.bounds)
        return series

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for values, series in sorted(self.series.items()):
            cumulative = itertools.accumulate(series.counts)
            family.add_metric(values, list(zip(self._le, cumulative, strict=True)), series.sum)
        return family


def _engine_families(engine: Engine) -> Iterator[Any]:
    counts = engine.counts
    for name, doc in _SAGA_COUNTS.items():
        family = CounterMetricFamily(f"sagaflow_sagas_{name}", doc, labels=("workflow",))
        for workflow in sorted(engine.workflows):
            family.add_metric((workflow,), counts.by_workflow.get((name, workflow), 0))
        yield family
    family = CounterMetricFamily(
        "sagaflow_commands_reissued",
        "Step commands sent again, same id, after no outcome for reissue_after seconds.",
        labels=("workflow",),
    )
    for workflow in sorted(engine.workflows):
        family.add_metric((workflow,), counts.by_workflow.get(("reissued", workflow), 0))
    yield family
    owns = engine.ownership.owns
    driving = collections.Counter(
        workflow for saga_id, workflow in list(engine.in_flight.items()) if owns(saga_id)
    )
    gauge = GaugeMetricFamily(
        "sagaflow_sagas_in_flight",
        "Unfinished sagas this engine drives (in the partitions it owns).",
        labels=("workflow",),
    )
    for workflow in sorted(engine.workflows):
        gauge.add_metric((workflow,), driving.get(workflow, 0))
    yield gauge
    by_step: dict[str, list[tuple[tuple[str, str, str], int]]] = {n: [] for n in _STEP_COUNTS}
    for (name, workflow, step, kind), value in sorted(counts.by_step.items()):
        by_step[name].append(((workflow, step, kind), value))
    for name, doc in _STEP_COUNTS.items():
        family = CounterMetricFamily(
            f"sagaflow_step_{name}", doc, labels=("workflow", "step", "kind")
        )
        for labels, value in by_step[name]:
            family.add_metric(labels, value)
        yield family
    yield _counter("sagaflow_transition_conflicts", "Appends that lost a race to another "
                   "engine and were decided again.", counts.get("conflicts", 0))  # fmt: skip
    yield _counter("sagaflow_duplicate_events", "Redelivered outcomes and timers absorbed "
                   "with nothing to record.", counts.get("duplicates", 0))  # fmt: skip


def _broker_families(m: Metrics) -> Iterator[Any]:
    metrics = m.broker.metrics
    values: Mapping[str, int] = {
        "published": metrics.published,
        "consumed": metrics.consumed,
        "acknowledged": metrics.acknowledged,
        "nacked": metrics.nacked,
        "retried": metrics.retried,
        "dead_lettered": metrics.dead_lettered,
    }
    for name, doc in _BROKER_COUNTS.items():
        family = CounterMetricFamily(f"sagaflow_broker_messages_{name}", doc, labels=("broker",))
        family.add_metric((m.broker_type,), values[name])
        yield family
    circuit = getattr(m.broker, "circuit", None)
    if circuit is not None:
        state = GaugeMetricFamily(
            "sagaflow_broker_circuit_state",
            "The broker's circuit breaker: 1 for its current state (closed, open, "
            "half_open, disabled).",
            labels=("broker", "state"),
        )
        current = circuit.state.value
        for each in CircuitState:
            state.add_metric((m.broker_type, each.value), 1 if each.value == current else 0)
        yield state
    lag = GaugeMetricFamily(
        "sagaflow_broker_consumer_lag",
        "Messages a consumer group has still to finish (undelivered, unacknowledged, "
        "waiting for a retry).",
        labels=("topic", "group"),
    )
    for (topic, group), value in sorted(m.lag.items()):
        lag.add_metric((topic, group), value)
    yield lag
    dead = GaugeMetricFamily(
        "sagaflow_broker_dead_letters",
        "Messages in a topic's dead-letter queue.",
        labels=("topic",),
    )
    for topic, value in sorted(m.dead_letters.items()):
        dead.add_metric((topic,), value)
    yield dead


def _store_families(stats: WriterStats) -> Iterator[Any]:
    values = {
        "appends": stats.appends,
        "records": stats.records,
        "transactions": stats.transactions,
        "rejected_appends": stats.rejected,
        "checkpoints": stats.checkpoints,
    }
    for name, doc in _STORE_COUNTS.items():
        yield _counter(f"sagaflow_eventstore_{name}", doc, values[name])
    yield GaugeMetricFamily(
        "sagaflow_eventstore_writer_queue_depth",
        "Appends waiting for the group-commit writer.",
        value=stats.queued,
    )


def _counter(name: str, doc: str, value: int) -> Any:
    return CounterMetricFamily(name, doc, value=value)
