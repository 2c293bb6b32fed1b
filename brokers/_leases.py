"""Membership by leases: the algorithm Redis and the in-memory broker share.

A consume loop with ``on_assigned`` is a member of (topic, group). Every
``membership_ttl / 3`` its :class:`LeaseMembership` makes one round over the backend's
:class:`LeaseTable`: it records itself as alive, renews the leases it holds, and aims
at its fair share, ``ceil(count / live members)``: below it, it takes free partitions
(never leased, released, or expired), starting at a random place so members do not
race for the same ones; above it, it gives back the surplus. So a new member gets
partitions once the others shed theirs, and a dead member's partitions, whose leases
and heartbeat both lapse after ``membership_ttl``, go to the survivors within about
one ttl.

A partition is reported to ``on_assigned`` only while its lease is held: the surplus is
reported gone first and released after, and a member whose renewals fail keeps what it
held only until the ttl of its last successful renewal (timed from before it was sent)
would have run out, then reports an empty assignment and takes partitions again once
the server answers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol

from brokers._errors import BrokerError
from brokers._membership import Assignment, OnAssigned, crc32_partitioner
from brokers._options import ConsumerOptions

logger = logging.getLogger("brokers")

# What a failed round or release raises: the backend's error, or our own time limit.
_FAILED = (BrokerError, TimeoutError)


class LeaseTable(Protocol):
    """The partition leases and live members of one (topic, group), kept by a backend.
    Each method is one atomic step on the backend (one round trip on a server)."""

    async def refresh(
        self, member: str, held: Sequence[int], ttl: float
    ) -> tuple[frozenset[int], int]:
        """Record ``member`` alive for ``ttl`` seconds, forget members not seen for
        ``ttl``, and renew for ``ttl`` the leases among ``held`` that ``member`` still
        owns; returns those and how many members are alive (``member`` included)."""

    async def acquire(
        self, member: str, candidates: Sequence[int], want: int, ttl: float
    ) -> frozenset[int]:
        """Lease to ``member`` for ``ttl`` up to ``want`` of ``candidates``, taken in
        their order among those free (never leased, released or expired) or already
        ``member``'s; returns the ones leased."""

    async def release(self, member: str, partitions: Sequence[int], *, leave: bool) -> None:
        """Drop the leases among ``partitions`` that ``member`` owns and, with ``leave``,
        its entry among the live members."""

    async def holders(self, count: int) -> dict[int, str]:
        """The member holding each leased partition of ``range(count)``."""


class LeaseMembership:
    """One consume loop's membership over a :class:`LeaseTable`; a
    :class:`~brokers._membership.MembershipSession`."""

    def __init__(
        self,
        table: LeaseTable,
        topic: str,
        group: str,
        consumer: str,
        on_assigned: OnAssigned,
        options: ConsumerOptions,
        rng: random.Random,
    ) -> None:
        self.table = table
        self.topic = topic
        self.group = group
        # Unique per loop: two loops may share a consumer name, never a lease.
        self.member = f"{consumer}#{uuid.uuid4().hex[:12]}"
        self._on_assigned = on_assigned
        self._count = options.membership_partitions
        self._ttl = options.membership_ttl
        self._interval = options.membership_interval
        start = rng.randrange(self._count)
        # This member's order of preference: where it looks first, what it keeps last.
        self._order = tuple((start + i) % self._count for i in range(self._count))
        self._held: frozenset[int] = frozenset()
        self._surplus: frozenset[int] = frozenset()  # to report gone, then release
        self._valid_until = 0.0  # monotonic: when the held leases may have lapsed
        self._reported: frozenset[int] | None = None
        self._lock = asyncio.Lock()  # one table step at a time (round, release)
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def held(self) -> frozenset[int]:
        return self._held

    async def start(self) -> None:
        await self._round()
        await self.sync()
        self._runner = asyncio.create_task(
            self._run(), name=f"membership:{self.topic}/{self.group}/{self.member}"
        )

    async def sync(self) -> None:
        if self._closed:
            return
        runner = self._runner
        if runner is not None and runner.done() and not runner.cancelled():
            failure = runner.exception()
            if failure is not None:
                raise failure
        surplus = self._surplus
        view = self._held - surplus
        if view != self._reported:
            self._reported = view
            await self._on_assigned(
                Assignment(self.topic, self.group, view, self._count, crc32_partitioner)
            )
        if surplus:
            async with self._lock:
                if not self._closed:
                    await self._release(sorted(surplus), leave=False)
                    self._held -= surplus
                    self._surplus -= surplus

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait([runner])
        # Every partition, not just those known held: a round cut short may have
        # leased some without hearing the reply.
        await self._release(range(self._count), leave=True)
        self._held = self._surplus = frozenset()

    async def _release(self, partitions: Iterable[int], *, leave: bool) -> None:
        try:
            async with asyncio.timeout(self._interval):
                await self.table.release(self.member, list(partitions), leave=leave)
        except _FAILED as exc:  # not renewed, they lapse within the ttl anyway
            logger.warning(
                "member %s of %s/%s could not release its leases: %r",
                self.member,
                self.topic,
                self.group,
                exc,
            )

    async def _run(self) -> None:
        while True:
            wait = self._interval
            if self._held:  # failing renewals: wake when the leases may lapse
                wait = min(wait, max(self._valid_until - time.monotonic(), 0.0))
            await asyncio.sleep(wait)
            await self._round()

    async def _round(self) -> None:
        started = time.monotonic()
        limit = self._interval
        if self._held:
            limit = min(limit, max(self._valid_until - started, 0.0))
        async with self._lock:
            if self._closed:
                return
            try:
                async with asyncio.timeout(limit):
                    await self._step(started)
            except _FAILED as exc:
                if self._held and time.monotonic() >= self._valid_until:
                    logger.warning(
                        "member %s of %s/%s gives up partitions %s: leases not renewed "
                        "within %.1fs (%r)",
                        self.member,
                        self.topic,
                        self.group,
                        sorted(self._held),
                        self._ttl,
                        exc,
                    )
                    self._held = self._surplus = frozenset()
                else:
                    logger.warning(
                        "member %s of %s/%s could not reach its lease table: %r",
                        self.member,
                        self.topic,
                        self.group,
                        exc,
                    )

    async def _step(self, started: float) -> None:
        held, live = await self.table.refresh(self.member, sorted(self._held), self._ttl)
        self._valid_until = started + self._ttl
        self._held = held
        self._surplus &= held
        keep = held - self._surplus
        share = -(-self._count // max(live, 1))
        if len(keep) > share and not self._surplus:
            ranked = [p for p in self._order if p in keep]
            self._surplus = frozenset(ranked[share:])
        elif len(keep) < share:
            free = [p for p in self._order if p not in held]
            got = await self.table.acquire(self.member, free, share - len(keep), self._ttl)
            self._held = held | got
