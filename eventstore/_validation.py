"""Checks and serialises an append's input before anything reaches the database.

Everything that can be wrong with an append's input is found here, in the caller's
task, so a bad append is refused whole and never half-written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import orjson

from ._canonical import canonical_json
from ._checkpoints import CHECKPOINT_STREAM
from ._errors import InvalidRecordError
from ._records import ANY, NO_STREAM, RECORD_KINDS, ExpectedVersion, NewRecord

_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one append may carry."""

    max_stream_id_length: int = 200
    """Longest stream id, in characters."""
    max_type_length: int = 200
    """Longest record type name, in characters."""
    max_record_bytes: int = 1_048_576
    """Largest record: UTF-8 bytes of its canonical data plus metadata."""
    max_records_per_append: int = 10_000
    """Most records in one append call."""


class PreparedRecord(NamedTuple):
    """A validated record, serialised to the canonical JSON parts of its hash body."""

    kind: str
    type: str
    data_json: str
    metadata_json: str
    kind_json: str
    type_json: str


def check_stream_id(stream_id: object, limits: Limits) -> str:
    if not isinstance(stream_id, str):
        raise InvalidRecordError(f"stream id must be a string, got {type(stream_id).__name__}")
    if not stream_id.strip():
        raise InvalidRecordError("stream id must not be empty")
    if len(stream_id) > limits.max_stream_id_length:
        raise InvalidRecordError(
            f"stream id {stream_id[:40]!r}… is {len(stream_id)} characters long; "
            f"the limit is {limits.max_stream_id_length}"
        )
    if _CONTROL.search(stream_id):
        raise InvalidRecordError(f"stream id {stream_id!r} contains a control character")
    if stream_id == CHECKPOINT_STREAM:
        raise InvalidRecordError(
            f"stream {stream_id!r} is the store's own: only the writer appends signed "
            "checkpoints to it"
        )
    return stream_id


def check_expected_version(expected: object) -> ExpectedVersion:
    if expected in (ANY, NO_STREAM):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidRecordError(
            f"expected_version must be 'any', 'no_stream' or a version >= 0, got {expected!r}"
        )
    return expected


@lru_cache(maxsize=4096)
def _json_string(value: str) -> str:
    return canonical_json(value)


def _json_object(value: object, what: str) -> str:
    if type(value) is not dict:
        if not isinstance(value, Mapping):
            raise InvalidRecordError(
                f"{what} must be a JSON object (a mapping), got {type(value).__name__}"
            )
        value = dict(value)
    if not value:
        return "{}"
    try:
        # orjson is the reader's parser: what it cannot represent exactly (integers past
        # 64 bits, non-string keys) is refused here rather than silently changed on read.
        orjson.dumps(value)
    except TypeError as exc:
        raise InvalidRecordError(f"{what} is not portable JSON: {exc}") from exc
    try:
        return canonical_json(value)
    except ValueError as exc:  # NaN / Infinity, circular references
        raise InvalidRecordError(f"{what} is not valid JSON: {exc}") from exc
    except TypeError as exc:
        raise InvalidRecordError(f"{what} is not JSON-serialisable: {exc}") from exc


def prepare_records(
    stream_id: str, records: Sequence[NewRecord], limits: Limits
) -> list[PreparedRecord]:
    """Validate and serialise ``records`` for ``stream_id``, or raise InvalidRecordError."""
    if isinstance(records, NewRecord) or not isinstance(records, Sequence):
        raise InvalidRecordError("records must be a sequence of NewRecord")
    if not records:
        raise InvalidRecordError(f"append to {stream_id!r} has no records")
    if len(records) > limits.max_records_per_append:
        raise InvalidRecordError(
            f"append to {stream_id!r} has {len(records)} records; "
            f"the limit is {limits.max_records_per_append}"
        )
    prepared: list[PreparedRecord] = []
    for index, record in enumerate(records):
        where = f"record {index} of the append to {stream_id!r}"
        if not isinstance(record, NewRecord):
            raise InvalidRecordError(f"{where} is a {type(record).__name__}, not a NewRecord")
        if record.kind not in RECORD_KINDS:
            raise InvalidRecordError(
                f"{where}: kind must be 'command' or 'event', got {record.kind!r}"
            )
        if not isinstance(record.type, str) or not record.type.strip():
            raise InvalidRecordError(f"{where}: type must be a non-empty string")
        if len(record.type) > limits.max_type_length:
            raise InvalidRecordError(
                f"{where}: type is {len(record.type)} characters long; "
                f"the limit is {limits.max_type_length}"
            )
        data_json = _json_object(record.data, f"{where}: data")
        metadata_json = _json_object(record.metadata, f"{where}: metadata")
        size = len(data_json) + len(metadata_json)
        if size * 4 > limits.max_record_bytes:  # UTF-8 takes at most 4 bytes a character
            size = len(data_json.encode("utf-8")) + len(metadata_json.encode("utf-8"))
        if size > limits.max_record_bytes:
            raise InvalidRecordError(
                f"{where} is {size} bytes (data + metadata); "
                f"the limit is {limits.max_record_bytes} bytes"
            )
        prepared.append(
            PreparedRecord(
                kind=record.kind,
                type=record.type,
                data_json=data_json,
                metadata_json=metadata_json,
                kind_json=_json_string(record.kind),
                type_json=_json_string(record.type),
            )
        )
    return prepared
