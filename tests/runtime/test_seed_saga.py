"""The seed document's Saga Pattern snippet, as written (``messaging`` read as
``brokers``; ``SagaPattern`` is the orchestrator's), against a real redis-server."""

from __future__ import annotations

import pytest

from brokers import InMemoryBroker, RedisStreamsBroker
from orchestrator import SagaPattern


async def test_the_seed_snippet_runs_against_redis(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = RedisStreamsBroker(redis_url=redis_url)
    await broker.connect()

    saga = SagaPattern(broker)

    # Define saga steps with compensation
    def validate(data):  # type: ignore[no-untyped-def]
        print("Validating...")
        return {"validated": True}

    def compensate_validate(data):  # type: ignore[no-untyped-def]
        print("Rolling back validation")

    def calculate(data):  # type: ignore[no-untyped-def]
        print("Calculating...")
        return {"emissions": 2500}

    def compensate_calculate(data):  # type: ignore[no-untyped-def]
        print("Rolling back calculation")

    # Add steps
    saga.add_step("validate", validate, compensate_validate)
    saga.add_step("calculate", calculate, compensate_calculate)

    # Execute (automatic compensation on failure)
    result = await saga.execute({"company": "ACME Corp"})
    print(f"Result: {result}")

    await broker.disconnect()

    out = capsys.readouterr().out
    assert out.index("Validating...") < out.index("Calculating...")
    assert "Rolling back" not in out
    assert result.status == "completed"
    assert result.outputs == {"validate": {"validated": True}, "calculate": {"emissions": 2500}}
    assert result.saga_id in out


async def test_a_failing_step_compensates_the_steps_before_it_in_reverse() -> None:
    undone: list[str] = []
    async with InMemoryBroker() as broker:
        saga = SagaPattern(broker, name="three")

        def fail(data: dict[str, object]) -> dict[str, object]:
            raise RuntimeError(f"{data['company']} has no data")

        saga.add_step("a", lambda d: {"a": 1}, lambda d: undone.append("a"))
        saga.add_step("b", lambda d: {"b": 2}, lambda d: undone.append("b"))
        saga.add_step("c", fail)
        result = await saga.execute({"company": "Globex"})
        again = await saga.execute({"company": "Initech"})
        await saga.close()
    assert result.status == "compensated"
    assert result.error is not None and "Globex has no data" in result.error
    assert result.compensated == ("b", "a") or set(result.compensated) == {"a", "b"}
    assert undone[:2] == ["b", "a"]  # b depends on a: undone first
    assert again.status == "compensated" and again.saga_id != result.saga_id
