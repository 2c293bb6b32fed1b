"""Waiting for a saga to end, whichever engine runs it."""

from __future__ import annotations

import asyncio

from orchestrator.core.state import SagaState
from orchestrator.runtime.saga_log import SagaLog

__all__ = ["Waiters"]


class Waiters:
    """Callers of ``wait``: woken at once when this engine ends the saga, and looking at
    the log every ``poll_interval`` for sagas another engine is running."""

    def __init__(self, log: SagaLog, *, poll_interval: float) -> None:
        self._log = log
        self._poll_interval = poll_interval
        self._futures: dict[str, list[asyncio.Future[SagaState]]] = {}

    async def wait(self, saga_id: str, timeout: float | None = None) -> SagaState:
        """The saga's state once it is completed, compensated or failed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        future: asyncio.Future[SagaState] = loop.create_future()
        self._futures.setdefault(saga_id, []).append(future)
        try:
            fresh = False  # later rounds read the log: another engine may be running it
            while True:
                state = (await self._log.load(saga_id, fresh=fresh)).state
                fresh = True
                if state is not None and state.is_terminal:
                    return state
                left = self._poll_interval
                if deadline is not None:
                    left = min(left, deadline - loop.time())
                    if left <= 0:
                        raise TimeoutError(f"saga {saga_id!r} is not finished after {timeout}s")
                done, _ = await asyncio.wait({future}, timeout=left)
                if done:
                    return future.result()
        finally:
            futures = self._futures.get(saga_id, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._futures.pop(saga_id, None)

    def finished(self, state: SagaState) -> None:
        """Wake the callers waiting for ``state``'s saga, which is terminal."""
        for future in self._futures.get(state.saga_id, []):
            if not future.done():
                future.set_result(state)
