"""Small workflows for the runtime tests, with failures chosen by the saga's input.

Every call is recorded in ``CALLS`` (saga id → list of "step" / "undo:step"), so tests
can check what ran, how often, and in which order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from orchestrator import RetryPolicy, StepError, WorkflowBuilder
from orchestrator.runtime.worker import current_step

CALLS: dict[str, list[str]] = defaultdict(list)
FLAKY: dict[str, int] = defaultdict(int)
BROKEN_UNDO: set[str] = set()


def _record(name: str, data: dict[str, Any]) -> None:
    ctx = current_step()
    CALLS[ctx.saga_id].append(name)
    if data.get("fail") == name:
        raise StepError(f"{name} refused", retryable=False)
    if data.get("flaky") == name and FLAKY[ctx.saga_id] < int(data.get("flaky_times", 1)):
        FLAKY[ctx.saga_id] += 1
        raise RuntimeError(f"{name} hiccup {FLAKY[ctx.saga_id]}")


def _undo(name: str) -> Any:
    def undo(data: dict[str, Any]) -> None:
        ctx = current_step()
        CALLS[ctx.saga_id].append(f"undo:{name}")
        if ctx.saga_id in BROKEN_UNDO and data.get("broken_undo") == name:
            raise RuntimeError(f"undo of {name} is broken")

    undo.__name__ = f"undo_{name}"
    return undo


FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.05)

diamond = WorkflowBuilder("diamond")


@diamond.step(compensation=_undo("a"), retry=FAST_RETRY)
def a(data: dict[str, Any]) -> dict[str, Any]:
    _record("a", data)
    return {"a": 1}


@diamond.step(after=["a"], compensation=_undo("b"), retry=FAST_RETRY)
async def b(data: dict[str, Any]) -> dict[str, Any]:
    _record("b", data)
    await asyncio.sleep(0.005)
    return {"b": data["a"] + 1}


@diamond.step(after=["a"], compensation=_undo("c"), retry=FAST_RETRY)
def c(data: dict[str, Any]) -> dict[str, Any]:
    _record("c", data)
    return {"c": data["a"] + 2}


@diamond.step(after=["b", "c"], retry=FAST_RETRY, kind="pivot")
def d(data: dict[str, Any]) -> dict[str, Any]:
    _record("d", data)
    return {"d": data["b"] + data["c"]}


@diamond.step(after=["d"], kind="retriable", retry=FAST_RETRY)
def e(data: dict[str, Any]) -> dict[str, Any]:
    _record("e", data)
    return {"e": True}


slow = WorkflowBuilder("slow")


@slow.step(compensation=_undo("first"), timeout=0.2)
def first(data: dict[str, Any]) -> dict[str, Any]:
    _record("first", data)
    return {"first": True}


@slow.step(
    after=["first"],
    compensation=_undo("hang"),
    timeout=0.2,
    retry=RetryPolicy(max_attempts=2, initial_interval=0.01),
)
async def hang(data: dict[str, Any]) -> dict[str, Any]:
    _record("hang", data)
    if not data.get("quick"):
        await asyncio.sleep(30)
    return {}


@slow.step(after=["hang"], kind="pivot")
def last(data: dict[str, Any]) -> dict[str, Any]:
    _record("last", data)
    return {}


later = WorkflowBuilder("later")
"""One step that fails once, then is retried after a second: a retry timer to outlive
the engine that armed it (2 s later)."""


@later.step(kind="retriable", retry=RetryPolicy(max_attempts=3, initial_interval=2.0, jitter=0.0))
def once_more(data: dict[str, Any]) -> dict[str, Any]:
    _record("once_more", data)
    return {"done": True}


long = WorkflowBuilder("long")
"""One step that runs longer than the broker's visibility timeout (2 s in the tests)."""


@long.step(kind="retriable", timeout=10)
async def crunch(data: dict[str, Any]) -> dict[str, Any]:
    _record("crunch", data)
    await asyncio.sleep(float(data["seconds"]))
    return {"crunched": True}


WORKFLOWS = [diamond.build(), slow.build(), later.build(), long.build()]
