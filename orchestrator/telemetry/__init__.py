"""What operators watch: Prometheus metrics served at ``/metrics`` (``metrics``,
``server``) and the project's log level (``logs``). See ``docs/metrics.md``.

Importing this package imports ``prometheus_client``; the runtime never does, so an
engine with ``metrics_enabled: false`` does not load it.
"""
