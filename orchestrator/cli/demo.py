"""``orchestrator demo``: the example workflows end to end, in this process.

On the configured store (the embedded default: ``./sagaflow.sqlite``) with the
in-memory broker: one ESG report completes, one compensates after its scope 3
calculation fails; one order ships, one is compensated after its card is declined.
Then every hash chain of the store is verified.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator.cli.render import saga_table
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.settings import Settings

_ACTIVITIES = {
    "scope1": {"natural_gas_m3": 12000, "diesel_l": 800},
    "scope2": {"electricity_kwh": 250000},
    "scope3": {"business_travel_km": 40000, "purchased_goods_eur": 90000},
}
_ORDER = {
    "order_id": "o-1001",
    "sku": "widget",
    "quantity": 2,
    "address": "1 Main St",
    "card": "4242424242424242",
}

DEMO: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "ESG report for ACME Corp",
        "esg_report",
        {"company": "ACME Corp", "year": 2024, "activities": _ACTIVITIES},
        "completed",
    ),
    (
        "ESG report whose scope 3 calculation fails",
        "esg_report",
        {"company": "Globex", "year": 2024, "activities": _ACTIVITIES, "fail_at": "scope3"},
        "compensated",
    ),
    ("order of 2 widgets", "order_fulfilment", _ORDER, "completed"),
    (
        "order paid with a declined card",
        "order_fulfilment",
        {**_ORDER, "order_id": "o-1002", "card": "4000000000000002"},
        "compensated",
    ),
]


async def run_demo(settings: Settings, console: Console) -> int:
    workflows = load_workflows(settings.workflows)
    missing = sorted({name for _, name, _, _ in DEMO} - set(workflows))
    if missing:
        raise OrchestratorError(f"the demo needs workflows {missing} in {settings.workflows}")
    store = await EventStore.open(settings.store)
    broker = InMemoryBroker()
    await broker.connect()
    unexpected = 0
    try:
        async with Engine(
            store, broker, workflows, options=EngineOptions(recover=False, intake=False)
        ) as engine:
            for title, workflow, data, expected in DEMO:
                saga_id = await engine.start_saga(workflow, data)
                state = await engine.wait(saga_id, timeout=60)
                console.rule(f"{title}: {state.status.value}")
                console.print(saga_table(workflows[workflow], state))
                reason = state.failure_summary
                if reason:
                    console.print(f"why: {reason}", highlight=False)
                if state.output:
                    shown = {k: v for k, v in state.output.items() if k not in data}
                    console.print(f"output: {shown}", highlight=False)
                unexpected += state.status.value != expected
        report = await store.verify()
    finally:
        await broker.disconnect()
        await store.close()
    console.rule("audit")
    if report.first_broken is not None:
        console.print(f"[red]chain broken:[/red] {report.first_broken.describe()}")
        return 1
    console.print(
        f"hash chains verified: {report.records_checked} records in "
        f"{report.streams_checked} streams of {settings.store}",
        highlight=False,
    )
    console.print(
        "next: orchestrator status · orchestrator graph esg_report · orchestrator run",
        highlight=False,
    )
    return 1 if unexpected else 0
