"""OpenTelemetry spans of sagas, step attempts and compensations (the ``[otel]`` extra).

One saga is one trace, across every process that touches it:

- **The saga's span**, ``saga <workflow>``, opens in the engine that starts the saga,
  as a child of the caller's span (``Engine.start_saga`` inside a span, or the
  ``traceparent`` a client recorded with ``request_saga``). Its W3C ``traceparent``
  is recorded in the metadata of the saga's ``SagaStarted`` record, so it outlives the
  process. Each event the saga records becomes an event of the span; the span ends
  when the saga completes, is compensated or fails (needs a person), or when the
  engine stops or sees another engine finish it.
- **An engine that takes the saga up later** (adoption after another engine died, a
  resume, a restart) opens a new ``saga <workflow>`` span, a child of the recorded one,
  marked ``sagaflow.saga.continued``: the same trace goes on.
- **Each step attempt and compensation** is a span in the worker that runs it
  (``step <name>`` / ``compensate <name>``, kind ``CONSUMER``), a child of the saga's
  span through the ``traceparent`` header of the step command; it is the current span
  while the step function runs, so the function's own spans nest under it. The reply
  carries the step's span in its ``traceparent`` back to the engine.

Every span carries ``sagaflow.saga_id`` and ``sagaflow.workflow``; step spans also
``sagaflow.step``, ``sagaflow.attempt``, ``sagaflow.compensation`` and
``sagaflow.outcome``. Importing this module does not import OpenTelemetry; building a
``SagaTracing`` does. With tracing off the runtime holds ``None`` and does no work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["SagaTracing", "StepSpan", "TracingUnavailableError"]

TRACER_NAME = "sagaflow"


class TracingUnavailableError(RuntimeError):
    """Tracing was asked for, but OpenTelemetry is not installed."""


def _import_api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise TracingUnavailableError(
            "tracing needs OpenTelemetry: pip install 'sagaflow[otel]'"
        ) from None
    return trace


class StepSpan:
    """The span of one step attempt while it runs; ``finish`` records its outcome."""

    __slots__ = ("_headers", "_span")

    def __init__(self, span: Span, headers: dict[str, str]) -> None:
        self._span = span
        self._headers = headers

    @property
    def headers(self) -> dict[str, str]:
        """The ``traceparent`` (and ``tracestate``) of this span, for the reply."""
        return self._headers

    def finish(self, outcome: str, error: str | None = None) -> None:
        """``outcome``: ``succeeded``, ``failed`` or ``timed_out``; ``error``: why."""
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("sagaflow.outcome", outcome)
        if outcome != "succeeded":
            self._span.set_status(Status(StatusCode.ERROR, error or outcome))


class SagaTracing:
    """Opens, continues and ends the spans of the sagas one engine or worker handles."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        trace = _import_api()
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )

        self._trace = trace
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._propagator = TraceContextTextMapPropagator()
        self._open: dict[str, Span] = {}
        """Saga id → the open span of a saga this engine drives."""
        self._headers: dict[str, dict[str, str]] = {}
        """Saga id → its open span's trace headers, made once."""

    # -- the engine's side ------------------------------------------------------------

    def start_saga(
        self, saga_id: str, workflow: str, parent: str | None, *, join_current: bool = True
    ) -> str:
        """Open the saga's span, a child of ``parent`` (a ``traceparent``) or, without
        one, of the current span when ``join_current`` (a start in the caller's own
        task), else a trace of its own; returns its ``traceparent`` to record."""
        if parent:
            context = self._extract(parent)
        elif join_current:
            context = None
        else:
            from opentelemetry.context import Context

            context = Context()  # a saga another process requested: not this task's span
        span = self._tracer.start_span(
            f"saga {workflow}", context, attributes=_saga_attributes(saga_id, workflow)
        )
        self._open[saga_id] = span
        headers = self._headers[saga_id] = self._inject(span)
        return headers["traceparent"]

    def abandon(self, saga_id: str) -> None:
        """The start was not recorded (another engine started the saga): the span is
        dropped unended, so it is never exported."""
        self._open.pop(saga_id, None)
        self._headers.pop(saga_id, None)

    def headers(self, saga_id: str, workflow: str, recorded: str | None) -> dict[str, str]:
        """The trace headers of the saga's commands: its open span's, or those of a new
        span continuing the ``recorded`` one (this engine took the saga up)."""
        headers = self._headers.get(saga_id)
        if headers is None:
            span = self._span(saga_id, workflow, recorded)
            headers = self._headers[saga_id] = self._inject(span)
        return headers

    def _span(self, saga_id: str, workflow: str, recorded: str | None) -> Span:
        span = self._open.get(saga_id)
        if span is None:
            attributes = _saga_attributes(saga_id, workflow)
            attributes["sagaflow.saga.continued"] = True
            context = self._extract(recorded) if recorded else None
            span = self._tracer.start_span(f"saga {workflow}", context, attributes=attributes)
            self._open[saga_id] = span
        return span

    def recorded(
        self,
        saga_id: str,
        workflow: str,
        recorded: str | None,
        event: str,
        attributes: dict[str, Any],
        status: str,
    ) -> None:
        """The saga recorded ``event``; ``status`` is where that left it. The span (a
        continuing one if this engine has none open) ends when the saga is done or
        needs a person."""
        span = self._span(saga_id, workflow, recorded)
        span.add_event(event, attributes)
        if status in _ENDS_SPAN:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("sagaflow.saga.status", status)
            if status != "completed":
                span.set_status(Status(StatusCode.ERROR, f"saga {status}"))
            span.end()
            del self._open[saga_id]
            self._headers.pop(saga_id, None)

    def handed_off(self, saga_id: str) -> None:
        """Another engine finished or holds the saga: end its span here."""
        span = self._open.pop(saga_id, None)
        self._headers.pop(saga_id, None)
        if span is not None:
            span.set_attribute("sagaflow.saga.handed_off", True)
            span.end()

    def close(self) -> None:
        """The engine stops: end every open span, so it is exported."""
        for saga_id in list(self._open):
            self.handed_off(saga_id)

    # -- the worker's side ------------------------------------------------------------

    @contextmanager
    def step(
        self,
        headers: dict[str, str],
        saga_id: str,
        workflow: str,
        step: str,
        attempt: int,
        compensation: bool,
    ) -> Iterator[StepSpan]:
        """The span of one attempt, current while it runs, a child of the command's
        ``traceparent`` (from ``headers``)."""
        from opentelemetry.trace import SpanKind

        context = self._extract_headers(headers)
        attributes = _saga_attributes(saga_id, workflow)
        attributes.update(
            {
                "sagaflow.step": step,
                "sagaflow.attempt": attempt,
                "sagaflow.compensation": compensation,
            }
        )
        name = f"{'compensate' if compensation else 'step'} {step}"
        with self._tracer.start_as_current_span(
            name,
            context,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield StepSpan(span, self._inject(span))

    # -- W3C trace context ------------------------------------------------------------

    def _extract(self, traceparent: str) -> Any:
        return self._propagator.extract({"traceparent": traceparent})

    def _extract_headers(self, headers: dict[str, str]) -> Any:
        if "traceparent" not in headers:
            return None
        return self._propagator.extract(headers)

    def _inject(self, span: Span) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, self._trace.set_span_in_context(span))
        return carrier


_ENDS_SPAN = frozenset({"completed", "compensated", "failed"})


def _saga_attributes(saga_id: str, workflow: str) -> dict[str, Any]:
    return {"sagaflow.saga_id": saga_id, "sagaflow.workflow": workflow}
