"""Order fulfilment: reserve_stock (compensatable) → charge_payment (pivot) → ship (retriable).

Input::

    {"order_id": "o-1", "sku": "widget", "quantity": 2, "card": "4242424242424242",
     "address": "1 Main St"}

Fails on demand: a ``sku`` without enough stock (``gadget`` has none) fails
``reserve_stock``; a card ending in ``0002`` is declined at ``charge_payment`` (the
reservation is released); ``"fail_at": "ship"`` makes every shipping attempt fail,
which after the pivot ends the saga ``failed`` for a person to resume.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator import RetryPolicy, StepError, WorkflowBuilder

STOCK: dict[str, int] = {"widget": 25, "gizmo": 3, "gadget": 0}
PRICES: dict[str, float] = {"widget": 9.99, "gizmo": 149.0, "gadget": 24.5}
DECLINED_SUFFIX = "0002"



class Order(BaseModel):
    """What a saga of ``order_fulfilment`` is started with (checked at start)."""

    model_config = ConfigDict(extra="allow")  # e.g. "fail_at": "ship", for the demo

    order_id: str = Field(min_length=1, description="Your order reference")
    sku: str = Field(description="widget, gizmo or gadget")
    quantity: int = Field(ge=1, description="Units to reserve")
    card: str = Field(pattern=r"^[0-9]{12,19}$", description="Card number, digits only")
    address: str = Field(min_length=1, description="Where to ship")


order_fulfilment = WorkflowBuilder("order_fulfilment", input=Order)


def _ref(prefix: str, *parts: Any) -> str:
    # Derived from the order, not random: a retried step returns the same reference.
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def release_stock(data: dict[str, Any]) -> dict[str, Any]:
    """Compensation of ``reserve_stock``: gives the reserved units back."""
    return {"released": data["reserved_quantity"], "reservation_id": data["reservation_id"]}


@order_fulfilment.step(compensation=release_stock, timeout=5)
def reserve_stock(data: dict[str, Any]) -> dict[str, Any]:
    sku, quantity = data["sku"], data["quantity"]
    if sku not in STOCK:
        raise StepError(f"unknown sku {sku!r}", retryable=False)
    if not isinstance(quantity, int) or quantity < 1:
        raise StepError("quantity must be a positive integer", retryable=False)
    if STOCK[sku] < quantity:
        raise StepError(f"out of stock: {sku} has {STOCK[sku]}, {quantity} wanted", retryable=False)
    return {
        "reservation_id": _ref("res", data["order_id"], sku),
        "reserved_quantity": quantity,
        "amount": round(PRICES[sku] * quantity, 2),
    }


@order_fulfilment.step(
    after=[reserve_stock], kind="pivot", retry=RetryPolicy(max_attempts=2), timeout=15
)
async def charge_payment(data: dict[str, Any]) -> dict[str, Any]:
    card = str(data["card"])
    if card.endswith(DECLINED_SUFFIX):
        raise StepError("card declined", retryable=False)
    return {"charge_id": _ref("ch", data["order_id"], data["amount"]), "charged": data["amount"]}


@order_fulfilment.step(
    after=[charge_payment],
    kind="retriable",
    retry=RetryPolicy(max_attempts=5, initial_interval=2.0, max_interval=120.0),
    timeout=60,
)
def ship(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("fail_at") == "ship":
        raise StepError("carrier unavailable")
    return {"tracking_number": _ref("trk", data["order_id"], data["address"])}
