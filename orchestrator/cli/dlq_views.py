"""What ``orchestrator dlq`` prints: dead letters and failed sagas as tables and JSON."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from brokers import DeadLetterMessage, DiscardedDeadLetter
from orchestrator.cli.app import console
from orchestrator.cli.render import when
from orchestrator.core.state import SagaState

__all__ = [
    "age",
    "discarded_json",
    "letter_json",
    "letters_table",
    "print_archive",
    "print_sagas",
    "provenance",
    "say",
]


def age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def provenance(dead: DeadLetterMessage) -> dict[str, Any]:
    """The provenance check of a dead letter: its recorded SHA-256 of payload and
    headers against one computed now (none for a malformed entry)."""
    message = dead.original_message
    if not dead.reprocessable:
        return {"hash": None, "verified": None, "note": "malformed entry: nothing to check"}
    ok = message.verify()
    note = "matches payload and headers" if ok else "does NOT match payload and headers"
    return {"hash": message.provenance_hash, "verified": ok, "note": note}


def letter_json(dead: DeadLetterMessage, now: float) -> dict[str, Any]:
    message = dead.original_message
    return {
        "id": dead.dlq_id,
        "topic": message.topic,
        "message_id": None if dead.raw is not None else message.id,
        "group": dead.consumer_group,
        "consumer": dead.consumer,
        "reason": dead.failure_reason,
        "retries": message.retry_count,
        "failed_at": dead.failed_at,
        "age_seconds": round(now - dead.failed_at, 3),
        "reprocessable": dead.reprocessable,
    }


def letters_table(letters: list[DeadLetterMessage], now: float, title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "topic", "group", "reason", "retries", "age"):
        table.add_column(column, overflow="fold")
    for dead in letters:
        table.add_row(
            dead.dlq_id,
            dead.original_message.topic,
            dead.consumer_group,
            escape(dead.failure_reason),
            str(dead.original_message.retry_count),
            age(now - dead.failed_at),
        )
    return table


def print_sagas(sagas: list[SagaState], resume: dict[str, str]) -> None:
    """The failed sagas, then the command that resumes each, one a line (whole, to copy)."""
    table = Table(title="failed sagas waiting for a person")
    for column in ("saga", "workflow", "why"):
        table.add_column(column, overflow="fold")
    for state in sagas:
        table.add_row(state.saga_id, state.workflow, escape(state.failure_summary or ""))
    console.print(table)
    console.print("resume each, once its cause is fixed, with:", highlight=False)
    for state in sagas:
        say(f"  {resume[state.saga_id]}")


def say(text: str) -> None:
    """One line of plain text (no markup, never wrapped)."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def discarded_json(item: DiscardedDeadLetter, now: float) -> dict[str, Any]:
    return {
        **letter_json(item.dead_letter, now),
        "discarded_at": item.discarded_at,
        "discarded_by": item.discarded_by,
        "discard_reason": item.reason,
    }


def print_archive(topic: str, archive: list[DiscardedDeadLetter], now: float) -> None:
    if not archive:
        console.print(f"no discarded dead letters on {topic}", highlight=False)
        return
    table = Table(title=f"discarded dead letters of {topic}")
    for column in ("id", "reason", "discarded (UTC)", "by", "why"):
        table.add_column(column, overflow="fold")
    for item in archive:
        table.add_row(
            item.dead_letter.dlq_id,
            escape(item.dead_letter.failure_reason),
            when(item.discarded_at),
            escape(item.discarded_by),
            escape(item.reason),
        )
    console.print(table)
