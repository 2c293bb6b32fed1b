"""Export a saga's records for auditors: JSONL, every field of every record."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from eventstore import EventLog, Record
from orchestrator.errors import UnknownSagaError
from orchestrator.runtime.saga_log import stream_of

__all__ = ["export_lines", "export_saga", "record_json"]


def record_json(record: Record) -> dict[str, Any]:
    """Every field of a record, as the export writes it."""
    return dict(record._asdict())


def export_lines(records: Iterable[Record]) -> Iterable[str]:
    """JSONL: one record per line, every field, data and metadata as JSON objects."""
    for record in records:
        yield json.dumps(record_json(record), ensure_ascii=False, allow_nan=False)


async def export_saga(store: EventLog, saga_id: str) -> list[Record]:
    """The records of the saga's stream, for ``export_lines``."""
    records = await store.read_stream(stream_of(saga_id))
    if not records:
        raise UnknownSagaError(f"no saga {saga_id!r} in {store.url}")
    return records
