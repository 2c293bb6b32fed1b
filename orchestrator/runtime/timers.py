"""The engine's timer queue: one task, one heap, on the injected clock.

What the timers are for, and how they survive a crash, is the scheduler's business
(``scheduler``); this only runs callbacks at their time, never cancelled. A callback
that fails with one of ``retry_on`` (the store is unreachable) runs again later, with
backoff, until it works: an outage delays a timer, it does not lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

from orchestrator.runtime.backoff import Backoff
from orchestrator.runtime.clock import Clock

logger = logging.getLogger("orchestrator")

Callback = Callable[[], Awaitable[None]]


class TimerQueue:
    """One task sleeping until the earliest timer, then running its callback."""

    def __init__(self, clock: Clock, *, retry_on: tuple[type[Exception], ...] = ()) -> None:
        self._clock = clock
        self._retry_on = retry_on
        self._heap: list[tuple[float, int, Callback]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callback) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), callback))
        if self._heap[0][2] is callback:
            self._changed.set()

    async def run(self) -> None:
        while True:
            if not self._heap:
                self._changed.clear()
                await self._changed.wait()
                continue
            due = self._heap[0][0]
            delay = due - self._clock.now()
            if delay > 0:
                self._changed.clear()
                sleeper = asyncio.ensure_future(self._clock.sleep(delay))
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in (sleeper, changed):
                        waiter.cancel()
                continue
            _, _, callback = heapq.heappop(self._heap)
            task = asyncio.create_task(self._fire(callback, Backoff(initial=0.5, cap=10.0)))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _fire(self, callback: Callback, backoff: Backoff) -> None:
        try:
            await callback()
        except self._retry_on as exc:  # an outage: the same reminder, a little later
            delay = backoff.next_delay()
            logger.debug("a timer callback will run again in %.1fs: %s", delay, exc)

            async def again() -> None:
                await self._fire(callback, backoff)

            self.call_at(self._clock.now() + delay, again)
        except Exception:
            logger.exception("a timer callback failed")

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
