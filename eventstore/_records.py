"""The record model: what is appended, what is read back, and append outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

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
