"""What the dashboard lets a person do, when it runs beside an engine (``orchestrator
run``): start a saga from a form built from the workflow's input model, resume a failed
saga, reprocess or discard a dead letter; and what it shows of the engine: its
partitions, the broker's lag, dead letters and breaker.

Every action that changes state is a POST that carries the dashboard's token (printed by
``orchestrator run`` at start, or ``ui.token``); without it the answer is 403 and
nothing changes. The token in the form is also what stops another site from posting
on a visitor's behalf.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from brokers import Broker, DeadLetterError, DeadLetterMessage
from orchestrator.cli.dlq_views import age, letter_json, provenance
from orchestrator.core.state import SagaStatus
from orchestrator.core.workflow import Workflow
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.runtime.engine import Engine

__all__ = ["Actions", "action_routes", "form_fields"]

Render = Callable[..., Response]


@dataclass(frozen=True, slots=True)
class Actions:
    """The engine and broker the dashboard acts through, and the token it asks for."""

    engine: Engine
    broker: Broker
    token: str

    def check(self, given: str | None) -> None:
        if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(
                403,
                "refused: this action needs the dashboard's token (printed by orchestrator "
                "run at start, or set as ui.token)",
            )


def form_fields(wf: Workflow) -> list[dict[str, Any]]:
    """The start form's fields, from the workflow's input model's JSON Schema (a
    single JSON field when it has none)."""
    schema = wf.input_schema()
    if schema is None:
        return [{"name": "__json__", "type": "json", "required": False, "label": "input"}]
    required = set(schema.get("required", ()))
    fields = []
    for name, spec in schema.get("properties", {}).items():
        kind = _simple_type(spec)
        fields.append(
            {
                "name": name,
                "label": spec.get("title", name),
                "type": kind,
                "required": name in required,
                "description": spec.get("description", ""),
                "enum": spec.get("enum"),
                "default": spec.get("default"),
            }
        )
    return fields


def _simple_type(spec: Mapping[str, Any]) -> str:
    """A field's form type: its JSON type, a nullable one's non-null type, and ``json``
    for anything else (nested models, unions, lists: typed as JSON)."""
    if "anyOf" in spec:
        options = [s for s in spec["anyOf"] if s.get("type") != "null"]
        if len(options) == 1:
            return _simple_type(options[0])
        return "json"
    kind = spec.get("type")
    if "enum" in spec and kind is None:
        return "string"
    return kind if kind in ("string", "integer", "number", "boolean") else "json"


def _input_from_form(wf: Workflow, form: Mapping[str, Any]) -> dict[str, Any]:
    """The saga's input from the posted form; ``InputError`` naming a field that is not
    of its type. The model then checks everything else."""
    import json

    data: dict[str, Any] = {}
    for field in form_fields(wf):
        name, kind = field["name"], field["type"]
        raw = form.get(name)
        if kind == "boolean":
            data[name] = raw == "on"
            continue
        if raw is None or raw == "":
            continue
        try:
            if kind == "integer":
                data[name] = int(raw)
            elif kind == "number":
                data[name] = float(raw)
            elif kind == "json":
                value = json.loads(raw)
                if name == "__json__":
                    if not isinstance(value, dict):
                        raise ValueError("must be a JSON object")
                    data.update(value)
                else:
                    data[name] = value
            else:
                data[name] = raw
        except ValueError as exc:
            label = "input" if name == "__json__" else name
            raise InputError(f"invalid input for {wf.name}: {label}: {exc}") from None
    return data


def action_routes(
    actions: Actions, workflows: Mapping[str, Workflow], render: Render
) -> list[Route]:
    async def start_form(request: Request) -> Response:
        wf = _workflow(workflows, request.query_params.get("workflow"))
        return render("start.html", **_start_view(workflows, wf))

    async def start(request: Request) -> Response:
        form = await request.form()
        actions.check(_token(request, form))
        wf = _workflow(workflows, str(form.get("workflow") or ""))
        try:
            saga_id = await actions.engine.start_saga(wf.name, _input_from_form(wf, form))
        except InputError as exc:
            view = _start_view(workflows, wf)
            return render("start.html", http_status=422, error=str(exc), posted=dict(form), **view)
        return RedirectResponse(f"/sagas/{quote(saga_id)}", status_code=303)

    async def resume(request: Request) -> Response:
        form = await request.form()
        actions.check(_token(request, form))
        saga_id = request.path_params["saga_id"]
        state = await actions.engine.saga(saga_id)
        if state is None:
            raise HTTPException(404, f"no saga {saga_id!r} in the store")
        if state.status is not SagaStatus.FAILED:
            raise HTTPException(409, f"saga {saga_id} is {state.status}: nothing to resume")
        try:
            await actions.engine.resume_saga(saga_id)
        except OrchestratorError as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/sagas/{quote(saga_id)}", status_code=303)

    async def dead_letters(request: Request) -> Response:
        broker = actions.broker
        letters: list[dict[str, Any]] = []
        now = time.time()
        for topic in await broker.get_dead_letter_topics():
            for dead in await broker.get_dead_letter_messages(topic, limit=100):
                letters.append(_letter(dead, now))
        return render("dead_letters.html", letters=letters)

    async def dead_letter(request: Request) -> Response:
        dead = await _dead(actions.broker, request)
        view = _letter(dead, time.time())
        view["provenance"] = provenance(dead)
        view["payload"] = dead.original_message.payload
        view["headers"] = dead.original_message.headers.to_dict()
        return render("dead_letter.html", letter=view)

    async def reprocess(request: Request) -> Response:
        form = await request.form()
        actions.check(_token(request, form))
        dead = await _dead(actions.broker, request)
        if not dead.reprocessable:
            raise HTTPException(409, "a malformed entry cannot be reprocessed: discard it")
        await actions.broker.reprocess_dead_letter_message(dead)
        return RedirectResponse("/dead-letters", status_code=303)

    async def discard(request: Request) -> Response:
        form = await request.form()
        actions.check(_token(request, form))
        reason = str(form.get("reason") or "").strip()
        if not reason:
            raise HTTPException(400, "a discard needs a reason (it is recorded)")
        dead = await _dead(actions.broker, request)
        await actions.broker.discard_dead_letter_message(
            dead, reason=reason, discarded_by="dashboard"
        )
        return RedirectResponse("/dead-letters", status_code=303)

    async def engine(request: Request) -> Response:
        return render("engine.html", **await _engine_view(actions))

    return [
        Route("/start", start_form, methods=["GET"]),
        Route("/start", start, methods=["POST"]),
        Route("/sagas/{saga_id}/resume", resume, methods=["POST"]),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/{topic}/{dlq_id}", dead_letter),
        Route("/dead-letters/{topic}/{dlq_id}/reprocess", reprocess, methods=["POST"]),
        Route("/dead-letters/{topic}/{dlq_id}/discard", discard, methods=["POST"]),
        Route("/engine", engine),
    ]


def _token(request: Request, form: Mapping[str, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    value = form.get("token")
    return str(value) if value else None


def _workflow(workflows: Mapping[str, Workflow], name: str | None) -> Workflow:
    if not name:
        if not workflows:
            raise HTTPException(404, "no workflows loaded")
        return workflows[sorted(workflows)[0]]
    wf = workflows.get(name)
    if wf is None:
        raise HTTPException(400, f"unknown workflow {name!r}")
    return wf


def _start_view(workflows: Mapping[str, Workflow], wf: Workflow) -> dict[str, Any]:
    return {"workflows": sorted(workflows), "wf": wf, "fields": form_fields(wf)}


async def _dead(broker: Broker, request: Request) -> DeadLetterMessage:
    topic, dlq_id = request.path_params["topic"], request.path_params["dlq_id"]
    try:
        return await broker.get_dead_letter_message(topic, dlq_id)
    except DeadLetterError as exc:
        raise HTTPException(404, str(exc)) from None


def _letter(dead: DeadLetterMessage, now: float) -> dict[str, Any]:
    """``orchestrator dlq list --json``'s fields, the age for people, the saga."""
    shown = letter_json(dead, now)
    shown["age"] = age(now - dead.failed_at)
    shown["saga_id"] = dead.original_message.headers.saga_id
    return shown


async def _engine_view(actions: Actions) -> dict[str, Any]:
    engine, broker = actions.engine, actions.broker
    topics = engine.options.topics
    probes = [(topics.replies, engine.options.reply_group)]
    probes += [(topics.steps(name), engine.options.worker.group) for name in engine.workflows]
    lag = []
    for topic, group in probes:
        try:
            behind: int | str = await broker.get_consumer_lag(topic, group)
            dead: int | str = await broker.get_dead_letter_count(topic)
        except Exception as exc:  # the page shows what it can read
            behind = dead = f"unknown ({type(exc).__name__})"
        lag.append({"topic": topic, "group": group, "lag": behind, "dead": dead})
    members: list[dict[str, Any]] = []
    for topic, group in probes:
        try:
            holders = await broker.get_partition_holders(topic, group)
        except Exception as exc:  # the page shows what it can read
            members.append({"topic": topic, "group": group, "error": type(exc).__name__})
            continue
        owned: dict[str, list[int]] = {}
        for partition, member in sorted(holders.items()):
            owned.setdefault(member, []).append(partition)
        for member, partitions in owned.items():
            here = member.startswith(f"{engine.consumer}#")
            members.append(
                {"topic": topic, "group": group, "member": member, "here": here,
                 "partitions": partitions}
            )  # fmt: skip
    health = await engine.health()
    circuit = getattr(broker, "circuit", None)
    return {
        "health": health,
        "members": members,
        "consumer": engine.consumer,
        "breaker": circuit.state.value if circuit is not None else "none (in-memory broker)",
        "lag": lag,
        "in_flight": len(engine.in_flight),
        "counts": dict(engine.counts),
    }
