"""The dashboard (``orchestrator ui``, and ``orchestrator run`` with ``ui:``): sagas, each
saga's DAG and verified timeline, the workflows; Starlette + Jinja2, served from the
package with no network (``app``), a projection of the sagas list (``index``), the DAG's
layout and states (``dag``), and its server in the engine's own event loop
(``server``)."""
