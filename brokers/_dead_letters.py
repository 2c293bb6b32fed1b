"""Dead letters: which delivered entries ``consume`` must not hand out, the record a
dead-lettered message leaves, the message a reprocessed record becomes, and the record
a discarded one leaves in the topic's discard archive.

Pure functions over messages; :class:`~brokers._base.Broker` does the storage I/O, so
every broker dead-letters for the same reasons and writes the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from brokers._errors import DeadLetterError
from brokers._message import (
    DeadLetterMessage,
    Delivery,
    Headers,
    MalformedMessage,
    Message,
    decode_message,
)

RAW_KEPT_BYTES = 4096
"""How much of a malformed entry its dead letter keeps, as text."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message on its way to the dead-letter queue, and why."""

    message: Message
    """The message, or a placeholder for an entry that did not decode."""
    reason: str
    raw: str | None = None
    """The text of an entry that did not decode (such a record is not reprocessable)."""


def check_entry(
    topic: str, delivery: Delivery, raw: bytes | None, now: float
) -> Message | Rejection:
    """The message of a delivered entry, or why it goes to the dead-letter queue
    instead: it does not decode, its provenance hash no longer matches, or it expired."""
    try:
        message = decode_message(raw, topic, delivery)
    except MalformedMessage as exc:
        text = None if raw is None else raw[:RAW_KEPT_BYTES].decode("utf-8", "replace")
        return Rejection(_placeholder(topic), f"malformed: {exc}", raw=text or "")
    if not message.verify():
        return Rejection(message, "provenance hash mismatch: payload or headers altered")
    if message.is_expired(now):
        return Rejection(message, "expired")
    return message


def dead_letter_record(
    rejection: Rejection, delivery: Delivery, failed_at: float
) -> DeadLetterMessage:
    """The dead-letter queue's record of ``rejection``, given up on by ``delivery``'s
    group and consumer."""
    return DeadLetterMessage(
        original_message=replace(rejection.message, delivery=None),
        failure_reason=rejection.reason,
        failed_at=failed_at,
        consumer_group=delivery.group,
        consumer=delivery.consumer,
        raw=rejection.raw,
    )


def reprocessed(dlq_message: DeadLetterMessage, now: float) -> Message:
    """The message that reprocessing ``dlq_message`` delivers again: its retry count
    reset and a TTL window as long as the original's, starting ``now``."""
    if not dlq_message.reprocessable:
        raise DeadLetterError(
            f"dead letter {dlq_message.dlq_id} on {dlq_message.original_message.topic!r} "
            "is a malformed entry and cannot be reprocessed"
        )
    if not dlq_message.dlq_id:
        raise DeadLetterError("dead letter has no dlq_id: read it with get_dead_letter_messages")
    original = dlq_message.original_message
    expires_at = original.expires_at
    if expires_at is not None:
        expires_at = now + max(expires_at - original.created_at, 0.0)
    return replace(original, retry_count=0, expires_at=expires_at, delivery=None)


@dataclass(frozen=True, slots=True)
class DiscardedDeadLetter:
    """A dead letter someone discarded: the dead letter as it was, and who discarded it,
    when and why. Discarding moves the record to the topic's discard archive (kept as
    long as dead letters are, ``dlq_ttl_days``), so nothing is dropped unrecorded."""

    dead_letter: DeadLetterMessage
    """The dead letter, with the ``dlq_id`` it had in the dead-letter queue."""
    discarded_at: float
    """Unix time it was discarded."""
    discarded_by: str
    """Who discarded it (for the command line: the user and host)."""
    reason: str
    """Why, in the words of whoever discarded it."""


def discard_record(dlq_message: DeadLetterMessage, *, reason: str, by: str, at: float) -> bytes:
    """The discard archive's record of ``dlq_message``: its dead-letter record plus who
    discarded it, when, why, and the id it had in the dead-letter queue."""
    if not dlq_message.dlq_id:
        raise DeadLetterError("dead letter has no dlq_id: read it with get_dead_letter_messages")
    record: dict[str, Any] = orjson.loads(dlq_message.encode())
    record["discarded"] = {"at": at, "by": by, "reason": reason, "dlq_id": dlq_message.dlq_id}
    return orjson.dumps(record)


def decode_discarded(data: bytes, topic: str) -> DiscardedDeadLetter:
    """A record of the discard archive, as written by :func:`discard_record`."""
    discarded = orjson.loads(data)["discarded"]
    return DiscardedDeadLetter(
        dead_letter=DeadLetterMessage.decode(data, topic, str(discarded["dlq_id"])),
        discarded_at=float(discarded["at"]),
        discarded_by=str(discarded["by"]),
        reason=str(discarded["reason"]),
    )


def record_topic(data: bytes | None) -> str | None:
    """The topic a dead-letter record belongs to, or ``None`` when ``data`` is not a
    dead-letter record (e.g. a message of a topic whose own name ends like a DLQ's).
    Records written before the top-level ``topic`` field name it in their original."""
    try:
        record = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not {"reason", "group", "failed_at"} <= record.keys():
        return None
    topic = record.get("topic")
    if isinstance(topic, str):
        return topic
    original = record.get("original")
    if isinstance(original, dict) and isinstance(original.get("topic"), str):
        return str(original["topic"])
    return ""


def _placeholder(topic: str) -> Message:
    return Message(
        id="malformed",
        topic=topic,
        payload={},
        headers=Headers(),
        created_at=0.0,
        expires_at=None,
        retry_count=0,
        priority=0,
        provenance_hash="",
    )
