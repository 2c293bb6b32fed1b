"""Redis Streams broker (redis-py asyncio + hiredis).

Each topic is a stream read by consumer groups; each group has its own retry stream and
delayed-retry sorted set, each topic a dead-letter stream (keys and entry format:
:mod:`brokers._redis_layout`); consume loops with ``on_assigned`` hold partition
leases there (:mod:`brokers._redis_leases`). A delivered entry stays in the group's
pending list until XACK; after the visibility timeout XAUTOCLAIM hands it to whichever
member asks next.
Every call goes through the circuit breaker; driver errors are mapped to
:mod:`brokers._errors` at this boundary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from brokers import _redis_layout as layout
from brokers._base import Broker
from brokers._circuit import CircuitBreaker
from brokers._coalesce import Coalescer
from brokers._dead_letters import record_topic
from brokers._errors import BrokerConnectionError, BrokerError
from brokers._leases import LeaseTable
from brokers._message import Delivery
from brokers._redis_leases import RedisLeases

T = TypeVar("T")


class _NoGroupError(BrokerError):
    """The stream or group vanished (a server restarted without persistence)."""


class _Cursor:
    """What one (topic, group) pair knows locally about when to promote and reclaim."""

    __slots__ = ("lanes", "next_claim", "next_promote", "next_sweep")

    def __init__(self) -> None:
        self.lanes: list[str] = []
        """The topic's priority lane streams this group reads, highest first."""
        self.next_promote = 0.0
        self.next_claim = 0.0
        self.next_sweep = 0.0


class RedisStreamsBroker(Broker):
    """Broker on Redis Streams. ``redis_url=`` or host/port/password/db/ssl; the other
    options are :class:`Broker`'s (``max_retries``, ``retry``, ``consumer_options``,
    ``circuit``, ``max_message_bytes`` (1 MiB), ``message_ttl_days``, ``dlq_ttl_days``,
    ``max_stream_length``)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        host: str = "localhost",
        port: int = 6379,
        password: str | None = None,
        db: int = 0,
        ssl: bool = False,
        max_connections: int = 50,
        socket_connect_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._url = redis_url
        self._where = _redacted(redis_url) or f"{'rediss' if ssl else 'redis'}://{host}:{port}/{db}"
        self._conn_kwargs: dict[str, Any] = {
            "max_connections": max_connections,
            # redis-py 8's own read timeout can swallow a task's cancellation (a
            # cancelled consumer then hangs); _io applies our timeout instead.
            "socket_timeout": None,
            "socket_connect_timeout": socket_connect_timeout,
            # One immediate retry re-dials a pooled connection the server dropped;
            # anything longer is the circuit breaker's and the consumer loop's job.
            "retry": Retry(NoBackoff(), 1),
        }
        if redis_url is None:
            self._conn_kwargs.update(host=host, port=port, password=password, db=db)
            if ssl:
                self._conn_kwargs["connection_class"] = aioredis.SSLConnection
        # A blocking XREADGROUP waits up to block_time; anything longer is a dead server.
        self._op_timeout = self.consumer_options.block_time + 10.0
        self._client: aioredis.Redis | None = None
        self._fetch_script: Any = None
        self._circuit = CircuitBreaker(f"redis {self._where}", self.circuit_policy)
        self._trimmed_at: dict[str, float] = {}
        """Topic → when its stream was last trimmed by age (this process's clock)."""
        self._groups: set[tuple[str, str]] = set()
        self._cursors: dict[tuple[str, str], _Cursor] = {}
        self._appends: Coalescer[tuple[str, bytes]] = Coalescer(self._send_appends)
        """Concurrent single-message publishes share one pipeline (see _coalesce)."""
        self._acks: Coalescer[tuple[str, str, str]] = Coalescer(self._send_acks)
        """Concurrent acknowledgements share one round trip: one XACK per stream."""

    @property
    def circuit(self) -> CircuitBreaker:
        return self._circuit

    # -- I/O boundary --------------------------------------------------------------

    async def _io(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def mapped() -> T:
            try:
                async with asyncio.timeout(self._op_timeout):
                    return await fn()
            except TimeoutError as exc:
                raise BrokerConnectionError(
                    f"redis at {self._where}: no reply within {self._op_timeout:.1f}s"
                ) from exc
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                if _is_auth_failure(exc):
                    raise BrokerConnectionError(_auth_advice(self._where, exc)) from exc
                raise BrokerConnectionError(f"redis at {self._where}: {exc}") from exc
            except rexc.RedisError as exc:
                if "NOGROUP" in str(exc):
                    self._groups.clear()  # the server lost its state (restart)
                    raise _NoGroupError(f"redis at {self._where}: {exc}") from exc
                raise BrokerError(f"redis at {self._where}: {exc}") from exc

        return await self._circuit.call(mapped)

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._require_connected()
            raise AssertionError("unreachable")
        return self._client

    async def _connect(self) -> None:
        if self._url is not None:
            pool = aioredis.BlockingConnectionPool.from_url(self._url, **self._conn_kwargs)
        else:
            pool = aioredis.BlockingConnectionPool(**self._conn_kwargs)
        client = aioredis.Redis(connection_pool=pool)
        self._client = client
        self._fetch_script = client.register_script(layout.FETCH)
        try:
            await self._io(client.ping)
        except BaseException:
            self._client = None
            await client.aclose()
            await pool.aclose()
            raise

    async def _disconnect(self) -> None:
        await self._appends.close()
        await self._acks.close()
        client, self._client = self._client, None
        self._groups.clear()
        if client is not None:
            await client.aclose()
            await client.connection_pool.aclose()

    async def _ping(self) -> None:
        await self._io(self._redis.ping)

    def _health_extra(self) -> dict[str, Any]:
        return {"circuit": self._circuit.state.value, "server": self._where}

    def _lease_table(self, topic: str, group: str) -> LeaseTable:
        return RedisLeases(self._io, lambda: self._redis, topic, group)

    # -- groups --------------------------------------------------------------------

    async def _ensure_group(self, topic: str, group: str) -> None:
        if (topic, group) in self._groups:
            return
        redis = self._redis

        async def create() -> None:
            for key in (topic, layout.retry_key(topic, group)):
                try:
                    # From 0: a new group sees every retained message.
                    await redis.xgroup_create(key, group, id="0", mkstream=True)
                except rexc.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

        await self._io(create)
        self._groups.add((topic, group))

    # -- primitives ----------------------------------------------------------------

    async def _append(self, topic: str, datas: Sequence[bytes], lane: int, key: str | None) -> None:
        redis = self._redis
        maxlen = self.max_stream_length
        stream = layout.lane_key(topic, lane)
        min_id = self._due_trim(stream)
        if min_id is not None:  # now and then: entries older than the message TTL go

            async def trimmed() -> None:
                pipe = redis.pipeline(transaction=False)
                for data in datas:
                    pipe.xadd(stream, {layout.FIELD: data}, maxlen=maxlen, approximate=True)
                pipe.xtrim(stream, minid=min_id, approximate=False)
                await pipe.execute()

            await self._io(trimmed)
            return
        if len(datas) == 1:
            await self._appends.submit((stream, datas[0]))
            return

        async def batch() -> None:
            pipe = redis.pipeline(transaction=False)
            for data in datas:
                pipe.xadd(stream, {layout.FIELD: data}, maxlen=maxlen, approximate=True)
            await pipe.execute()

        await self._io(batch)

    async def _send_appends(self, items: list[tuple[str, bytes]]) -> list[Exception | None]:
        redis, maxlen = self._redis, self.max_stream_length
        if len(items) == 1:  # the common case alone: one plain command, no pipeline
            (key, data) = items[0]
            await self._io(
                lambda: redis.xadd(key, {layout.FIELD: data}, maxlen=maxlen, approximate=True)
            )
            return [None]

        async def send() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for key, data in items:
                pipe.xadd(key, {layout.FIELD: data}, maxlen=maxlen, approximate=True)
            return await pipe.execute(raise_on_error=False)

        return self._refused(await self._io(send))

    async def _send_acks(self, items: list[tuple[str, str, str]]) -> list[Exception | None]:
        redis = self._redis
        if len(items) == 1:  # the common case alone: one plain command, no pipeline
            (source, group, entry_id) = items[0]
            await self._io(lambda: redis.xack(source, group, entry_id))
            return [None]
        by_stream: dict[tuple[str, str], list[int]] = {}
        for i, (source, group, _) in enumerate(items):
            by_stream.setdefault((source, group), []).append(i)

        async def send() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for (source, group), at in by_stream.items():
                pipe.xack(source, group, *(items[i][2] for i in at))
            return await pipe.execute(raise_on_error=False)

        results = self._refused(await self._io(send))
        refused: list[Exception | None] = [None] * len(items)
        for error, at in zip(results, by_stream.values(), strict=True):
            for i in at:
                refused[i] = error
        return refused

    def _refused(self, results: list[Any]) -> list[Exception | None]:
        """Each pipelined command's error as a :class:`BrokerError` (``None``: done)."""
        return [
            BrokerError(f"redis at {self._where}: {r}") if isinstance(r, Exception) else None
            for r in results
        ]

    async def _fetch(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        try:
            return await self._fetch_once(topic, group, consumer, count)
        except _NoGroupError:
            return await self._fetch_once(topic, group, consumer, count)

    async def _fetch_once(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        await self._ensure_group(topic, group)
        cursor = self._cursors.get((topic, group))
        if cursor is None:
            cursor = self._cursors[(topic, group)] = _Cursor()
        retry_key = layout.retry_key(topic, group)
        out: list[tuple[Delivery, bytes | None]] = []
        now = time.monotonic()
        if now >= cursor.next_sweep:
            idle = self.consumer_options.idle_consumer_ttl
            cursor.next_sweep = now + min(60.0, idle / 2)
            held = (retry_key, *cursor.lanes, topic)
            await self._io(lambda: self._sweep(held, group, consumer, idle))
        if now >= cursor.next_claim:
            cursor.next_claim = now + self.consumer_options.effective_claim_interval
            held = (retry_key, *cursor.lanes, topic)
            out = await self._io(lambda: self._reclaim(held, group, consumer, count))
            if out:
                return out
        redis = self._redis
        keys = [retry_key, *self._lane_keys(topic), topic]
        args = (group, consumer, count)
        if cursor.next_promote - self._clock() > 0:  # the common case: one script call
            reply = await self._io(lambda: self._fetch_script(keys=keys, args=args))
        else:

            async def promote_and_read() -> Any:
                pipe = redis.pipeline(transaction=False)
                pipe.eval(
                    layout.PROMOTE,
                    2,
                    layout.delayed_key(topic, group),
                    retry_key,
                    self._clock(),
                    count,
                    self.max_stream_length,
                )
                pipe.eval(layout.FETCH, len(keys), *keys, *args)
                (_, head), fetched = await pipe.execute()
                block = self.consumer_options.block_time
                upcoming = float(head) if head else self._clock() + block
                cursor.next_promote = min(upcoming, self._clock() + block)
                return fetched

            reply = await self._io(promote_and_read)
        lanes, read = reply
        if lanes:
            seen = {*cursor.lanes, *(layout.text(key) for key in lanes)}
            cursor.lanes = [key for key in keys if key in seen]
        for key, entries in layout.script_entries(read):
            source = layout.text(key)
            for entry_id, data in entries:
                out.append((Delivery(group, consumer, source, layout.text(entry_id)), data))
        if out:
            return out
        # Nothing waiting: block on every stream until something comes (a lane made
        # after the script looked is read from the next fetch on).
        until_promote = cursor.next_promote - self._clock()
        block = max(0.001, min(self.consumer_options.block_time, until_promote))
        order = [retry_key, *cursor.lanes, topic]
        streams: dict[Any, Any] = dict.fromkeys(order, ">")
        replies = await self._io(
            lambda: redis.xreadgroup(
                group, consumer, streams, count=count, block=max(1, int(block * 1000))
            )
        )
        found = {layout.text(key): entries for key, entries in layout.stream_items(replies)}
        for source in order:
            for entry_id, fields in found.get(source, ()):
                out.append(
                    (
                        Delivery(group, consumer, source, layout.text(entry_id)),
                        layout.entry_data(fields),
                    )
                )
        return out

    def _lane_keys(self, topic: str) -> list[str]:
        """The streams of ``topic``'s priority lanes above 0, highest first."""
        return [layout.lane_key(topic, lane) for lane in range(self.priority_levels - 1, 0, -1)]

    async def _reclaim(
        self, keys: Sequence[str], group: str, consumer: str, count: int
    ) -> list[tuple[Delivery, bytes | None]]:
        idle_ms = int(self.consumer_options.visibility_timeout * 1000)
        out: list[tuple[Delivery, bytes | None]] = []
        for key in keys:
            reply = await self._redis.xautoclaim(
                key, group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
            )
            for entry_id, fields in reply[1]:
                if fields is None:
                    continue  # trimmed away while pending; XAUTOCLAIM dropped it
                out.append(
                    (
                        Delivery(group, consumer, key, layout.text(entry_id)),
                        layout.entry_data(fields),
                    )
                )
        return out

    async def _ack(self, topic: str, delivery: Delivery) -> None:
        await self._acks.submit((delivery.source, delivery.group, delivery.entry_id))

    async def _ack_many(self, topic: str, deliveries: Sequence[Delivery]) -> None:
        items = [(d.source, d.group, d.entry_id) for d in deliveries]
        refused = await self._send_acks(items)  # one round trip, beside the coalescer's
        for error in refused:
            if error is not None:
                raise error

    async def _touch(self, topic: str, delivery: Delivery) -> None:
        redis = self._redis
        await self._io(
            lambda: redis.eval(
                layout.TOUCH,
                1,
                delivery.source,
                delivery.group,
                delivery.consumer,
                delivery.entry_id,
            )
        )

    async def _retry_later(self, topic: str, delivery: Delivery, data: bytes, delay: float) -> None:
        due = self._clock() + delay
        delayed = layout.delayed_key(topic, delivery.group)
        redis = self._redis

        async def move() -> None:
            pipe = redis.pipeline(transaction=True)
            pipe.zadd(delayed, {data: due})
            pipe.xack(delivery.source, delivery.group, delivery.entry_id)
            await pipe.execute()

        await self._io(move)
        cursor = self._cursors.get((topic, delivery.group))
        if cursor is not None:
            cursor.next_promote = min(cursor.next_promote, due)

    async def _dead_letter(self, topic: str, delivery: Delivery, record: bytes) -> None:
        min_id = self._dlq_floor()
        redis = self._redis

        async def move() -> None:
            pipe = redis.pipeline(transaction=True)
            key = layout.dlq_key(topic)
            pipe.xadd(key, {layout.FIELD: record}, minid=min_id, approximate=False)
            pipe.xack(delivery.source, delivery.group, delivery.entry_id)
            await pipe.execute()

        await self._io(move)

    async def _sweep(self, keys: Sequence[str], group: str, me: str, idle: float) -> None:
        """Remove the group's consumers idle for ``idle`` seconds with nothing pending
        (never ``me``, never one holding an entry)."""
        redis = self._redis
        for key in keys:
            await redis.eval(layout.SWEEP, 1, key, group, me, int(idle * 1000))

    async def _delete(self, topic: str) -> None:
        redis = self._redis
        pattern = _glob_escape(topic)

        async def delete() -> None:
            keys = [topic, *self._lane_keys(topic)]
            for kind in ("retry", "delayed"):
                async for key in redis.scan_iter(match=f"{pattern}:{kind}:*", count=500):
                    keys.append(layout.text(key))
            await redis.delete(*keys)

        await self._io(delete)
        self._groups = {pair for pair in self._groups if pair[0] != topic}
        for key in [key for key in self._cursors if key[0] == topic]:
            del self._cursors[key]
        for stream in (topic, *self._lane_keys(topic)):
            self._trimmed_at.pop(stream, None)

    def _due_trim(self, topic: str) -> int | None:
        """The stream id before which ``topic``'s entries are older than the message
        TTL, when a trim is due (every ``min(60 s, TTL / 2)`` per topic); else ``None``."""
        ttl = self.message_ttl
        if ttl is None:
            return None
        now = self._clock()
        if now - self._trimmed_at.get(topic, 0.0) < min(60.0, ttl / 2):
            return None
        if len(self._trimmed_at) >= _TRIM_MEMORY:  # bounded: a forgotten topic is
            self._trimmed_at.clear()  # just trimmed again on its next publish
        self._trimmed_at[topic] = now
        return max(0, int((now - ttl) * 1000))

    def _dlq_floor(self) -> int:
        """The first DLQ entry id not past the DLQ TTL (ids are milliseconds)."""
        return max(0, int((self._clock() - self.dlq_ttl) * 1000))

    async def _count_dead_letters(self, topic: str) -> int:
        redis, key, floor = self._redis, layout.dlq_key(topic), self._dlq_floor()

        async def count() -> int:
            pipe = redis.pipeline(transaction=False)
            pipe.xtrim(key, minid=floor, approximate=False)  # expired letters go first
            pipe.xlen(key)
            _, length = await pipe.execute()
            return int(length)

        return await self._io(count)

    async def _read_dead_letters(self, topic: str, limit: int) -> list[tuple[str, bytes]]:
        redis, floor = self._redis, self._dlq_floor()
        key = layout.dlq_key(topic)
        rows = await self._io(lambda: redis.xrange(key, min=f"{floor}-0", count=limit))
        return [
            (layout.text(entry_id), data)
            for entry_id, fields in rows or ()
            if (data := layout.entry_data(fields)) is not None
        ]

    async def _read_dead_letter(self, topic: str, dlq_id: str) -> bytes | None:
        if not layout.is_entry_id(dlq_id) or int(dlq_id.split("-", 1)[0]) < self._dlq_floor():
            return None  # not an id, or past the DLQ's TTL
        redis = self._redis
        rows = await self._io(lambda: redis.xrange(layout.dlq_key(topic), dlq_id, dlq_id, 1))
        return next((layout.entry_data(fields) for _, fields in rows or ()), None)

    async def _dead_letter_topics(self) -> list[str]:
        redis, floor = self._redis, self._dlq_floor()

        async def scan() -> list[str]:
            found: list[str] = []
            async for key in redis.scan_iter(match=layout.DLQ_PATTERN, _type="STREAM"):
                # the first letter not past the DLQ TTL: a DLQ of expired ones only is none
                first = await redis.xrange(key, min=f"{floor}-0", count=1)
                data = next((layout.entry_data(fields) for _, fields in first or ()), None)
                if record_topic(data) is not None:
                    found.append(layout.text(key).removesuffix(":dlq"))
            return found

        return await self._io(scan)

    async def _discard(self, topic: str, dlq_id: str, record: bytes) -> bool:
        if not layout.is_entry_id(dlq_id):
            return False
        min_id = self._dlq_floor()
        keys = (layout.dlq_key(topic), layout.discarded_key(topic))
        redis = self._redis
        moved = await self._io(lambda: redis.eval(layout.DISCARD, 2, *keys, dlq_id, record, min_id))
        return bool(moved)

    async def _read_discarded(self, topic: str, limit: int) -> list[bytes]:
        redis = self._redis
        rows = await self._io(lambda: redis.xrange(layout.discarded_key(topic), count=limit))
        return [data for _, fields in rows or () if (data := layout.entry_data(fields)) is not None]

    async def _reprocess(self, topic: str, group: str, dlq_id: str, data: bytes) -> None:
        await self._ensure_group(topic, group)
        redis = self._redis

        async def move() -> None:
            pipe = redis.pipeline(transaction=True)
            pipe.xadd(
                layout.retry_key(topic, group),
                {layout.FIELD: data},
                maxlen=self.max_stream_length,
                approximate=True,
            )
            pipe.xdel(layout.dlq_key(topic), dlq_id)
            await pipe.execute()

        await self._io(move)

    async def _lag(self, topic: str, group: str) -> int:
        redis = self._redis
        streams = [topic, *self._lane_keys(topic)]
        retry_key = layout.retry_key(topic, group)

        async def lag() -> int:
            # One MULTI so a retry moving between the sorted set and the retry stream
            # is never missed by a drain check.
            pipe = redis.pipeline(transaction=True)
            pipe.zcard(layout.delayed_key(topic, group))
            for key in (*streams, retry_key):
                pipe.xinfo_groups(key)
            for key in streams:
                pipe.xlen(key)
            delayed, *rest = await pipe.execute(raise_on_error=False)
            infos, lengths = rest[: len(streams) + 1], rest[len(streams) + 1 :]
            total = int(delayed) if isinstance(delayed, int) else 0
            keys = (*streams, retry_key)
            for key, groups, length in zip(keys, infos, [*lengths, 0], strict=True):
                if isinstance(groups, Exception):
                    continue  # no such stream yet
                info = next((g for g in groups if layout.text(g.get("name")) == group), None)
                if info is None:
                    if isinstance(length, int):
                        total += length  # group never read it: all of it is ahead
                    continue
                behind = info.get("lag")
                if behind is None:  # unknown after trims/deletes: count what is left
                    last = layout.text(info.get("last-delivered-id"))
                    behind = len(await redis.xrange(key, min=f"({last}") or ())
                total += int(behind) + int(info.get("pending", 0))
            return total

        return await self._io(lag)


_TRIM_MEMORY = 10_000
"""Topics whose last age trim this process remembers (request-reply topics come and go)."""


def _redacted(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (it goes into error messages)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}")
    query = "&".join(
        "password=***" if pair.startswith("password=") else pair for pair in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


_AUTH_SIGNS = ("NOAUTH", "WRONGPASS", "HELLO must be called", "invalid username-password")


def _is_auth_failure(exc: BaseException) -> bool:
    return isinstance(exc, rexc.AuthenticationError) or any(
        sign in str(exc) for sign in _AUTH_SIGNS
    )


def _auth_advice(where: str, exc: BaseException) -> str:
    if "NOAUTH" in str(exc) or "HELLO must be called" in str(exc):
        what = "needs a password and none was given"
    else:
        what = "refused the password (or user) given"
    return (
        f"redis at {where}: authentication failed: the server {what}; check redis.password "
        "(GREENLANG_REDIS_PASSWORD) or the password in redis.url"
    )


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
