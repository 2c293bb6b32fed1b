"""Finding sagas to drive: those left unfinished in the store (recovery, at start) and
those other processes request through it (intake, a subscription to ``StartSaga``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from eventstore import EventLog
from orchestrator.core.commands import FinishSaga, StartSaga
from orchestrator.runtime.saga_log import STREAM_PREFIX, saga_of

__all__ = ["Recovery"]

logger = logging.getLogger("orchestrator")

SagaAction = Callable[[str], Awaitable[None]]


class Recovery:
    """Hands each saga that needs an engine to ``pick_up`` (requested, not started) or
    ``reissue`` (started, not finished)."""

    def __init__(
        self,
        store: EventLog,
        pick_up: SagaAction,
        reissue: SagaAction,
        *,
        poll_interval: float,
        page_size: int = 500,
    ) -> None:
        self._store = store
        self._pick_up = pick_up
        self._reissue = reissue
        self._poll_interval = poll_interval
        self._page_size = page_size

    async def recover(self) -> None:
        """Resume every saga of the store that is not finished, a page at a time."""
        after = ""
        while True:
            page = await self._store.streams(STREAM_PREFIX, after=after, limit=self._page_size)
            for info in page:
                if info.last_type == FinishSaga.type_name:
                    continue
                saga_id = saga_of(info.stream_id)
                if info.last_type == StartSaga.type_name:
                    await self._pick_up(saga_id)
                else:
                    await self._reissue(saga_id)
            if len(page) < self._page_size:
                return
            after = page[-1].stream_id

    async def intake(self, after_position: int) -> None:
        """Start every saga requested after ``after_position``, until cancelled."""
        async for record in self._store.subscribe(
            after_position, types={StartSaga.type_name}, poll_interval=self._poll_interval
        ):
            try:
                await self._pick_up(saga_of(record.stream_id))
            except Exception:
                logger.exception("could not start saga of %s", record.stream_id)
