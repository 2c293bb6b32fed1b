"""ESG emissions report: validate → scope 1 / 2 / 3 in parallel → aggregate → publish.

Input::

    {"company": "ACME Corp", "year": 2024,
     "activities": {"scope1": {"natural_gas_m3": 12000, "diesel_l": 800},
                    "scope2": {"electricity_kwh": 250000},
                    "scope3": {"business_travel_km": 40000, "purchased_goods_eur": 90000}},
     "fail_at": "scope3"}          # optional: make that step fail (non-retryable)

Emissions are activity * emission factor (kg CO2e per unit, ``FACTORS``), reported in
tonnes. Every step before ``publish`` is compensatable; ``publish`` is the pivot: once
the report is public it is corrected forward, never unpublished.
"""

from __future__ import annotations

from typing import Any

from orchestrator import RetryPolicy, StepError, WorkflowBuilder

FACTORS: dict[str, dict[str, float]] = {
    "scope1": {"natural_gas_m3": 2.02, "diesel_l": 2.68, "refrigerant_kg": 1430.0},
    "scope2": {"electricity_kwh": 0.233, "district_heat_kwh": 0.17},
    "scope3": {"business_travel_km": 0.15, "purchased_goods_eur": 0.35, "waste_t": 21.3},
}
"""kg CO2e per unit of activity (illustrative factors)."""

esg_report = WorkflowBuilder("esg_report")


def _maybe_fail(data: dict[str, Any], step: str) -> None:
    if data.get("fail_at") == step:
        raise StepError(f"injected failure at {step}", retryable=False)


def emissions_tonnes(scope: str, activities: dict[str, Any]) -> float:
    """Sum of activity * factor for one scope, in tonnes CO2e (rounded to 3 decimals)."""
    factors = FACTORS[scope]
    unknown = sorted(set(activities) - set(factors))
    if unknown:
        raise StepError(f"{scope}: no emission factor for {unknown}", retryable=False)
    kg = sum(float(amount) * factors[name] for name, amount in activities.items())
    return round(kg / 1000.0, 3)


def discard_draft(data: dict[str, Any]) -> None:
    """Compensation of ``validate``: the draft report is dropped."""


@esg_report.step(compensation=discard_draft, timeout=10)
def validate(data: dict[str, Any]) -> dict[str, Any]:
    _maybe_fail(data, "validate")
    company, year = data.get("company"), data.get("year")
    activities = data.get("activities")
    if not isinstance(company, str) or not company:
        raise StepError("company is required", retryable=False)
    if not isinstance(year, int) or not 1990 <= year <= 2100:
        raise StepError(
            f"year must be an integer between 1990 and 2100, not {year!r}", retryable=False
        )
    if not isinstance(activities, dict):
        raise StepError("activities must be an object of scope → activity amounts", retryable=False)
    for scope, amounts in activities.items():
        if scope not in FACTORS or not isinstance(amounts, dict):
            raise StepError(f"unknown scope {scope!r}", retryable=False)
        for name, amount in amounts.items():
            if not isinstance(amount, int | float) or amount < 0:
                raise StepError(f"{scope}.{name} must be a number >= 0", retryable=False)
    return {"validated": True, "report_id": f"{company.lower().replace(' ', '-')}-{year}"}


def _scope_step(scope: str) -> None:
    def retract(data: dict[str, Any]) -> None:
        """Compensation: the scope's figures are withdrawn from the draft."""

    def calculate(data: dict[str, Any]) -> dict[str, Any]:
        _maybe_fail(data, scope)
        return {f"{scope}_tco2e": emissions_tonnes(scope, data["activities"].get(scope, {}))}

    retract.__name__ = f"retract_{scope}"
    calculate.__name__ = scope
    esg_report.step(
        after=[validate],
        compensation=retract,
        retry=RetryPolicy(max_attempts=3, initial_interval=0.5),
        timeout=30,
    )(calculate)


for _scope in ("scope1", "scope2", "scope3"):
    _scope_step(_scope)


def discard_totals(data: dict[str, Any]) -> None:
    """Compensation of ``aggregate``: the totals are removed from the draft."""


@esg_report.step(after=["scope1", "scope2", "scope3"], compensation=discard_totals)
def aggregate(data: dict[str, Any]) -> dict[str, Any]:
    _maybe_fail(data, "aggregate")
    scopes = {s: data[f"{s}_tco2e"] for s in ("scope1", "scope2", "scope3")}
    total = round(sum(scopes.values()), 3)
    shares = {f"{s}_share": round(v / total, 4) if total else 0.0 for s, v in scopes.items()}
    return {"total_tco2e": total, **shares}


@esg_report.step(after=[aggregate], kind="pivot", retry=RetryPolicy(max_attempts=2))
async def publish(data: dict[str, Any]) -> dict[str, Any]:
    _maybe_fail(data, "publish")
    return {"published": True, "url": f"https://reports.example/{data['report_id']}"}
