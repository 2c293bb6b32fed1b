"""The lease table of :class:`~brokers._redis.RedisStreamsBroker`: one Lua script per
step (keys and scripts: :mod:`brokers._redis_layout`), each through the broker's I/O
boundary (circuit breaker, timeout, error mapping)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from brokers import _redis_layout as layout

IO = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLeases:
    """The partition leases and live members of one (topic, group) in Redis."""

    def __init__(
        self, io: IO, client: Callable[[], aioredis.Redis], topic: str, group: str
    ) -> None:
        self._io = io
        self._client = client
        self._topic = topic
        self._group = group
        self._members = layout.members_key(topic, group)

    def _keys(self, partitions: Sequence[int]) -> list[str]:
        return [layout.lease_key(self._topic, self._group, p) for p in partitions]

    async def _eval(self, script: str, keys: Sequence[str], *args: str | int) -> Any:
        redis = self._client()
        return await self._io(lambda: redis.eval(script, len(keys), *keys, *args))

    async def refresh(
        self, member: str, held: Sequence[int], ttl: float
    ) -> tuple[frozenset[int], int]:
        live, kept = await self._eval(
            layout.REFRESH, [self._members, *self._keys(held)], member, _ms(ttl)
        )
        return frozenset(held[int(i) - 1] for i in kept), int(live)

    async def acquire(
        self, member: str, candidates: Sequence[int], want: int, ttl: float
    ) -> frozenset[int]:
        if want <= 0 or not candidates:
            return frozenset()
        got = await self._eval(layout.ACQUIRE, self._keys(candidates), member, _ms(ttl), want)
        return frozenset(candidates[int(i) - 1] for i in got)

    async def release(self, member: str, partitions: Sequence[int], *, leave: bool) -> None:
        await self._eval(
            layout.RELEASE,
            [self._members, *self._keys(partitions)],
            member,
            "1" if leave else "0",
        )

    async def holders(self, count: int) -> dict[int, str]:
        redis = self._client()
        keys = self._keys(range(count))
        values = await self._io(lambda: redis.mget(keys))
        return {p: layout.text(v) for p, v in enumerate(values) if v is not None}
