"""What operators watch: Prometheus metrics served at ``/metrics`` (``metrics``,
``server``), OpenTelemetry spans (``tracing``, exported by ``tracing_export``) and the
logs (``logs``: level, format, each record's saga context). See ``docs/metrics.md`` and
``docs/tracing.md``.

Importing ``metrics`` or ``server`` imports ``prometheus_client``; building a
``SagaTracing`` imports OpenTelemetry. The runtime imports neither (only ``logs``, and
the others' types), so an engine with metrics and tracing off loads neither library.
"""
