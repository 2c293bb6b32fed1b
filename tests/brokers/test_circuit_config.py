"""The seed's ``circuit_breaker_enabled`` key: a broker made by ``MessagingConfig`` whose
server is down opens its breaker after ``failure_threshold`` failures, unless the key
is false, when every call is tried (and fails on its own)."""

from __future__ import annotations

import pytest

from brokers import (
    BrokerConnectionError,
    CircuitBreaker,
    CircuitBreakerPolicy,
    CircuitOpenError,
    CircuitState,
    MessagingConfig,
    RedisStreamsBroker,
)
from tests.servers import free_port


def _down(enabled: bool) -> RedisStreamsBroker:
    """A Redis broker from the seed's keys, pointed at a port nothing listens on."""
    config = MessagingConfig(
        broker_type="redis",
        redis={"url": f"redis://127.0.0.1:{free_port()}/0"},
        circuit_breaker_enabled=enabled,
    )
    broker = config.create_broker(socket_connect_timeout=1.0)
    assert isinstance(broker, RedisStreamsBroker)
    return broker


async def _failures(broker: RedisStreamsBroker, tries: int) -> list[type[Exception]]:
    raised: list[type[Exception]] = []
    for _ in range(tries):
        with pytest.raises(BrokerConnectionError) as caught:
            await broker.connect()
        raised.append(caught.type)
    return raised


async def test_the_breaker_opens_on_a_dead_server_when_enabled() -> None:
    broker = _down(True)
    threshold = broker.circuit.policy.failure_threshold
    raised = await _failures(broker, threshold + 2)
    assert raised[:threshold] == [BrokerConnectionError] * threshold
    assert raised[threshold:] == [CircuitOpenError, CircuitOpenError]  # failing fast
    assert broker.circuit.state is CircuitState.OPEN


async def test_the_breaker_never_opens_when_disabled() -> None:
    broker = _down(False)
    threshold = broker.circuit.policy.failure_threshold
    raised = await _failures(broker, threshold * 2 + 1)
    assert raised == [BrokerConnectionError] * (threshold * 2 + 1)  # each one tried
    assert broker.circuit.state is CircuitState.DISABLED
    assert (await broker.health_check())["circuit"] == "disabled"


async def test_a_disabled_breaker_passes_every_call_through() -> None:
    breaker = CircuitBreaker("t", CircuitBreakerPolicy(failure_threshold=1, enabled=False))
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise BrokerConnectionError("down")

    for _ in range(5):
        with pytest.raises(BrokerConnectionError) as caught:
            await breaker.call(down)
        assert caught.type is BrokerConnectionError
    assert calls == 5 and breaker.state is CircuitState.DISABLED
