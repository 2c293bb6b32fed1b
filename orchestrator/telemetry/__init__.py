"""What operators watch: Prometheus metrics served at ``/metrics`` (``metrics``,
``server``) and the logs (``logs``: level, format, each record's saga context). See
``docs/metrics.md``.

Importing ``metrics`` or ``server`` imports ``prometheus_client``; the runtime never
does (it imports only ``logs``), so an engine with ``metrics_enabled: false`` does not
load it.
"""
