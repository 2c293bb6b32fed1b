"""How an engine runs: its options, one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.runtime.counts import Observer
from orchestrator.runtime.wire import Topics
from orchestrator.runtime.worker import WorkerOptions

if TYPE_CHECKING:
    from orchestrator.telemetry.tracing import SagaTracing

__all__ = ["EngineOptions"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How an engine runs."""

    topics: Topics = field(default_factory=Topics)
    """Topic names on the broker."""
    reply_group: str = "saga-engine"
    """Consumer group of the engines reading step outcomes."""
    consumer: str | None = None
    """This engine's consumer name; unique by default."""
    run_workers: bool = True
    """Run step workers for the loaded workflows in this process too."""
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    """Options of the in-process workers."""
    recover: bool = True
    """Take part in ownership: hold partitions of the replies group (the broker's own
    membership) and adopt the unfinished sagas of each partition gained — at start,
    and whenever another engine dies. Off: this engine owns every saga it touches and
    adopts none (``orchestrator start --wait`` runs such an engine for one saga)."""
    intake: bool = True
    """Tail the store for sagas started by other processes (``orchestrator start``) and
    start the ones this engine owns."""
    sweep_interval: float = 5.0
    """Seconds between sweeps of the owned sagas for ones another engine moved on (their
    timers are re-armed here, in case that engine dies)."""
    max_in_flight: int = 512
    """Replies handled at once; their appends share group-commit transactions."""
    cache_size: int = 10_000
    """Saga states kept in memory."""
    intake_poll_interval: float = 0.2
    """How often to look for sagas started by other processes, in seconds."""
    republish_delay: float = 1.0
    """Seconds before commands that could not be published are sent again."""
    reissue_after: float | None = 60.0
    """Seconds a step command may go without an outcome before it is sent again (same
    id): the schedule-to-close backstop. It covers a command no worker ever started (an
    engine that died between appending and publishing it, a broker that lost it) and a
    worker that hung; a step's own ``timeout`` is what fails a slow attempt. A warning
    says which command was re-sent. ``None`` turns it off."""
    wait_poll_interval: float = 0.5
    """How often ``wait`` looks at the store for sagas other engines are running."""
    observer: Observer | None = None
    """Where step attempts and publishes are timed (``orchestrator.telemetry``'s
    metrics); ``None``: nothing is timed."""
    tracing: SagaTracing | None = None
    """OpenTelemetry spans of sagas, steps and compensations, with the ``traceparent``
    sent along every command and reply (``orchestrator.telemetry.tracing``, the
    ``[otel]`` extra); ``None``: no spans, and nothing imported."""
