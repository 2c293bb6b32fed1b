"""Group commit: one writer task turns many concurrent appends into few transactions.

Each append keeps its own atomicity and expected-version check: the writer decides every
append of a batch against the stream heads as the batch has left them, so a rejected
append never reaches the database and an accepted one is written whole or not at all.
Stream heads are cached in memory; ``UNIQUE(stream_id, version)`` is the backstop for a
cache made stale by another process, in which case the batch is rolled back and each
append is retried alone against heads read inside the write lock.

With a signer, the writer also appends a signed checkpoint of the store-wide head at the
end of a batch once ``checkpoint_every`` records were written since the last one, when
records have waited ``checkpoint_interval`` seconds unsigned, and when it closes.

When the database cannot be reached, the batch and everything queued behind it fail at
once with ``StoreUnavailableError`` (the writer does not retry: its callers decide), the
session drops its connection, and the next batch connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from ._canonical import body_json, canonical_json, chain_hash, genesis_hash, log_link
from ._checkpoints import CHECKPOINT_STREAM, CHECKPOINT_TYPE, CheckpointSigner
from ._errors import (
    ConcurrencyError,
    EventStoreError,
    StorageError,
    StoreClosedError,
    StoreUnavailableError,
)
from ._records import ANY, NO_STREAM, AppendResult, ExpectedVersion
from ._sessions import DriverSession, Head, WriteConflict
from ._validation import PreparedRecord

logger = logging.getLogger("eventstore")


@dataclass(slots=True)
class WriterStats:
    """Counters of the writer's work, to see group commit at work.

    Plain numbers a monitoring collector reads; the two ``observe_*`` hooks, when set,
    are called with each append's latency and each transaction's size (nothing is
    timed while they are ``None``).
    """

    appends: int = 0
    """Appends committed."""
    records: int = 0
    """Records committed."""
    transactions: int = 0
    """Write transactions committed (one per batch, plus retries)."""
    rejected: int = 0
    """Appends refused with a ConcurrencyError."""
    checkpoints: int = 0
    """Signed checkpoints committed."""
    queued: int = 0
    """Appends waiting for the writer (its queue's depth when it last changed)."""
    observe_append: Callable[[float], None] | None = None
    """Called with the seconds each committed append waited, from ``append`` to its
    commit (queueing included: what the appender sees)."""
    observe_batch: Callable[[int], None] | None = None
    """Called with the records of each committed transaction (group commit's batch)."""


@dataclass(slots=True)
class PendingAppend:
    stream_id: str
    stream_id_json: str
    records: list[PreparedRecord]
    expected: ExpectedVersion
    future: asyncio.Future[AppendResult]
    checkpoint: bool = False
    """A signed checkpoint: its one record is made when the batch is planned."""
    queued_at: float = 0.0
    """``time.perf_counter()`` at submission, when appends are timed."""


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expected_matches(expected: ExpectedVersion, actual: int) -> bool:
    if expected == ANY:
        return True
    if expected == NO_STREAM:
        return actual == 0
    return expected == actual


class GroupCommitWriter:
    """The single writer of one store."""

    def __init__(
        self,
        open_session: Callable[[], AbstractAsyncContextManager[DriverSession]],
        clock: Callable[[], datetime],
        on_commit: Callable[[], None],
        unavailable: Callable[[BaseException], bool],
        *,
        max_batch_records: int = 512,
        max_cached_heads: int = 100_000,
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
    ) -> None:
        self._open_session = open_session
        self._clock = clock
        self._on_commit = on_commit
        self._unavailable = unavailable
        self._max_batch = max_batch_records
        self._max_cached = max_cached_heads
        self._queue: deque[PendingAppend] = deque()
        self._wake = asyncio.Event()
        self._heads: dict[str, Head] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._committing = False  # the last _write got as far as its COMMIT
        self._down_since: float | None = None  # the first failure of an outage
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._unsigned = 0  # records this writer committed since its last checkpoint
        self._unsigned_since = 0.0  # when the first of them was committed
        self._checkpoint_queued = False
        self._sealed = False  # the shutdown checkpoint was queued
        self.stats = WriterStats()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="eventstore-writer")

    async def submit(self, pending: PendingAppend) -> AppendResult:
        if self._closing or self._task is None or self._task.done():
            raise StoreClosedError("the event store is closed")
        if self.stats.observe_append is not None:
            pending.queued_at = time.perf_counter()
        self._queue.append(pending)
        self.stats.queued = len(self._queue)
        self._wake.set()
        return await pending.future

    def checkpoint(self) -> asyncio.Future[AppendResult]:
        """Queue a signed checkpoint of the store-wide head; its future is the append."""
        if self._signer is None:
            raise EventStoreError("no signing key: open the store with a signer to checkpoint")
        if self._closing or self._task is None or self._task.done():
            raise StoreClosedError("the event store is closed")
        pending = self._checkpoint_pending()
        self._queue.append(pending)
        self._wake.set()
        return pending.future

    def _checkpoint_pending(self) -> PendingAppend:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._checkpoint_done)
        self._checkpoint_queued = True
        return PendingAppend(
            CHECKPOINT_STREAM, canonical_json(CHECKPOINT_STREAM), [], ANY, future, True
        )

    def _checkpoint_done(self, future: asyncio.Future[AppendResult]) -> None:
        self._checkpoint_queued = False
        if not future.cancelled() and future.exception() is not None:
            logger.warning("signed checkpoint not written: %s", future.exception())

    def _checkpoint_due(self, count: int) -> bool:
        """Whether a batch of ``count`` more records should end with a checkpoint."""
        if self._signer is None or self._checkpoint_queued:
            return False
        unsigned = self._unsigned + count
        if unsigned >= self._checkpoint_every:
            return True
        if self._closing:
            return unsigned > 0
        waited = time.monotonic() - self._unsigned_since
        return self._unsigned > 0 and waited >= self._checkpoint_interval

    async def _idle(self) -> None:
        """Wait for appends; with records unsigned, no longer than their checkpoint is due."""
        self._wake.clear()
        if self._signer is None or self._unsigned == 0 or self._checkpoint_queued:
            await self._wake.wait()
            return
        due = self._unsigned_since + self._checkpoint_interval - time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(due, 0.0)):
                await self._wake.wait()
                return
        self._queue.append(self._checkpoint_pending())

    async def close(self) -> None:
        """Write everything already accepted (and a last checkpoint), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing and not self._sealed and self._checkpoint_due(0):
                    self._sealed = True  # tried once: a store that is down stays unsealed
                    self._queue.append(self._checkpoint_pending())
                    continue
                if self._closing:
                    return
                await self._idle()
                continue
            batch: list[PendingAppend] = []
            count = 0
            while self._queue and (
                not batch or count + len(self._queue[0].records) <= self._max_batch
            ):
                pending = self._queue.popleft()
                if pending.future.cancelled():
                    continue
                batch.append(pending)
                count += len(pending.records)
            self.stats.queued = len(self._queue)
            if batch and not batch[-1].checkpoint and self._checkpoint_due(count):
                batch.append(self._checkpoint_pending())
            try:
                if batch:
                    await self._commit(batch)
            except Exception as exc:  # a bug, not the database: the writer must live on
                logger.exception("event store writer failed on a batch")
                self._fail(batch, exc)
            # Let appenders woken by this batch queue again before the next one is cut.
            await asyncio.sleep(0)

    async def _commit(self, batch: list[PendingAppend]) -> None:
        try:
            outcomes = await self._write(batch, trust_cache=True)
        except WriteConflict:
            # Another process wrote to one of these streams: our cached heads are stale.
            logger.info(
                "stale stream heads in a batch of %d appends; retrying each alone", len(batch)
            )
            for pending in batch:
                self._heads.pop(pending.stream_id, None)
            for index, pending in enumerate(batch):
                lost = await self._commit_alone(pending)
                if lost is not None:  # the database went away: the rest fail with it
                    self._fail(batch[index + 1 :], lost)
                    return
            return
        except Exception as exc:  # the database failed (_fail says what may have been written)
            self._fail(batch, exc)
            return
        self._settle(batch, outcomes)

    async def _commit_alone(self, pending: PendingAppend) -> Exception | None:
        """Write one append, heads read afresh; the error if the database is unavailable."""
        for _ in range(3):
            try:
                outcomes = await self._write([pending], trust_cache=False)
            except WriteConflict:
                self._heads.pop(pending.stream_id, None)
                continue
            except Exception as exc:
                self._fail([pending], exc)
                return exc if self._unavailable(exc) else None
            self._settle([pending], outcomes)
            return None
        self._fail(
            [pending],
            StorageError(f"append to {pending.stream_id!r} kept colliding with other writers"),
        )
        return None

    def _fail(self, batch: list[PendingAppend], exc: Exception) -> None:
        if not isinstance(exc, EventStoreError) and self._unavailable(exc):
            self._fail_unavailable(batch, exc)
            return
        error: Exception = exc
        if not isinstance(exc, EventStoreError):
            error = StorageError(f"append failed in the database: {exc}")
            error.__cause__ = exc
            logger.error("event store batch of %d appends failed: %s", len(batch), exc)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _fail_unavailable(self, batch: list[PendingAppend], exc: Exception) -> None:
        """Fail the batch, and what queued behind it, at once: during an outage an
        append must not wait its turn behind others bound to fail too."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("event store appends failing, the database is unavailable: %s", exc)
        outcome = (
            "the connection was lost during COMMIT, so it may have been written: re-read "
            "the stream (a retry at the same expected version cannot write it twice)"
            if self._committing
            else "nothing was written"
        )
        for pending in batch:
            self._heads.pop(pending.stream_id, None)  # a lost COMMIT may have moved it
        queued = list(self._queue)
        self._queue.clear()
        self.stats.queued = 0
        for group, said in ((batch, outcome), (queued, "nothing was written")):
            for pending in group:
                if not pending.future.done():
                    error = StoreUnavailableError(f"append to {pending.stream_id!r}", exc, said)
                    pending.future.set_exception(error)

    def _settle(
        self, batch: list[PendingAppend], outcomes: list[AppendResult | ConcurrencyError]
    ) -> None:
        if self._down_since is not None:
            logger.info(
                "event store appends resumed after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self.stats.transactions += 1
        stats = self.stats
        timed = stats.observe_append
        now = time.perf_counter() if timed is not None else 0.0
        records = 0
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, AppendResult):
                if timed is not None and pending.queued_at:
                    timed(now - pending.queued_at)
                self._remember(pending.stream_id, (outcome.last_version, outcome.last_hash))
                self.stats.appends += 1
                written = outcome.last_version - outcome.first_version + 1
                self.stats.records += written
                records += written
                if pending.checkpoint:
                    self.stats.checkpoints += 1
                    self._unsigned = 0
                else:
                    if self._unsigned == 0:
                        self._unsigned_since = time.monotonic()
                    self._unsigned += written
            else:
                self.stats.rejected += 1
        if stats.observe_batch is not None:
            stats.observe_batch(records)
        self._on_commit()
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, AppendResult):
                pending.future.set_result(outcome)
            else:
                pending.future.set_exception(outcome)

    def _remember(self, stream_id: str, head: Head) -> None:
        self._heads.pop(stream_id, None)
        self._heads[stream_id] = head
        if len(self._heads) > self._max_cached:
            self._heads.pop(next(iter(self._heads)))

    async def _write(
        self, batch: list[PendingAppend], *, trust_cache: bool
    ) -> list[AppendResult | ConcurrencyError]:
        self._committing = False
        async with self._open_session() as session, session.transaction():
            position, log_hash = await session.log_head()
            base: dict[str, Head] = {}
            verified: set[str] = set()
            lookup: set[str] = set()
            for pending in batch:
                sid = pending.stream_id
                if trust_cache and sid in self._heads:
                    base[sid] = self._heads[sid]
                elif trust_cache and pending.expected in (NO_STREAM, 0):
                    base[sid] = (0, genesis_hash(sid))  # a new stream: the backstop guards
                else:
                    lookup.add(sid)
            for _ in range(2):
                if lookup:
                    found = await session.heads(sorted(lookup))
                    for sid in lookup:
                        base[sid] = found.get(sid, (0, genesis_hash(sid)))
                    verified |= lookup
                stale, rows, outcomes = self._plan(batch, base, verified, position, log_hash)
                if not stale:
                    break
                lookup = stale
            if rows:
                await session.insert(rows)
            self._committing = True  # a failure from here on may follow a durable COMMIT
        return outcomes

    def _plan(
        self,
        batch: list[PendingAppend],
        base: dict[str, Head],
        verified: set[str],
        position: int,
        log_hash: str,
    ) -> tuple[set[str], list[tuple[object, ...]], list[AppendResult | ConcurrencyError]]:
        """Decide every append of the batch in order; pure but for reading the clock."""
        heads = dict(base)
        touched: set[str] = set()
        stale: set[str] = set()
        rows: list[tuple[object, ...]] = []
        outcomes: list[AppendResult | ConcurrencyError] = []
        recorded_at = _format_time(self._clock())
        for pending in batch:
            sid = pending.stream_id
            version, prev_hash = heads[sid]
            if not _expected_matches(pending.expected, version):
                if sid not in touched and sid not in verified:
                    stale.add(sid)  # the cached head may be behind: read it and decide again
                outcomes.append(ConcurrencyError(sid, pending.expected, version))
                continue
            first_version, first_position = version + 1, position + 1
            records = pending.records
            if pending.checkpoint:
                records = [self._checkpoint_record(position, log_hash, recorded_at)]
            for record in records:
                version += 1
                position += 1
                body = body_json(
                    data_json=record.data_json,
                    kind_json=record.kind_json,
                    metadata_json=record.metadata_json,
                    prev_hash=prev_hash,
                    recorded_at=recorded_at,
                    stream_id_json=pending.stream_id_json,
                    type_json=record.type_json,
                    version=version,
                )
                hash_ = chain_hash(prev_hash, body)
                log_hash = log_link(log_hash, hash_, position)
                rows.append(
                    (
                        position,
                        sid,
                        version,
                        record.kind,
                        record.type,
                        record.data_json,
                        record.metadata_json,
                        recorded_at,
                        prev_hash,
                        hash_,
                        log_hash,
                    )
                )
                prev_hash = hash_
            heads[sid] = (version, prev_hash)
            touched.add(sid)
            outcomes.append(
                AppendResult(sid, first_version, version, first_position, position, prev_hash)
            )
        return stale, rows, outcomes

    def _checkpoint_record(self, position: int, log_hash: str, signed_at: str) -> PreparedRecord:
        assert self._signer is not None
        return PreparedRecord(
            kind="event",
            type=CHECKPOINT_TYPE,
            data_json=self._signer.data_json(position, log_hash, signed_at),
            metadata_json="{}",
            kind_json='"event"',
            type_json=canonical_json(CHECKPOINT_TYPE),
        )
