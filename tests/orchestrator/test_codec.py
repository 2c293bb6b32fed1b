"""The record codec: stable names, plain JSON, exact round trip."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings

from orchestrator import (
    TYPE_NAMES,
    CodecError,
    SagaStarted,
    StepSucceeded,
    Storable,
    decode,
    encode,
)
from orchestrator.testing import messages


@settings(max_examples=300, deadline=None)
@given(messages())
def test_every_message_round_trips_through_plain_json(message: Storable) -> None:
    record = encode(message)
    assert record.kind in ("event", "command")
    text = json.dumps(record.data, allow_nan=False)  # raises on NaN / non-JSON
    assert decode(record.kind, record.type, json.loads(text)) == message


def test_type_names_are_stable_strings_not_python_paths() -> None:
    names = [name for _, name in TYPE_NAMES.values()]
    assert len(set(names)) == len(names)
    for cls, (kind, name) in TYPE_NAMES.items():
        assert name.startswith("saga.") and ":" not in name and cls.__module__ not in name
        assert kind in ("event", "command")
    # These names are in stored logs: renaming one breaks replay of old sagas.
    assert TYPE_NAMES[StepSucceeded] == ("event", "saga.step_succeeded")
    assert TYPE_NAMES[SagaStarted] == ("event", "saga.started")


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
    good = encode(StepSucceeded("s", "a", 1, {"k": 1}, 2.0))
    with pytest.raises(CodecError, match="unknown record type"):
        decode("event", "orchestrator.core.events:StepSucceeded", good.data)
    with pytest.raises(CodecError, match=r"stored as .event., not .command."):
        decode("command", good.type, good.data)
    with pytest.raises(CodecError, match="missing"):
        decode("event", good.type, {k: v for k, v in good.data.items() if k != "attempt"})
    with pytest.raises(CodecError, match="unknown fields"):
        decode("event", good.type, {**good.data, "extra": 1})
    with pytest.raises(CodecError, match="attempt"):
        decode("event", good.type, {**good.data, "attempt": "1"})
    with pytest.raises(CodecError, match="attempt"):
        decode("event", good.type, {**good.data, "attempt": True})


def test_integer_times_decode_as_floats() -> None:
    record = encode(StepSucceeded("s", "a", 1, {}, 3.0))
    decoded = decode(record.kind, record.type, {**record.data, "now": 3})
    assert isinstance(decoded, StepSucceeded) and isinstance(decoded.now, float)
