"""Following the store: every record after a position, the history then live, through
outages of the database."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from ._errors import StoreUnavailableError
from ._records import Record

logger = logging.getLogger("eventstore")

ReadAll = Callable[..., Awaitable[list[Record]]]
"""``EventStore.read_all(after_position, limit, *, types=…)``."""


class CommitSignal:
    """Wakes followers when this process's store commits (or closes)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next commit sets: take it before reading, then wait on it."""
        return self._event


async def _wait(committed: asyncio.Event, timeout: float) -> None:
    """Until ``committed`` is set, at most ``timeout`` seconds.

    asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation
    that arrives as the event fires, and the reader lives on.
    """
    waiter = asyncio.ensure_future(committed.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


async def follow(
    read_all: ReadAll,
    commits: CommitSignal,
    closed: Callable[[], bool],
    after_position: int,
    *,
    types: Collection[str] | None,
    batch_size: int,
    poll_interval: float,
    retry_delay: float,
    max_retry_delay: float,
) -> AsyncIterator[Record]:
    """``EventStore.subscribe``: see there."""
    position, delay = after_position, retry_delay
    down_since: float | None = None  # when the outage began, while there is one
    while True:
        committed = commits.current()
        try:
            page = await read_all(position, batch_size, types=types)
        except StoreUnavailableError as exc:
            if down_since is None:
                down_since = time.monotonic()
                logger.warning("subscription after position %d waits: %s", position, exc)
            await _wait(committed, random.uniform(delay / 2, delay))
            delay = min(delay * 2, max_retry_delay)
            continue
        if down_since is not None:
            outage, down_since, delay = time.monotonic() - down_since, None, retry_delay
            logger.info("subscription resumed after %.1f s at position %d", outage, position)
        for record in page:
            yield record
            position = record.position
        if len(page) < batch_size:
            if closed():
                return
            await _wait(committed, poll_interval)
