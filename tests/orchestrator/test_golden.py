"""Golden histories: recorded saga logs replayed against today's workflow definitions.

A change to a workflow or to the core that would decide an old saga differently (or no
longer decode its records) fails here. After an intended change, re-record with::

    SAGAFLOW_RECORD_GOLDEN=1 python -m pytest tests/orchestrator/test_golden.py

and review the diff of tests/orchestrator/golden/ like any other change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator import (
    CompensateStep,
    CompensationSucceeded,
    Event,
    ExecuteStep,
    ResumeRequested,
    ScheduleRetry,
    StepError,
    StepFailed,
    StepSucceeded,
    TimerFired,
    Workflow,
    call_step,
    fold,
    is_terminal,
    load_workflows,
    react,
    replay,
    start,
)
from orchestrator.core.codec import decode, encode

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
WORKFLOWS = load_workflows(ROOT / "workflows")

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "esg_completed": (
        "esg_report",
        {
            "company": "ACME Corp",
            "year": 2024,
            "activities": {
                "scope1": {"natural_gas_m3": 12000},
                "scope2": {"electricity_kwh": 250000},
                "scope3": {"business_travel_km": 40000},
            },
        },
    ),
    "esg_scope3_compensated": (
        "esg_report",
        {"company": "ACME Corp", "year": 2024, "activities": {}, "fail_at": "scope3"},
    ),
    "order_declined_compensated": (
        "order_fulfilment",
        {
            "order_id": "o-2",
            "sku": "widget",
            "quantity": 1,
            "card": "4000000000000002",
            "address": "2 Side St",
        },
    ),
    "order_ship_failed_then_resumed": (
        "order_fulfilment",
        {
            "order_id": "o-3",
            "sku": "gizmo",
            "quantity": 1,
            "card": "4242424242424242",
            "address": "3 High St",
            "fail_at": "ship",
        },
    ),
}


async def record(wf: Workflow, data: dict[str, Any], saga_id: str) -> list[Any]:
    """Run the real step functions through the core; resume once if the saga failed."""
    state, commands = react(wf, None, start(wf, saga_id, data, 0.0))
    log: list[Any] = [start(wf, saga_id, data, 0.0), *commands]
    queue, now, resumed = list(commands), 0.0, False
    while True:
        while queue:
            command = queue.pop(0)
            now += 1.0
            event: Event
            if isinstance(command, ExecuteStep):
                try:
                    out = await call_step(wf.steps[command.step].action, command.data)
                    event = StepSucceeded(saga_id, command.step, command.attempt, out, now)
                except StepError as exc:
                    event = StepFailed(
                        saga_id, command.step, command.attempt, exc.reason, exc.retryable, now
                    )
            elif isinstance(command, CompensateStep):
                event = CompensationSucceeded(saga_id, command.step, command.attempt, now)
            elif isinstance(command, ScheduleRetry):
                now = max(now, command.due_at)
                event = TimerFired(saga_id, command.step, command.attempt, False, now)
            else:
                continue
            state, new = react(wf, state, event)
            log += [event, *new]
            queue += new
        if state.status != "failed" or resumed:
            return log
        resumed = True
        # The person fixed the carrier: from now on the step functions ignore fail_at.
        wf = _without_failure(wf)
        state, new = react(wf, state, ResumeRequested(saga_id, now + 100.0))
        log += [ResumeRequested(saga_id, now + 100.0), *new]
        queue += new


def _without_failure(wf: Workflow) -> Workflow:
    import networkx as nx

    graph = nx.DiGraph(wf.graph)
    for name in wf.steps:
        action = graph.nodes[name]["action"]
        graph.nodes[name]["action"] = _dropping_fail_at(action)
    return Workflow.from_graph(wf.name, graph)


def _dropping_fail_at(action: Any) -> Any:
    def run(data: dict[str, Any]) -> Any:
        data.pop("fail_at", None)
        return action(data)

    return run


@pytest.mark.parametrize("case", sorted(CASES))
async def test_golden_history_replays(case: str) -> None:
    workflow_name, data = CASES[case]
    wf = WORKFLOWS[workflow_name]
    path = GOLDEN / f"{case}.json"
    if os.environ.get("SAGAFLOW_RECORD_GOLDEN"):
        log = await record(wf, data, saga_id=case)
        records = [{"kind": m.kind, "type": m.type_name, "data": encode(m)} for m in log]
        doc = {"workflow": wf.name, "definition_hash": wf.definition_hash, "records": records}
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    doc = json.loads(path.read_text())
    log = [decode(r["kind"], r["type"], r["data"]) for r in doc["records"]]
    assert doc["definition_hash"] == wf.definition_hash, "the workflow's definition changed"
    result = replay(wf, log)
    assert result.ok, result.mismatches[:1]
    state = fold(log)
    assert state is not None and is_terminal(state)
    assert result.state == state
