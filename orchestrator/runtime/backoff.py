"""Waiting out an outage: exponential backoff with jitter, so a stopped server is not
hammered and many engines do not retry in step."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays of ``initial``, doubling up to ``cap`` seconds, each shortened by up to
    ``jitter`` of itself. One per outage: a new operation starts a new one."""

    initial: float = 0.1
    cap: float = 5.0
    jitter: float = 0.5
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * 2.0**self._attempt)
        self._attempt += 1
        return base * (1.0 - self.jitter * random.random())

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())

    @property
    def attempts(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempt
