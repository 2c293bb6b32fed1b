"""The example workflows in workflows/: loading, given/when/then, and a real run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import (
    CompensateStep,
    CompensationSucceeded,
    Event,
    ExecuteStep,
    SagaState,
    SagaStatus,
    StepError,
    StepFailed,
    StepSucceeded,
    Workflow,
    call_step,
    load_workflows,
    react,
    start,
)
from orchestrator.testing import (
    aborts,
    check_invariants,
    compensated,
    compensates,
    executes,
    failed,
    finishes,
    simulate,
    started,
    succeeded,
    timer_fired,
)
from orchestrator.testing import given as gwt

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
LOADED = load_workflows(WORKFLOWS)
ESG = LOADED["esg_report"]
ORDER = LOADED["order_fulfilment"]

ESG_INPUT: dict[str, Any] = {
    "company": "ACME Corp",
    "year": 2024,
    "activities": {
        "scope1": {"natural_gas_m3": 12000, "diesel_l": 800},
        "scope2": {"electricity_kwh": 250000},
        "scope3": {"business_travel_km": 40000, "purchased_goods_eur": 90000},
    },
}
ORDER_INPUT: dict[str, Any] = {
    "order_id": "o-1",
    "sku": "widget",
    "quantity": 2,
    "card": "4242424242424242",
    "address": "1 Main St",
}


def test_both_examples_load_with_the_documented_shape() -> None:
    assert set(LOADED) == {"esg_report", "order_fulfilment"}
    assert ESG.steps["aggregate"].deps == ("scope1", "scope2", "scope3")
    assert {ESG.steps[s].deps for s in ("scope1", "scope2", "scope3")} == {("validate",)}
    assert ESG.pivots == ("publish",)
    assert [ORDER.steps[s].kind.value for s in ORDER.order] == [
        "compensatable",
        "pivot",
        "retriable",
    ]


# --- given / when / then ------------------------------------------------------------


def test_esg_validate_fans_out_to_the_three_scopes() -> None:
    out = {"validated": True, "report_id": "acme-corp-2024"}
    gwt(ESG, started(ESG, ESG_INPUT)).when(succeeded("validate", out)).then(
        executes("scope1", data={**ESG_INPUT, **out}),
        executes("scope2", data={**ESG_INPUT, **out}),
        executes("scope3", data={**ESG_INPUT, **out}),
    )


def test_esg_scope3_failure_compensates_the_other_scopes_then_validate() -> None:
    h = gwt(
        ESG,
        started(ESG, {**ESG_INPUT, "fail_at": "scope3"}),
        succeeded("validate"),
        succeeded("scope1", {"scope1_tco2e": 1.0}),
        succeeded("scope2", {"scope2_tco2e": 2.0}),
    )
    h.when(failed("scope3", "injected failure at scope3", retryable=False)).then(
        aborts("scope3"), compensates("scope1"), compensates("scope2")
    ).then_status("compensating")
    h2 = gwt(
        ESG,
        started(ESG, ESG_INPUT),
        succeeded("validate"),
        succeeded("scope1"),
        succeeded("scope2"),
        failed("scope3", retryable=False),
        compensated("scope1"),
    )
    h2.when(compensated("scope2")).then(compensates("validate"))


def test_esg_publish_is_the_point_of_no_return() -> None:
    h = gwt(
        ESG,
        started(ESG, ESG_INPUT),
        succeeded("validate"),
        succeeded("scope1"),
        succeeded("scope2"),
        succeeded("scope3"),
        succeeded("aggregate"),
    )
    h.when(succeeded("publish", {"published": True})).then(finishes("completed"))
    h.when(failed("publish", retryable=False)).then(
        aborts("publish", compensate=True), compensates("aggregate")
    )


def test_order_declined_card_releases_the_stock() -> None:
    h = gwt(ORDER, started(ORDER, ORDER_INPUT), succeeded("reserve_stock", {"amount": 19.98}))
    h.when(failed("charge_payment", "card declined", retryable=False)).then(
        aborts("charge_payment"),
        compensates("reserve_stock", data={**ORDER_INPUT, "amount": 19.98}),
    )


def test_order_shipping_is_retried_never_compensated() -> None:
    h = gwt(
        ORDER, started(ORDER, ORDER_INPUT), succeeded("reserve_stock"), succeeded("charge_payment")
    )
    t = h.when(failed("ship", "carrier unavailable", now=10.0))
    (retry,) = t.commands
    assert getattr(retry, "attempt", None) == 2
    gwt(
        ORDER,
        started(ORDER, ORDER_INPUT),
        succeeded("reserve_stock"),
        succeeded("charge_payment"),
        failed("ship"),
        timer_fired("ship", 2),
    ).when(succeeded("ship", attempt=2)).then(finishes("completed"))


# --- a real run: the step functions themselves, driven by the pure core ---------------


async def run(wf: Workflow, data: dict[str, Any]) -> tuple[SagaState, list[Any]]:
    """A minimal in-test shell: execute every command at once; fire timers at once."""
    from orchestrator import ScheduleRetry, TimerFired

    state, pending = react(wf, None, start(wf, "run-1", data, 0.0))
    queue = list(pending)
    log: list[Any] = list(queue)
    now = 0.0
    while queue:
        command = queue.pop(0)
        now += 1.0
        event: Event
        if isinstance(command, ExecuteStep):
            try:
                output = await call_step(wf.steps[command.step].action, command.data)
                event = StepSucceeded("run-1", command.step, command.attempt, output, now)
            except StepError as exc:
                event = StepFailed(
                    "run-1", command.step, command.attempt, exc.reason, exc.retryable, now
                )
        elif isinstance(command, CompensateStep):
            spec = wf.steps[command.step].compensation
            assert spec is not None
            await call_step(spec.action, command.data)
            event = CompensationSucceeded("run-1", command.step, command.attempt, now)
        elif isinstance(command, ScheduleRetry):
            now = max(now, command.due_at)
            event = TimerFired("run-1", command.step, command.attempt, command.compensation, now)
        else:
            continue
        state, new = react(wf, state, event)
        log += [event, *new]
        queue += new
    return state, log


async def test_esg_report_completes_with_activity_times_factor() -> None:
    FACTORS = _esg_module().FACTORS

    state, _ = await run(ESG, ESG_INPUT)
    assert state.status is SagaStatus.COMPLETED
    assert state.output is not None
    expected = {}
    for scope, amounts in ESG_INPUT["activities"].items():
        kg = sum(amount * FACTORS[scope][name] for name, amount in amounts.items())
        expected[scope] = kg / 1000
        assert state.output[f"{scope}_tco2e"] == pytest.approx(kg / 1000, abs=1e-3)
    assert state.output["total_tco2e"] == pytest.approx(sum(expected.values()), abs=3e-3)
    assert state.output["url"].endswith("acme-corp-2024")


@pytest.mark.parametrize("step", ["validate", "scope2", "scope3", "aggregate"])
async def test_esg_report_fails_on_demand_and_compensates(step: str) -> None:
    state, log = await run(ESG, {**ESG_INPUT, "fail_at": step})
    assert state.status is SagaStatus.COMPENSATED
    assert state.failure is not None and state.failure.step == step
    undone = {c.step for c in log if isinstance(c, CompensateStep)}
    done = {s for s, st in state.steps.items() if st.phase.value == "succeeded"}
    assert undone == done  # every succeeded step compensated, nothing else


async def test_esg_report_refuses_invalid_input_without_retrying() -> None:
    state, log = await run(ESG, {**ESG_INPUT, "year": "last year"})
    assert state.status is SagaStatus.COMPENSATED
    assert sum(isinstance(c, ExecuteStep) for c in log) == 1


@pytest.mark.parametrize(
    ("change", "failing_step", "status"),
    [
        ({}, None, SagaStatus.COMPLETED),
        ({"sku": "gadget"}, "reserve_stock", SagaStatus.COMPENSATED),
        ({"card": "4000000000000002"}, "charge_payment", SagaStatus.COMPENSATED),
        ({"fail_at": "ship"}, "ship", SagaStatus.FAILED),
    ],
)
async def test_order_fulfilment_outcomes(
    change: dict[str, Any], failing_step: str | None, status: SagaStatus
) -> None:
    state, log = await run(ORDER, {**ORDER_INPUT, **change})
    assert state.status is status
    if failing_step is None:
        assert state.output is not None and state.output["tracking_number"].startswith("trk-")
    else:
        assert state.failure is not None and state.failure.step == failing_step
    released = [c for c in log if isinstance(c, CompensateStep)]
    charged = "charge_payment" in state.steps and state.steps["charge_payment"].output
    # compensated only if the stock was reserved and the payment did not go through
    assert bool(released) == (status is SagaStatus.COMPENSATED and failing_step != "reserve_stock")
    assert not (charged and released)


# --- property tests of the examples with the shipped helpers --------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ESG, ORDER]), st.data())
def test_examples_keep_the_saga_rules(wf: Workflow, data: st.DataObject) -> None:
    check_invariants(simulate(wf, data, input=ESG_INPUT if wf is ESG else ORDER_INPUT))


def _esg_module() -> Any:
    import sys

    action = ESG.steps["validate"].action
    return sys.modules[action.__module__]
