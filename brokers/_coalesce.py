"""Group commit for round trips: concurrent calls that each need one share it.

A :class:`Coalescer` takes items (an acknowledgement, a message to append) from any
number of tasks. While one round trip is under way, the items that arrive wait and go
together in the next one, so N concurrent callers cost about one round trip each time
the server answers instead of N; a caller alone sends its item itself, at once. Each
caller returns only once its own item's round trip succeeded (or raises its error):
nothing is reported done before the server has it. A caller cancelled while its item
waits in the queue stops waiting, and the item is still sent; one cancelled while
sending its own is like any cancelled request: it may or may not have reached the
server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Sends queued items with ``send(items)``, one call at a time, in arrival order.

    ``send`` raises when the round trip failed (every item in it fails), or returns the
    error of each item the server refused (``None`` for the others), or ``None``."""

    def __init__(
        self, send: Callable[[list[T]], Awaitable[Sequence[Exception | None] | None]]
    ) -> None:
        self._send = send
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        """A round trip is under way (a caller's own, or the queue's task)."""

    async def submit(self, item: T) -> None:
        """Send ``item`` and return once a round trip carrying it succeeded: at once, in
        this task, when none is under way; else with the next one."""
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._queue.append((item, done))
            await done  # cancelling the caller cancels ``done``: the item is still sent
            return
        self._busy = True
        try:
            refused = await self._send([item])
        finally:
            self._busy = False
            if self._queue:  # arrived meanwhile: a task of its own carries them
                self._busy = True
                self._task = asyncio.ensure_future(self._drain())
        if refused is not None and refused[0] is not None:
            raise refused[0]

    async def close(self) -> None:
        """Wait until everything queued has been sent (or failed)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    refused = await self._send([item for item, _ in batch])
                except Exception as exc:
                    for entry in batch:
                        _settle(entry, exc)
                    continue
                for i, entry in enumerate(batch):
                    _settle(entry, None if refused is None else refused[i])
        finally:
            self._task = None
            self._busy = False
            # Cancelled (the loop is closing): whoever still waits is told so.
            for _, done in [*batch, *self._queue]:
                done.cancel()
            self._queue = []


def _settle(entry: tuple[T, asyncio.Future[None]], error: Exception | None) -> None:
    done = entry[1]
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
        done.exception()  # a caller that stopped waiting is not warned of it
