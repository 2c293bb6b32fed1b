"""The record model: what is appended, what is read back, and append outcomes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

import orjson

RecordKind = Literal["command", "event"]
RECORD_KINDS: Final = frozenset({"command", "event"})

ANY: Final = "any"
"""Expected version: append whatever the stream's current version is."""

NO_STREAM: Final = "no_stream"
"""Expected version: the stream must not exist yet (same as the exact version 0)."""

ExpectedVersion = int | Literal["any", "no_stream"]


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append. The store assigns position, version, time and hashes."""

    kind: RecordKind
    """``"command"`` (an intention) or ``"event"`` (a fact)."""
    type: str
    """A stable type name, such as ``"saga.step_succeeded"``."""
    data: Mapping[str, Any]
    """A JSON object: the record's content."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """A JSON object: correlation_id, causation_id, actor, trace context."""


class Record(NamedTuple):
    """A stored, immutable record of a stream (a named tuple: cheap to build in bulk)."""

    position: int
    """Global position: strictly increasing in commit order across all streams."""
    stream_id: str
    version: int
    """Position in its stream: 1, 2, 3 …"""
    kind: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    """UTC time of the append, RFC 3339 with microseconds (``2026-12-01T09:00:00.000000Z``)."""
    prev_hash: str
    hash: str


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # integers beyond 64 bits: the standard library has them
        return json.loads(text)


def records_from_rows(rows: Sequence[Sequence[Any]]) -> list[Record]:
    """Records from rows of the ten columns in ``Record``'s order, data and metadata as
    JSON text."""
    return [
        Record(p, s, v, k, t, _loads(d), _loads(m), at, prev, h)
        for (p, s, v, k, t, d, m, at, prev, h) in rows
    ]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote."""

    stream_id: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int
    last_hash: str


class StreamInfo(NamedTuple):
    """A stream's head: its id, its version, and the type of its last record."""

    stream_id: str
    version: int
    last_type: str
