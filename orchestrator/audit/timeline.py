"""A saga's stream as an auditor reads it: one entry per record, with what caused it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eventstore import Record

__all__ = ["SHORT_HASH", "TimelineEntry", "timeline"]

SHORT_HASH = 8
"""Hex digits of a hash shown in a timeline."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One record of a saga's stream, as an auditor reads it."""

    version: int
    position: int
    recorded_at: str
    kind: str
    type: str
    step: str | None
    attempt: int | None
    hash: str
    causation: str | None
    """Events: the ``causation_id`` of their metadata (the command a reply answers, the
    timer that fired). Commands: ``v<N>``, the event record they were decided on."""

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "position": self.position,
            "recorded_at": self.recorded_at,
            "kind": self.kind,
            "type": self.type,
            "step": self.step,
            "attempt": self.attempt,
            "hash": self.hash,
            "causation": self.causation,
        }


def timeline(records: Iterable[Record]) -> list[TimelineEntry]:
    """Every record of a stream, in version order, with what caused it."""
    out: list[TimelineEntry] = []
    last_event: int | None = None
    for record in records:
        causation: object = None
        if record.kind == "event":
            causation, last_event = record.metadata.get("causation_id"), record.version
        elif last_event is not None:
            causation = f"v{last_event}"
        step, attempt = record.data.get("step"), record.data.get("attempt")
        out.append(
            TimelineEntry(
                version=record.version,
                position=record.position,
                recorded_at=record.recorded_at,
                kind=record.kind,
                type=record.type,
                step=step if isinstance(step, str) else None,
                attempt=attempt if isinstance(attempt, int) else None,
                hash=record.hash,
                causation=None if causation is None else str(causation),
            )
        )
    return out
