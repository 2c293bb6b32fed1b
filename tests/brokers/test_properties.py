"""Property tests: wire round trip, provenance, backoff bounds, exported names."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import brokers
from brokers import InMemoryBroker, RedeliveryPolicy
from brokers._message import decode_message

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | (st.floats(allow_nan=False, allow_infinity=False))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
header_maps = st.dictionaries(
    st.sampled_from(["correlation_id", "causation_id", "reply_to", "saga_id", "x-key"]),
    st.text(max_size=10),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(payload=payloads, headers=header_maps, priority=st.integers(-5, 5))
def test_encode_decode_round_trip_keeps_message_and_hash(
    payload: dict[str, Any], headers: dict[str, str], priority: int
) -> None:
    broker = InMemoryBroker()
    message, data = broker.build_message("t", payload, headers=headers, priority=priority)
    back = decode_message(data, "t")
    assert back == message
    assert back.verify()
    assert orjson.loads(data)["payload"] == payload


@settings(max_examples=100, deadline=None)
@given(payload=payloads, key=st.text(min_size=1, max_size=8))
def test_any_change_to_the_payload_breaks_provenance(payload: dict[str, Any], key: str) -> None:
    _, data = InMemoryBroker().build_message("t", payload)
    wire = orjson.loads(data)
    wire["payload"][key] = ["tampered", wire["payload"].get(key)]
    assert not decode_message(orjson.dumps(wire), "t").verify()


@given(
    base=st.floats(0, 10),
    cap=st.floats(0, 100),
    multiplier=st.floats(1, 4),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 200),
)
def test_backoff_stays_within_jittered_exponential_bounds(
    base: float, cap: float, multiplier: float, jitter: float, attempt: int
) -> None:
    policy = RedeliveryPolicy(base_delay=base, max_delay=cap, multiplier=multiplier, jitter=jitter)
    ceiling = min(cap, base * multiplier ** (attempt - 1)) if attempt < 100 else None
    delay = policy.delay(attempt)
    assert 0 <= delay <= cap
    assert delay <= policy.ceiling(attempt)
    assert delay >= policy.ceiling(attempt) * (1 - jitter) - 1e-9
    if ceiling is not None:
        assert abs(policy.ceiling(attempt) - ceiling) <= 1e-9 * max(1.0, ceiling)


def test_backoff_grows_until_the_cap() -> None:
    policy = RedeliveryPolicy(base_delay=1, max_delay=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_exported_names_are_pinned() -> None:
    assert brokers.__all__ == sorted(brokers.__all__)
    assert set(brokers.__all__) == {
        "Assignment",
        "Broker",
        "BrokerConnectionError",
        "BrokerError",
        "BrokerNotConnectedError",
        "CircuitBreaker",
        "CircuitBreakerPolicy",
        "CircuitOpenError",
        "CircuitState",
        "ConfigError",
        "ConsumerOptions",
        "DeadLetterError",
        "DeadLetterMessage",
        "Delivery",
        "DiscardedDeadLetter",
        "Headers",
        "InMemoryBroker",
        "KafkaBroker",
        "KafkaConfig",
        "Message",
        "MessageTooLargeError",
        "MessageValidationError",
        "MessagingConfig",
        "OnAssigned",
        "PubSubPattern",
        "RedeliveryPolicy",
        "RedisConfig",
        "RedisStreamsBroker",
        "RequestReplyPattern",
        "WorkQueuePattern",
    }
    for name in brokers.__all__:
        assert getattr(brokers, name).__module__.startswith("brokers")
