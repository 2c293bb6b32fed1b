"""Messages, their JSON wire form and their provenance hash.

A message travels as one JSON object (orjson). Nothing else is ever decoded: no pickle,
no eval. The payload must be a JSON object; NaN and Infinity are refused because they
have no JSON spelling (orjson would silently write ``null``).

Provenance: ``sha256(canonical_json({"headers": …, "payload": …}))`` where canonical JSON
has sorted keys and no insignificant whitespace. It is computed once at publish and
checked again on every delivery.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from brokers._errors import MessageTooLargeError, MessageValidationError

JSONObject = dict[str, Any]
"""A decoded JSON object: what a payload is."""

WIRE_VERSION = 1

_KNOWN_HEADERS = (
    "correlation_id",
    "causation_id",
    "reply_to",
    "saga_id",
    "traceparent",
    "tracestate",
)


_KNOWN_SET = frozenset(_KNOWN_HEADERS)


@dataclass(frozen=True, slots=True)
class Headers:
    """Routing and tracing metadata carried beside the payload (all optional strings)."""

    correlation_id: str | None = None
    """Ties a reply to its request, or every message of one conversation together."""
    causation_id: str | None = None
    """Id of the message that caused this one."""
    reply_to: str | None = None
    """Topic the receiver should publish its reply on."""
    saga_id: str | None = None
    """The saga this message belongs to (used to key partitions on Kafka)."""
    traceparent: str | None = None
    """W3C trace context ``traceparent``."""
    tracestate: str | None = None
    """W3C trace context ``tracestate``."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Any other string header, e.g. an idempotency key."""

    @property
    def partition_key(self) -> str | None:
        """What keys a message to a partition on Kafka: its saga id, else its
        correlation id."""
        return self.saga_id or self.correlation_id

    def to_dict(self) -> dict[str, str]:
        """The headers that are set, as one flat mapping (extras included)."""
        out = {k: v for k in _KNOWN_HEADERS if (v := getattr(self, k)) is not None}
        if self.extra:
            out.update(self.extra)
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Headers:
        """Build headers from a flat mapping; unknown keys go to ``extra``."""
        if values.keys() <= _KNOWN_SET and all(type(v) is str for v in values.values()):
            return cls(**values)  # the common case: only known headers, all strings
        known: dict[str, str | None] = {}
        extra: dict[str, str] = {}
        for key, value in values.items():
            if not isinstance(key, str):
                raise MessageValidationError(f"header key {key!r} is not a string")
            if value is None:
                continue
            if not isinstance(value, str):
                raise MessageValidationError(
                    f"header {key!r} must be a string, got {type(value).__name__}"
                )
            if key in _KNOWN_HEADERS:
                known[key] = value
            else:
                extra[key] = value
        return cls(**known, extra=extra)


EMPTY_HEADERS = Headers()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a consumed message came from; what ``acknowledge``/``nack`` need."""

    group: str
    """Consumer group the message was delivered to."""
    consumer: str
    """Member of the group that received it."""
    source: str
    """Broker-specific queue the entry sits in (e.g. the Redis stream key)."""
    entry_id: str
    """Broker-specific id of the entry (e.g. the Redis stream entry id)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message. Immutable; ``delivery`` is set on the copies ``consume`` yields."""

    id: str
    topic: str
    payload: JSONObject
    headers: Headers
    created_at: float
    """Unix time (seconds) of the first publish."""
    expires_at: float | None
    """Unix time after which the message is not delivered (dead-lettered as expired)."""
    retry_count: int
    """How many times the message was nacked and re-queued."""
    priority: int
    """Carried for the consumer's use; brokers deliver in publish order."""
    provenance_hash: str
    """SHA-256 of the canonical JSON of payload and headers."""
    delivery: Delivery | None = field(default=None, compare=False, repr=False)

    @property
    def correlation_id(self) -> str | None:
        return self.headers.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self.headers.reply_to

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def verify(self) -> bool:
        """Whether the provenance hash matches payload and headers."""
        return provenance_hash(self.payload, self.headers.to_dict()) == self.provenance_hash

    def to_wire(self) -> dict[str, Any]:
        return wire_dict(
            self.id,
            self.topic,
            self.payload,
            self.headers.to_dict(),
            self.created_at,
            self.expires_at,
            self.retry_count,
            self.priority,
            self.provenance_hash,
        )

    def encode(self) -> bytes:
        return orjson.dumps(self.to_wire())


def wire_dict(
    message_id: str,
    topic: str,
    payload: JSONObject | orjson.Fragment,
    headers: dict[str, str],
    created_at: float,
    expires_at: float | None,
    retry_count: int,
    priority: int,
    digest: str,
) -> dict[str, Any]:
    """A message's wire form, field by field (``payload`` may be its JSON already, as
    an ``orjson.Fragment``: the bytes written are the same)."""
    return {
        "v": WIRE_VERSION,
        "id": message_id,
        "topic": topic,
        "payload": payload,
        "headers": headers,
        "created_at": created_at,
        "expires_at": expires_at,
        "retry_count": retry_count,
        "priority": priority,
        "hash": digest,
    }


def check_json(value: Any, where: str) -> None:
    """Refuse anything that would not survive a JSON round trip unchanged."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is float:
        if not math.isfinite(value):
            raise MessageValidationError(f"{where} is {value!r}: NaN/Infinity is not JSON")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise MessageValidationError(f"{where} has a non-string key {key!r}")
            check_json(item, f"{where}.{key}")
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]")
    else:
        raise MessageValidationError(f"{where} is a {kind.__name__}, which is not JSON")


def canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # e.g. an integer over 64 bits
        raise MessageValidationError(f"not JSON-serialisable: {exc}") from exc


def provenance_hash(payload: JSONObject, headers: dict[str, str]) -> str:
    return hashlib.sha256(canonical_json({"headers": headers, "payload": payload})).hexdigest()


_STRICT_JSON = json.JSONEncoder(allow_nan=False, check_circular=False, separators=(",", ":"))

_NATIVE_ONLY = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def encode_payload(topic: str, payload: Any) -> bytes:
    """Check that ``payload`` is a JSON object that survives a round trip unchanged and
    return its JSON, as the wire form holds it; raises :class:`MessageValidationError`
    naming what is wrong.

    The common case costs one ``orjson`` write and read: a payload that reads back
    equal holds only JSON's own types (NaN reads back as ``null``, a tuple as a list, a
    UUID or an enum as its value, none of them equal to the original). Anything else
    takes the strict path, which accepts and refuses exactly the same payloads: the
    standard library's encoder with ``allow_nan=False`` and ``orjson`` (string keys,
    integers within 64 bits) must both take it.
    """
    if type(payload) is not dict:
        raise MessageValidationError(
            f"payload for topic {topic!r} must be a JSON object (dict), "
            f"got {type(payload).__name__}"
        )
    try:
        data = orjson.dumps(payload, option=_NATIVE_ONLY)
        if orjson.loads(data) == payload:
            return data
    except (TypeError, ValueError, RecursionError):
        pass
    try:  # one pass in C; the Python walk only to say exactly what is wrong
        _STRICT_JSON.encode(payload)
        return orjson.dumps(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        check_json(payload, "payload")
        canonical_json(payload)
        raise MessageValidationError(f"payload for topic {topic!r} is not JSON: {exc}") from exc


class Publication:
    """What the messages of one publish call share, checked once; :meth:`encode` makes
    each message's wire bytes from its payload."""

    __slots__ = ("_dict", "_limit", "created_at", "expires_at", "headers", "priority", "topic")

    def __init__(
        self,
        topic: str,
        headers: Headers,
        created_at: float,
        expires_at: float | None,
        priority: int,
        max_message_bytes: int,
    ) -> None:
        self.topic = topic
        self.headers = headers
        self.created_at = created_at
        self.expires_at = expires_at
        self.priority = priority
        self._dict = headers.to_dict()
        self._limit = max_message_bytes

    def encode(self, payload: Any, message_id: str) -> tuple[str, str, bytes]:
        """Validate ``payload`` and encode it as message ``message_id``: its id,
        provenance hash and wire bytes (those of :meth:`Message.encode`). Raises
        :class:`MessageValidationError` or :class:`MessageTooLargeError`."""
        body = encode_payload(self.topic, payload)
        digest = provenance_hash(payload, self._dict)
        wire = wire_dict(
            message_id,
            self.topic,
            orjson.Fragment(body),
            self._dict,
            self.created_at,
            self.expires_at,
            0,
            self.priority,
            digest,
        )
        data = orjson.dumps(wire)
        if len(data) > self._limit:
            raise MessageTooLargeError(self.topic, len(data), self._limit)
        return message_id, digest, data


def coerce_headers(headers: Headers | Mapping[str, Any] | None) -> Headers:
    if headers is None:
        return EMPTY_HEADERS
    if isinstance(headers, Headers):
        return headers
    return Headers.from_mapping(headers)


class MalformedMessage(ValueError):
    """Raised by :func:`decode_message`; the reason ends up in the dead-letter record."""


def message_from_wire(data: Any, topic: str, delivery: Delivery | None = None) -> Message:
    """Rebuild a message from its decoded wire dict, checking every field's type."""
    if type(data) is not dict:
        raise MalformedMessage(f"entry is a JSON {type(data).__name__}, not an object")
    try:
        msg_id = data["id"]
        payload = data["payload"]
        headers = data["headers"]
        created_at = data["created_at"]
        expires_at = data["expires_at"]
        retry_count = data["retry_count"]
        priority = data["priority"]
        digest = data["hash"]
    except KeyError as exc:
        raise MalformedMessage(f"entry lacks field {exc.args[0]!r}") from None
    if (
        type(msg_id) is not str
        or type(payload) is not dict
        or type(headers) is not dict
        or type(created_at) not in (int, float)
        or (expires_at is not None and type(expires_at) not in (int, float))
        or type(retry_count) is not int
        or type(priority) is not int
        or type(digest) is not str
    ):
        raise MalformedMessage("entry has a field of the wrong type")
    try:
        parsed_headers = Headers.from_mapping(headers) if headers else EMPTY_HEADERS
    except MessageValidationError as exc:
        raise MalformedMessage(str(exc)) from None
    return Message(
        id=msg_id,
        topic=topic,
        payload=payload,
        headers=parsed_headers,
        created_at=float(created_at),
        expires_at=None if expires_at is None else float(expires_at),
        retry_count=retry_count,
        priority=priority,
        provenance_hash=digest,
        delivery=delivery,
    )


def decode_message(raw: bytes | None, topic: str, delivery: Delivery | None = None) -> Message:
    """Decode one wire entry. Raises :class:`MalformedMessage` naming what is wrong."""
    if raw is None:
        raise MalformedMessage("entry has no message field")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"entry is not valid JSON: {exc}") from None
    return message_from_wire(data, topic, delivery)


@dataclass(frozen=True, slots=True)
class DeadLetterMessage:
    """A message that could not be processed, with why, when and by which group."""

    original_message: Message
    """The message as it was when it failed (``retry_count`` = retries done)."""
    failure_reason: str
    """Why it was dead-lettered: the nack reason, ``"expired"``, a malformed-entry or
    provenance diagnosis."""
    failed_at: float
    """Unix time it was dead-lettered."""
    consumer_group: str
    """The group that gave up on it; reprocessing re-delivers to this group only."""
    consumer: str | None = None
    """The member that gave up on it."""
    raw: str | None = None
    """For a malformed entry: its raw text (the original could not be decoded)."""
    dlq_id: str = ""
    """Id of this record in the dead-letter queue (set when read back)."""

    @property
    def reprocessable(self) -> bool:
        return self.raw is None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": WIRE_VERSION,
                "topic": self.original_message.topic,
                "original": None if self.raw is not None else self.original_message.to_wire(),
                "raw": self.raw,
                "reason": self.failure_reason,
                "failed_at": self.failed_at,
                "group": self.consumer_group,
                "consumer": self.consumer,
            }
        )

    @classmethod
    def decode(cls, raw: bytes, topic: str, dlq_id: str) -> DeadLetterMessage:
        data = orjson.loads(raw)
        original = data.get("original")
        raw_text = data.get("raw")
        if original is not None:
            message = message_from_wire(original, topic)
        else:
            message = Message(
                id=f"malformed:{dlq_id}",
                topic=topic,
                payload={},
                headers=EMPTY_HEADERS,
                created_at=float(data["failed_at"]),
                expires_at=None,
                retry_count=0,
                priority=0,
                provenance_hash="",
            )
        return cls(
            original_message=message,
            failure_reason=str(data["reason"]),
            failed_at=float(data["failed_at"]),
            consumer_group=str(data["group"]),
            consumer=data.get("consumer"),
            raw=raw_text,
            dlq_id=dlq_id,
        )
