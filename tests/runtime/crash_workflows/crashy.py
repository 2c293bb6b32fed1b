"""A workflow for the kill -9 test: steps that take a little time, some sagas fail."""

import asyncio

from orchestrator import RetryPolicy, StepError, WorkflowBuilder

crashy = WorkflowBuilder("crashy")
QUICK = RetryPolicy(max_attempts=3, initial_interval=0.05, max_interval=0.2)


async def _work(data: dict, name: str) -> dict:
    await asyncio.sleep(0.02 * (data["n"] % 7))
    if data.get("fail") == name:
        raise StepError(f"{name} declined", retryable=False)
    return {name: data["n"]}


async def undo_reserve(data: dict) -> None:
    await asyncio.sleep(0.002)


async def undo_charge(data: dict) -> None:
    await asyncio.sleep(0.002)


@crashy.step(compensation=undo_reserve, retry=QUICK)
async def reserve(data: dict) -> dict:
    return await _work(data, "reserve")


@crashy.step(after=[reserve], compensation=undo_charge, retry=QUICK)
async def charge(data: dict) -> dict:
    return await _work(data, "charge")


@crashy.step(after=[charge], kind="pivot", retry=QUICK)
async def confirm(data: dict) -> dict:
    return await _work(data, "confirm")


@crashy.step(after=[confirm], kind="retriable", retry=QUICK)
async def notify(data: dict) -> dict:
    return await _work(data, "notify")
