"""Where :class:`~brokers._redis.RedisStreamsBroker` keeps things in Redis, and how it
reads them back.

Keys, for topic ``t`` and group ``g``:

* ``t`` — the stream (XADD … MAXLEN ~ max_stream_length), read with XREADGROUP;
* ``t:retry:g`` — the group's own stream of due retries and reprocessed dead letters,
  so one group's retry never reaches another group;
* ``t:delayed:g`` — a sorted set of retries scored by due time; :data:`PROMOTE` moves
  the due ones into ``t:retry:g`` in the same round trip as the read;
* ``t:dlq`` — the dead-letter stream (XADD … MINID ~ now - dlq_ttl).

A stream entry has one field, :data:`FIELD`, holding the encoded message. Replies are
read the same way over RESP2 and RESP3.
"""

from __future__ import annotations

from typing import Any

FIELD = b"m"

PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', member)
  redis.call('ZREM', KEYS[1], member)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, head[2] or false}
"""
"""Lua: move up to ARGV[2] retries due by ARGV[1] from KEYS[1] (delayed) to KEYS[2]
(retry stream, MAXLEN ~ ARGV[3]); returns how many, and the next due time or false."""


def retry_key(topic: str, group: str) -> str:
    return f"{topic}:retry:{group}"


def delayed_key(topic: str, group: str) -> str:
    return f"{topic}:delayed:{group}"


def dlq_key(topic: str) -> str:
    return f"{topic}:dlq"


def text(value: Any) -> str:
    """A reply's id or name as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_data(fields: Any) -> bytes | None:
    """The encoded message in a stream entry's fields (``None`` if there is none)."""
    if not isinstance(fields, dict):
        return None
    value = fields.get(FIELD)
    return value if isinstance(value, bytes) else None


def stream_items(reply: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    """``(stream key, [(entry id, fields), …])`` per stream of an XREADGROUP reply."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return [
            (key, value[0] if value and isinstance(value[0], list) else value)
            for key, value in reply.items()
        ]
    return [(key, entries) for key, entries in reply]
