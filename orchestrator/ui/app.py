"""The dashboard: a Starlette app, server-rendered with Jinja2, live by polling.

Pages (each also served as a bare fragment the page's script re-fetches every second,
so what is shown follows the store):

- ``/``: the sagas, the last changed first, filtered by workflow, status and time, a
  saga id prefix search; paged from ``SagaIndex`` (no read per saga);
- ``/sagas/{id}``: the saga's DAG coloured by state (compensation edges dashed, the
  pivot marked), its timeline of every record with its short hash and whether the chain
  verifies, each step's input, output and errors;
- ``/workflows``: each definition drawn, with kinds, retry policies, timeouts, and its
  sagas by status.

Beside an engine (``orchestrator run``) it also acts (``actions``): ``/start`` (a form
from the workflow's input model), resume, ``/dead-letters`` (reprocess, discard),
``/engine``; each change needs the token. Over a store alone (``orchestrator ui``) it
only reads. Everything it serves is in the package (templates, CSS, a few lines of
script): it works with no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from eventstore import CorruptRecordError, EventLog, Record, VerifyReport
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.runtime.saga_log import fold_records, stream_of
from orchestrator.ui import dag
from orchestrator.ui.actions import Actions, action_routes
from orchestrator.ui.index import STATUSES, SagaIndex

__all__ = ["Dashboard", "create_app"]

PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What the pages read: the store, the workflows, the sagas' index."""

    store: EventLog
    workflows: Mapping[str, Workflow]
    index: SagaIndex
    live_interval: float = 1.0
    """Seconds between a page's refreshes."""
    actions: Actions | None = None
    """What it may do (beside an engine); ``None``: it only reads."""


def create_app(dashboard: Dashboard) -> Starlette:
    env = Environment(
        loader=PackageLoader("orchestrator.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
    )
    env.globals["live_ms"] = int(dashboard.live_interval * 1000)
    env.globals["statuses"] = STATUSES
    env.globals["acts"] = dashboard.actions is not None

    def render(name: str, http_status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**values), status_code=http_status)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render("error.html", http_status=exc.status_code, message=exc.detail)

    async def sagas(request: Request) -> Response:
        query = _filters(request, dashboard)
        return render(
            "sagas.html", workflows=sorted(dashboard.workflows), filters=query, **_list(query)
        )

    async def sagas_fragment(request: Request) -> Response:
        return render("sagas_table.html", **_list(_filters(request, dashboard)))

    def _list(query: dict[str, Any]) -> dict[str, Any]:
        dashboard.index.wake()
        page = dashboard.index.page(**query, size=PAGE_SIZE)
        return {
            "page": page,
            "query": _query_string(query),
            "indexed": len(dashboard.index),
            "reading": not dashboard.index.caught_up.is_set(),
        }

    async def saga(request: Request) -> Response:
        view = await _saga_view(dashboard, request.path_params["saga_id"])
        return render("saga.html", **view)

    async def saga_fragment(request: Request) -> Response:
        view = await _saga_view(dashboard, request.path_params["saga_id"])
        return render("saga_live.html", **view)

    async def workflows(request: Request) -> Response:
        dashboard.index.wake()
        shown = [
            {
                "wf": wf,
                "layout": dag.layout(wf),
                "states": dag.states(wf, None),
                "counts": dashboard.index.counts(wf.name),
            }
            for wf in sorted(dashboard.workflows.values(), key=lambda wf: wf.name)
        ]
        return render("workflows.html", workflows=shown)

    static = Path(__file__).with_name("static")
    acting = (
        action_routes(dashboard.actions, dashboard.workflows, render)
        if dashboard.actions is not None
        else []
    )
    return Starlette(
        exception_handlers={HTTPException: refused},
        routes=[
            *acting,
            Route("/", sagas),
            Route("/fragments/sagas", sagas_fragment),
            Route("/sagas/{saga_id}", saga),
            Route("/fragments/sagas/{saga_id}", saga_fragment),
            Route("/workflows", workflows),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
    )


def _filters(request: Request, dashboard: Dashboard) -> dict[str, Any]:
    params = request.query_params
    workflow = params.get("workflow") or None
    if workflow is not None and workflow not in dashboard.workflows:
        raise HTTPException(400, f"unknown workflow {workflow!r}")
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    try:
        offset = max(0, int(params.get("offset", "0")))
    except ValueError:
        raise HTTPException(400, "offset must be a whole number") from None
    return {
        "workflow": workflow,
        "status": status,
        "search": params.get("q") or None,
        "since": params.get("since") or None,
        "offset": offset,
    }


def _query_string(query: Mapping[str, Any]) -> str:
    from urllib.parse import urlencode

    names = {"workflow": "workflow", "status": "status", "search": "q", "since": "since"}
    return urlencode({names[k]: v for k, v in query.items() if k in names and v})


async def _saga_view(dashboard: Dashboard, saga_id: str) -> dict[str, Any]:
    stream = stream_of(saga_id)
    store = dashboard.store
    report = await store.verify(stream)
    problem: str | None = None
    records: list[Record] = []
    try:
        records = await store.read_stream(stream)
    except CorruptRecordError as exc:
        problem = str(exc)
    if not records and problem is None:
        raise HTTPException(404, f"no saga {saga_id!r} in the store")
    state: SagaState | None = None
    if problem is None:
        try:
            state = fold_records(records)
        except Exception as exc:  # a record the core cannot read: show the log as is
            problem = f"{type(exc).__name__}: {exc}"
    row = dashboard.index.get(saga_id)
    workflow_name = state.workflow if state else (row.workflow if row else "?")
    wf = dashboard.workflows.get(workflow_name)
    return {
        "saga_id": saga_id,
        "state": state,
        "status": state.status.value if state else (row.status if row else "requested"),
        "workflow": workflow_name,
        "wf": wf,
        "layout": dag.layout(wf) if wf else None,
        "states": dag.states(wf, state) if wf else {},
        "timeline": _timeline(records, report),
        "report": report,
        "problem": problem,
        "steps": _steps(wf, state) if wf and state else [],
    }


def _timeline(records: list[Record], report: VerifyReport) -> list[dict[str, Any]]:
    broken = report.first_broken
    rows = []
    for record in records:
        verified = broken is None or record.version < broken.version
        data = record.data
        rows.append(
            {
                "version": record.version,
                "position": record.position,
                "at": record.recorded_at,
                "kind": record.kind,
                "type": record.type,
                "step": data.get("step"),
                "attempt": data.get("attempt"),
                "compensation": data.get("compensation")
                or record.type.startswith("saga.compensat"),
                "error": data.get("error") or data.get("reason"),
                "hash": record.hash[:12],
                "verified": verified,
            }
        )
    return rows


def _steps(wf: Workflow, state: SagaState) -> list[dict[str, Any]]:
    from orchestrator.core.decide import step_data

    out = []
    for name in wf.order:
        st = state.steps.get(name)
        comp = state.compensations.get(name)
        out.append(
            {
                "name": name,
                "kind": wf.steps[name].kind.value,
                "input": step_data(wf, state, name) if st else None,
                "output": dict(st.output) if st and st.output else None,
                "attempts": st.attempt if st else 0,
                "error": st.error if st else None,
                "undo_attempts": comp.attempt if comp else 0,
                "undo_error": comp.error if comp else None,
            }
        )
    return out
