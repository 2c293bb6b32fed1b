"""Record golden histories from real Engine runs: the records as the engine writes them.

Each case runs the example workflows of ``workflows/`` on a real engine (a SQLite file,
the in-memory broker, the in-process step workers) and exports the saga's stream as
JSONL, exactly as ``orchestrator export`` does, into ``tests/orchestrator/golden/engine``.
``tests/audit/test_golden_engine.py`` replays them against today's definitions.

Re-record after an intended change (and review the diff like any other change)::

    python -m tests.audit.record_golden

Two cases need a world the example step functions cannot make: a compensation that
fails (``esg_failed``) and a carrier that recovers before a person resumes the saga
(``order_failed_resumed``). They run variants whose step *functions* differ but whose
definition (names, kinds, policies, timeouts: ``definition_hash``) is the example's,
which the script asserts: the records are the ones the real workflow's engine writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator import StepError, Workflow, load_workflows
from orchestrator.audit import export_lines
from orchestrator.runtime.clock import FakeClock
from orchestrator.runtime.engine import Engine, EngineOptions

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "orchestrator" / "golden" / "engine"
WORKFLOWS = load_workflows(ROOT / "workflows")

_ACTIVITIES = {
    "scope1": {"natural_gas_m3": 12000, "diesel_l": 800},
    "scope2": {"electricity_kwh": 250000},
    "scope3": {"business_travel_km": 40000, "purchased_goods_eur": 90000},
}
_ESG = {"company": "ACME Corp", "year": 2024, "activities": _ACTIVITIES}
_ORDER = {
    "order_id": "o-1",
    "sku": "widget",
    "quantity": 2,
    "card": "4242424242424242",
    "address": "1 Main St",
}


def _refuse(data: dict[str, Any]) -> None:
    raise StepError("draft store unavailable", retryable=False)


def _ignoring_fail_at(action: Callable[..., Any]) -> Callable[..., Any]:
    def run(data: dict[str, Any]) -> Any:
        data.pop("fail_at", None)
        return action(data)

    return run


@dataclass(frozen=True)
class Case:
    workflow: str
    input: dict[str, Any]
    status: str
    """The status the saga ends with (after the resume, if any)."""
    actions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """Step or compensation node → a replacement function (same definition)."""
    resume_with: Callable[[Workflow], Workflow] | None = None
    """After the saga failed: the workflow the resumed engine runs."""


CASES: dict[str, Case] = {
    "esg_completed": Case("esg_report", _ESG, "completed"),
    "esg_compensated": Case("esg_report", {**_ESG, "fail_at": "scope3"}, "compensated"),
    "esg_failed": Case(
        "esg_report", {**_ESG, "fail_at": "aggregate"}, "failed", {"retract_scope1": _refuse}
    ),
    "order_completed": Case("order_fulfilment", _ORDER, "completed"),
    "order_compensated": Case(
        "order_fulfilment", {**_ORDER, "order_id": "o-2", "card": "4000000000000002"}, "compensated"
    ),
    "order_failed": Case(
        "order_fulfilment", {**_ORDER, "order_id": "o-3", "fail_at": "ship"}, "failed"
    ),
    "order_failed_resumed": Case(
        "order_fulfilment",
        {**_ORDER, "order_id": "o-4", "fail_at": "ship"},
        "completed",
        resume_with=lambda wf: variant(wf, {"ship": _ignoring_fail_at(wf.steps["ship"].action)}),
    ),
}


def variant(wf: Workflow, actions: dict[str, Callable[..., Any]]) -> Workflow:
    """``wf`` with other functions on some nodes; the definition must not change."""
    if not actions:
        return wf
    graph = nx.DiGraph(wf.graph)
    for node, action in actions.items():
        graph.nodes[node]["action"] = action
    changed = Workflow.from_graph(wf.name, graph)
    assert changed.definition_hash == wf.definition_hash, "a variant changed the definition"
    return changed


async def _drive(clock: FakeClock, stop: asyncio.Event) -> None:
    """Let engine time pass (retry backoff) 25x faster than real time."""
    while not stop.is_set():
        await asyncio.sleep(0.01)
        clock.advance(0.25)


async def _engine_run(
    store: EventStore, wf: Workflow, clock: FakeClock, work: Callable[[Engine], Any]
) -> Any:
    broker = InMemoryBroker()
    await broker.connect()
    stop = asyncio.Event()
    driver = asyncio.create_task(_drive(clock, stop))
    try:
        options = EngineOptions(recover=False, intake=False)
        async with Engine(store, broker, {wf.name: wf}, clock=clock, options=options) as engine:
            return await work(engine)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        await broker.disconnect()


async def record(name: str, case: Case, directory: Path) -> list[str]:
    """Run ``case`` on a real engine; the saga's stream as JSONL lines."""
    wf = variant(WORKFLOWS[case.workflow], case.actions)
    clock = FakeClock()
    store = await EventStore.open(f"sqlite:///{directory / (name + '.db')}")
    try:

        async def run(engine: Engine) -> str:
            await engine.start_saga(wf.name, case.input, saga_id=name)
            return (await engine.wait(name, timeout=120)).status.value

        status = await _engine_run(store, wf, clock, run)
        if case.resume_with is not None:
            assert status == "failed", f"{name}: {status} before the resume"

            async def resume(engine: Engine) -> str:
                await engine.resume_saga(name)
                return (await engine.wait(name, timeout=120)).status.value

            status = await _engine_run(store, case.resume_with(wf), clock, resume)
        assert status == case.status, f"{name}: ended {status}, expected {case.status}"
        return list(export_lines(await store.read_stream(f"saga-{name}")))
    finally:
        await store.close()


async def main(names: list[str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="audit_golden_") as tmp:
        for name in names or sorted(CASES):
            lines = await record(name, CASES[name], Path(tmp))
            (GOLDEN / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"{name}: {len(lines)} records")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
