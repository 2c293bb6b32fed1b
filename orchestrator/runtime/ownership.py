"""Ownership and adoption: which sagas this engine drives, and finding them.

Ownership follows the broker's own membership of the replies group (see
``brokers.Assignment``): the engine that holds a saga's partition owns the saga. On
Kafka that is the partition the saga's replies are keyed to; on Redis and the
in-memory broker, a virtual partition held by a lease that expires. When an engine
dies, its partitions move to the survivors (within the session timeout or the lease's
time to live), and each survivor **adopts** the sagas of the partitions it gained:
it picks up the sagas requested and not started, rebuilds their timers from the log
and re-sends every command that has no outcome, with the same id.

Nothing a saga needs lives only in one process: an owner also **sweeps** its
partitions every ``sweep_interval`` for sagas another engine moved on since it last
looked (on Redis any engine may handle a reply) and re-arms their timers from the log,
so a timer armed by an engine that then died still fires. **Intake** (a subscription
to ``saga.start``) starts the requested sagas this engine owns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from brokers import Assignment
from eventstore import EventLog, StoreUnavailableError
from orchestrator.core.commands import FinishSaga, StartSaga
from orchestrator.runtime.backoff import Backoff
from orchestrator.runtime.saga_log import STREAM_PREFIX, saga_of

__all__ = ["Ownership"]

logger = logging.getLogger("orchestrator")

PickUp = Callable[[str], Awaitable[None]]
Adopt = Callable[[str, bool], Awaitable[bool]]
"""``adopt(saga_id, resend)``: load the saga, arm its timers, and (``resend``) send its
outstanding commands again; False if this engine turned out to be driving it."""

_ADOPT_AT_ONCE = 32
"""Sagas adopted concurrently (each a read of its stream and a publish)."""
_START_AT_ONCE = 64
"""Requested sagas started concurrently by intake."""


class Ownership:
    """Follows this engine's assignment and adopts, sweeps and takes in its sagas.

    ``enabled=False`` (an engine that takes no part in membership, such as the one
    ``orchestrator start --wait`` runs for a single saga): it owns every saga and never
    adopts, sweeps or takes in.
    """

    def __init__(
        self,
        store: EventLog,
        pick_up: PickUp,
        adopt: Adopt,
        known_version: Callable[[str], int | None],
        counts: dict[str, int],
        *,
        enabled: bool,
        forget: Callable[[str], None] = lambda saga_id: None,
        page_size: int = 500,
    ) -> None:
        self._store = store
        self._pick_up = pick_up
        self._adopt = adopt
        self._known_version = known_version
        self._forget = forget
        self.enabled = enabled
        self._page_size = page_size
        self._assignment: Assignment | None = None
        self._counts = counts
        self._work: set[asyncio.Task[None]] = set()

    def owns(self, saga_id: str) -> bool:
        if not self.enabled:
            return True
        assignment = self._assignment
        return assignment is not None and assignment.owns(saga_id)

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset() if self._assignment is None else self._assignment.partitions

    async def assigned(self, assignment: Assignment) -> None:
        """The replies consumer's membership changed: adopt the sagas of every partition
        gained, in the background (the consumer must not wait for it)."""
        before = self.partitions
        self._assignment = assignment
        gained = assignment.partitions - before
        logger.info(
            "engine holds %d of %d partitions of %s (gained %s)",
            len(assignment.partitions),
            assignment.count,
            assignment.topic,
            sorted(gained) or "none",
        )
        if not gained:
            return

        def selected(saga_id: str) -> bool:
            return assignment.partitioner(saga_id, assignment.count) in gained

        task = asyncio.create_task(
            self._adopt_partitions(selected, gained), name="orchestrator-adopt"
        )
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _adopt_partitions(
        self, selected: Callable[[str], bool], partitions: frozenset[int]
    ) -> None:
        before = self._counts["adopted"]
        await _patiently(lambda: self._scan(selected, resend=True), "adoption")
        logger.info(
            "adopted %d sagas of partitions %s",
            self._counts["adopted"] - before,
            sorted(partitions),
        )

    async def sweep_forever(self, interval: float) -> None:
        """Every ``interval`` seconds, re-arm the timers of the owned sagas another engine
        moved on since this one last looked."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self._scan(self.owns, resend=False)
            except StoreUnavailableError as exc:
                logger.info("sweep skipped, the store is unavailable: %s", exc)
            except Exception:
                logger.exception("sweep of owned sagas failed; trying again in %ss", interval)

    async def intake(self, after_position: int, poll_interval: float) -> None:
        """Start every owned saga requested after ``after_position``, until cancelled:
        up to ``_START_AT_ONCE`` at a time, so their appends share group commits."""
        slots = asyncio.Semaphore(_START_AT_ONCE)

        async def take(saga_id: str) -> None:
            try:
                await _patiently(functools.partial(self._pick_up, saga_id), "intake")
            except Exception:
                logger.exception("could not start saga %s", saga_id)
            finally:
                slots.release()

        async for record in self._store.subscribe(
            after_position, types={StartSaga.type_name}, poll_interval=poll_interval
        ):
            saga_id = saga_of(record.stream_id)
            if not self.owns(saga_id):
                continue  # its owner takes it in (or adopts it, should the owner die)
            await slots.acquire()
            task = asyncio.create_task(take(saga_id), name="orchestrator-start")
            self._work.add(task)
            task.add_done_callback(self._work.discard)

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)

    async def _scan(self, selected: Callable[[str], bool], *, resend: bool) -> None:
        """Every unfinished saga of the store for which ``selected`` holds and whose head
        this engine has not armed: pick up (requested) or adopt (started)."""
        after = ""
        slots = asyncio.Semaphore(_ADOPT_AT_ONCE)

        async def take(saga_id: str, requested: bool) -> None:
            async with slots:
                try:
                    if requested:
                        await self._pick_up(saga_id)
                    else:  # the engine counts the sagas it adopts
                        await self._adopt(saga_id, resend)
                except StoreUnavailableError:
                    raise  # the whole scan is tried again once the store is back
                except Exception:
                    logger.exception("could not adopt saga %s", saga_id)

        while True:
            page = await self._store.streams(STREAM_PREFIX, after=after, limit=self._page_size)
            work = []
            for info in page:
                saga_id = saga_of(info.stream_id)
                if info.last_type == FinishSaga.type_name:
                    if self._known_version(saga_id) is not None:
                        self._forget(saga_id)  # another engine finished it
                    continue
                if (
                    selected(saga_id)
                    # a saga this engine is driving has its timers armed here already
                    and self._known_version(saga_id) != info.version
                ):
                    work.append(take(saga_id, info.last_type == StartSaga.type_name))
            await asyncio.gather(*work)
            if len(page) < self._page_size:
                return
            after = page[-1].stream_id


async def _patiently(work: Callable[[], Awaitable[None]], what: str) -> None:
    """``work()``, again and again with backoff while the store is unreachable."""
    backoff = Backoff()
    while True:
        try:
            await work()
            return
        except StoreUnavailableError as exc:
            if backoff.attempts == 0:
                logger.warning("%s waits for the store: %s", what, exc)
            await backoff.wait()
