"""The record model: what is appended, what is read back, and append outcomes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

import orjson

from ._errors import CorruptRecordError

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
    """``sha256(prev_hash + canonical body)``: the stream's chain."""
    log_hash: str = ""
    """``sha256(prev log_hash + hash + position)``: the store-wide chain, in commit order
    (empty in a store of schema version 2 or older, which has none)."""


class StoredRecord(NamedTuple):
    """A record exactly as the database holds it: ``data`` and ``metadata`` are the stored
    text, and nothing is checked. What the verifier reads, so that nothing a forger
    stored can stop it from naming the record."""

    position: Any
    stream_id: Any
    version: Any
    kind: Any
    type: Any
    data: Any
    metadata: Any
    recorded_at: Any
    prev_hash: Any
    hash: Any
    log_hash: Any


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # integers beyond 64 bits: the standard library has them
        return json.loads(text)


def _object(text: Any, name: str, where: tuple[Any, Any, Any]) -> dict[str, Any]:
    try:
        value = _loads(text)
    except (ValueError, TypeError) as exc:
        raise CorruptRecordError(*where, f"{name} is not JSON: {exc}") from None
    if type(value) is not dict:
        raise CorruptRecordError(*where, f"{name} is a JSON {type(value).__name__}, not an object")
    return value


def records_from_rows(rows: Sequence[Sequence[Any]]) -> list[Record]:
    """Records from rows of the eleven columns in ``Record``'s order, data and metadata
    as JSON text. ``CorruptRecordError`` names a row whose data or metadata is not a JSON
    object (which the store never writes: only a hand in the database does)."""
    try:
        records = [
            Record(p, s, v, k, t, _loads(d), _loads(m), at, prev, h, log)
            for (p, s, v, k, t, d, m, at, prev, h, log) in rows
        ]
    except (ValueError, TypeError):
        records = []
    if len(records) == len(rows) and all(
        type(r.data) is dict and type(r.metadata) is dict for r in records
    ):
        return records
    for p, s, v, *_, d, m, _at, _prev, _h, _log in rows:  # name the first bad row
        _object(d, "data", (p, s, v))
        _object(m, "metadata", (p, s, v))
    raise AssertionError("unreachable: a row failed to decode above")  # pragma: no cover


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
