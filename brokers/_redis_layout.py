"""Where :class:`~brokers._redis.RedisStreamsBroker` keeps things in Redis, and how it
reads them back.

Keys, for topic ``t`` and group ``g``:

* ``t`` — the stream (XADD … MAXLEN ~ max_stream_length), read with XREADGROUP;
* ``t:priority:<n>`` — priority lane ``n`` (1 … priority_levels - 1) of the topic, a
  stream like ``t`` (which is lane 0), made by the first message of that priority;
  :data:`FETCH` reads the lanes highest first;
* ``t:retry:g`` — the group's own stream of due retries and reprocessed dead letters,
  so one group's retry never reaches another group;
* ``t:delayed:g`` — a sorted set of retries scored by due time; :data:`PROMOTE` moves
  the due ones into ``t:retry:g`` in the same round trip as the read;
* ``t:dlq`` — the dead-letter stream (XADD … MINID ~ now - dlq_ttl);
* ``t:dlq:discarded`` — the discard archive: dead letters someone discarded, with who,
  when and why (:data:`DISCARD` moves them; MINID ~ now - dlq_ttl as well);
* ``t:lease:g:<p>`` — the lease of virtual partition ``p`` (0 … membership_partitions-1)
  for group ``g``: a string holding its member's id, ``SET … NX PX membership_ttl``;
* ``t:members:g`` — a sorted set of the group's members that take part in membership,
  scored by when they were last seen (server time, ms), expiring with them.

Lease and member keys exist only while a consume loop with ``on_assigned`` runs; the
scripts :data:`REFRESH`, :data:`ACQUIRE` and :data:`RELEASE` read the time from the
server (``TIME``, ``PX``), never from this process.

A stream entry has one field, :data:`FIELD`, holding the encoded message. Replies are
read the same way over RESP2 and RESP3.
"""

from __future__ import annotations

import re
from typing import Any

FIELD = b"m"

FETCH = """
local group, consumer, left = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lanes, out = {}, {}
local function read(key)
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left,
    'STREAMS', key, '>')
  if reply then
    left = left - #reply[1][2]
    out[#out + 1] = reply[1]
  end
end
for i = 1, #KEYS do
  local key = KEYS[i]
  if i == 1 or i == #KEYS then
    if left > 0 then read(key) end
  elseif left > 0 and redis.call('EXISTS', key) == 1 then
    if not pcall(read, key) then
      redis.call('XGROUP', 'CREATE', key, group, '0')
      read(key)
    end
    lanes[#lanes + 1] = key
  end
end
return {lanes, out}
"""
"""Lua: read up to ARGV[3] new entries for consumer ARGV[2] of group ARGV[1] from KEYS
in order (the group's retry stream, the priority lanes highest first, the topic's
stream), each only for what is left of the count. A lane that exists gets the group
(from 0) on its first read. Returns the lanes it read (so the group has them) and
``[key, entries]`` per stream that had entries, as XREADGROUP does."""

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

TOUCH = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] and p[1][2] == ARGV[2] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
"""
"""Lua: reset the idle time of entry ARGV[3] of stream KEYS[1] in group ARGV[1], if
consumer ARGV[2] still holds it (XCLAIM with min-idle 0 by the same consumer; JUSTID
does not count a delivery). An entry another consumer has claimed stays with it."""


REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local kept = {}
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    kept[#kept + 1] = i - 1
  end
end
return {redis.call('ZCARD', KEYS[1]), kept}
"""
"""Lua: record member ARGV[1] alive in KEYS[1] (members), forget those not seen for
ARGV[2] ms, and renew for ARGV[2] ms the leases KEYS[2…] it still holds; returns the
live member count and the (1-based) positions of the renewed leases among KEYS[2…]."""

ACQUIRE = """
local got = {}
local want = tonumber(ARGV[3])
for i = 1, #KEYS do
  if #got >= want then break end
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    got[#got + 1] = i
  elseif redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    got[#got + 1] = i
  end
end
return got
"""
"""Lua: lease to ARGV[1] for ARGV[2] ms up to ARGV[3] of the lease keys KEYS, in order,
that are free or already its own; returns their (1-based) positions."""

RELEASE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
  end
end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""
"""Lua: delete the lease keys KEYS[2…] that ARGV[1] holds; if ARGV[2] is '1', remove it
from the members KEYS[1] too."""

DISCARD = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'm', ARGV[2])
return 1
"""
"""Lua: move dead letter ARGV[1] of KEYS[1] (the DLQ) to KEYS[2] (the discard archive)
as record ARGV[2], trimming the archive to MINID ~ ARGV[3]; returns 0 (nothing written)
when the DLQ has no such entry."""

SWEEP = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  return 0
end
local removed = 0
for _, info in ipairs(consumers) do
  local fields = {}
  for i = 1, #info, 2 do
    fields[info[i]] = info[i + 1]
  end
  if fields['name'] ~= ARGV[2] and fields['pending'] == 0
      and fields['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
"""
"""Lua: remove from group ARGV[1] of stream KEYS[1] every consumer but ARGV[2] idle
longer than ARGV[3] ms with nothing pending; returns how many went. One script, so no
consumer can take an entry between the check and ``XGROUP DELCONSUMER`` (which would
drop that entry from the pending list); no such stream or group removes nothing."""

DLQ_PATTERN = "*:dlq"
"""SCAN pattern of the dead-letter streams (a candidate is checked to hold dead-letter
records: a topic may itself be named ``…:dlq``)."""

_ENTRY_ID = re.compile(r"\d+-\d+")


def is_entry_id(value: str) -> bool:
    """Whether ``value`` is a full stream entry id (``<ms>-<seq>``)."""
    return _ENTRY_ID.fullmatch(value) is not None


def lane_key(topic: str, lane: int) -> str:
    """The stream of priority lane ``lane`` of ``topic`` (lane 0 is the topic's own)."""
    return topic if lane == 0 else f"{topic}:priority:{lane}"


def retry_key(topic: str, group: str) -> str:
    return f"{topic}:retry:{group}"


def delayed_key(topic: str, group: str) -> str:
    return f"{topic}:delayed:{group}"


def dlq_key(topic: str) -> str:
    return f"{topic}:dlq"


def discarded_key(topic: str) -> str:
    return f"{topic}:dlq:discarded"


def lease_key(topic: str, group: str, partition: int) -> str:
    return f"{topic}:lease:{group}:{partition}"


def members_key(topic: str, group: str) -> str:
    return f"{topic}:members:{group}"


def text(value: Any) -> str:
    """A reply's id or name as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_data(fields: Any) -> bytes | None:
    """The encoded message in a stream entry's fields (``None`` if there is none)."""
    if not isinstance(fields, dict):
        return None
    value = fields.get(FIELD)
    return value if isinstance(value, bytes) else None


def script_entries(reply: Any) -> list[tuple[Any, list[tuple[Any, bytes | None]]]]:
    """``(stream key, [(entry id, encoded message), …])`` per stream of a script's
    XREADGROUP replies (entry fields come as a flat list there)."""
    out = []
    for key, entries in reply or ():
        rows = []
        for entry_id, fields in entries:
            pairs = fields or ()
            data = next(
                (pairs[i + 1] for i in range(0, len(pairs) - 1, 2) if pairs[i] == FIELD), None
            )
            rows.append((entry_id, data if isinstance(data, bytes) else None))
        out.append((key, rows))
    return out


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
