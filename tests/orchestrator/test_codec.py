"""The record codec: stable names, plain JSON, exact round trip."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings

from orchestrator import CodecError, SagaMessage, SagaStarted, StartSaga, StepSucceeded
from orchestrator.core.codec import decode, encode
from orchestrator.core.messages import Event, message_types, stored_as
from orchestrator.testing import messages


@settings(max_examples=300, deadline=None)
@given(messages())
def test_every_message_round_trips_through_plain_json(message: SagaMessage) -> None:
    cls = type(message)
    data = encode(message)
    assert cls.kind in ("event", "command")
    text = json.dumps(data, allow_nan=False)  # raises on NaN / non-JSON
    assert decode(cls.kind, cls.type_name, json.loads(text)) == message


def test_type_names_are_stable_strings_not_python_paths() -> None:
    registry = message_types()
    assert len(registry) == 16
    for name, cls in registry.items():
        assert cls.type_name == name
        assert name.startswith("saga.") and ":" not in name and cls.__module__ not in name
        assert cls.kind in ("event", "command")
    # These names are in stored logs: renaming one breaks replay of old sagas.
    assert (StepSucceeded.kind, StepSucceeded.type_name) == ("event", "saga.step_succeeded")
    assert (SagaStarted.kind, SagaStarted.type_name) == ("event", "saga.started")
    assert (StartSaga.kind, StartSaga.type_name) == ("command", "saga.start")


def test_a_type_name_is_registered_once() -> None:
    with pytest.raises(TypeError, match="taken by StepSucceeded"):

        @stored_as("saga.step_succeeded")
        class Impostor(Event):
            __slots__ = ()


def test_only_registered_messages_encode() -> None:
    class Unregistered(Event):
        __slots__ = ()

    with pytest.raises(CodecError, match="not a saga message: Unregistered"):
        encode(Unregistered())


@pytest.mark.parametrize(
    "bad",
    [
        {"x": math.nan},
        {"x": [math.inf]},
        {"x": (1, 2)},
        {1: "non-string key"},
        {"x": object()},
        {"x": {"y": {1, 2}}},
    ],
)
def test_non_json_data_is_refused(bad: dict[Any, Any]) -> None:
    with pytest.raises(CodecError):
        encode(StepSucceeded("s", "a", 1, bad, 0.0))


def test_nan_time_is_refused() -> None:
    with pytest.raises(CodecError, match="now"):
        encode(StepSucceeded("s", "a", 1, {}, math.nan))


def test_decode_refuses_unknown_types_wrong_kinds_and_bad_fields() -> None:
    data = encode(StepSucceeded("s", "a", 1, {"k": 1}, 2.0))
    name = StepSucceeded.type_name
    with pytest.raises(CodecError, match="unknown record type"):
        decode("event", "orchestrator.core.events:StepSucceeded", data)
    with pytest.raises(CodecError, match=r"stored as .event., not .command."):
        decode("command", name, data)
    with pytest.raises(CodecError, match="missing"):
        decode("event", name, {k: v for k, v in data.items() if k != "attempt"})
    with pytest.raises(CodecError, match="unknown fields"):
        decode("event", name, {**data, "extra": 1})
    with pytest.raises(CodecError, match="attempt"):
        decode("event", name, {**data, "attempt": "1"})
    with pytest.raises(CodecError, match="attempt"):
        decode("event", name, {**data, "attempt": True})


def test_integer_times_decode_as_floats() -> None:
    data = encode(StepSucceeded("s", "a", 1, {}, 3.0))
    decoded = decode("event", StepSucceeded.type_name, {**data, "now": 3})
    assert isinstance(decoded, StepSucceeded) and isinstance(decoded.now, float)
