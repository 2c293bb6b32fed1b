"""Where ``orchestrator run`` sends its spans: the OpenTelemetry SDK's tracer provider,
with an OTLP/HTTP exporter (batched) or a console one (one JSON line per span on
stderr), from the ``tracing:`` settings. Importing this module imports nothing of
OpenTelemetry; ``exporting`` does, and says how to install it when it is missing."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError
from orchestrator.telemetry.tracing import SagaTracing, TracingUnavailableError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from orchestrator.runtime.settings import TracingSettings

__all__ = ["Exporting", "exporting"]


@dataclass(frozen=True, slots=True)
class Exporting:
    """A process's tracing, its exporter described, and the flush to call at exit."""

    tracing: SagaTracing
    where: str
    """Where the spans go, for the start line."""
    provider: Any
    """The SDK ``TracerProvider``."""

    def shutdown(self) -> None:
        """Export what is still buffered, then stop the exporter."""
        self.provider.shutdown()


def exporting(settings: TracingSettings, role: str) -> Exporting:
    """The tracing of one ``orchestrator run`` process of ``role``."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigError(
            "tracing.enabled needs OpenTelemetry: pip install 'sagaflow[otel]'"
        ) from None
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "sagaflow.role": role,
        }
    )
    provider = TracerProvider(resource=resource)
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter: Any = ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        where = "console"
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "tracing.exporter otlp needs the OTLP exporter: pip install 'sagaflow[otel]'"
            ) from None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        where = str(getattr(exporter, "_endpoint", settings.endpoint or "OTLP"))
    try:
        tracing = SagaTracing(provider)
    except TracingUnavailableError as exc:  # the SDK without the API: a broken install
        raise ConfigError(str(exc)) from None
    return Exporting(tracing, where, provider)


def _one_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"
