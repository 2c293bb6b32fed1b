"""Property tests: wire round trip, provenance, backoff bounds, exported names."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brokers
from brokers import InMemoryBroker, RedeliveryPolicy
from brokers._errors import MessageValidationError
from brokers._message import decode_message, encode_payload

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


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int


class Name(str):
    pass


# JSON's own values and, among them, what one JSON library or another takes and should
# not: NaN, integers past 64 bits, tuples, non-string keys, lone surrogates, objects.
odd_scalars = (
    json_scalars
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**64, -(2**63) - 1])
    | st.sampled_from([Colour.RED, Level.HIGH, Point(1), Name("n"), "\ud800", b"b"])
    | st.sampled_from([uuid.UUID(int=7), datetime.date(2026, 1, 1), decimal.Decimal("1")])
    | st.sampled_from([{1, 2}, frozenset()])
)
odd_values = st.recursive(
    odd_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3) | st.none(), children, max_size=3)
    ),
    max_leaves=8,
)


def _strict(payload: Any) -> bytes | None:
    """The acceptance rule, by definition: the standard library's encoder refusing NaN
    and orjson (string keys, 64-bit integers) must both take the payload."""
    try:
        json.JSONEncoder(allow_nan=False, check_circular=False).encode(payload)
        return orjson.dumps(payload)
    except (TypeError, ValueError, RecursionError):
        return None


@settings(max_examples=400, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=4), odd_values, max_size=4))
def test_a_payload_is_accepted_exactly_when_both_json_encoders_take_it(
    payload: dict[str, Any],
) -> None:
    expected = _strict(payload)
    if expected is None:
        with pytest.raises(MessageValidationError):
            encode_payload("t", payload)
    else:
        assert encode_payload("t", payload) == expected


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
