"""The event log as its consumers see it: a port to type against instead of ``EventStore``.

``EventStore`` satisfies it (tests pin that, by mypy and by signature); a consumer that
names ``EventLog`` can be handed a fake or a wrapper in tests without the database.
Opening and closing stay with whoever owns the store: they are not part of the port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Literal, Protocol, TypedDict, runtime_checkable

from ._checkpoints import PublicKeys
from ._records import AppendResult, ExpectedVersion, NewRecord, Record, StreamInfo
from ._verify import NotedHead, VerifyReport


class StoreHealth(TypedDict):
    """What ``health()`` found: a plain dict, ready for a health endpoint's JSON."""

    status: Literal["ok", "unavailable"]
    latency_ms: float
    """How long the probe took, answered or not."""
    error: str | None
    """Why the status is ``"unavailable"`` (``None`` when ``"ok"``)."""


@runtime_checkable
class EventLog(Protocol):
    """Append, read, follow and verify streams of hash-chained records.

    Each method means what ``EventStore``'s does (see docs/eventstore.md).
    """

    @property
    def url(self) -> str:
        """Where the log lives, for messages (``sqlite:///…``, ``postgresql://…``)."""

    async def append(
        self, stream_id: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append atomically if the stream's version is as expected, or raise
        ``ConcurrencyError`` (``InvalidRecordError`` for bad input); nothing is written
        then. ``StoreUnavailableError`` (from any method): the database cannot be reached;
        wait and retry."""

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int | None = None
    ) -> list[Record]:
        """One stream from ``from_version`` on, in version order."""

    async def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        types: Collection[str] | None = None,
    ) -> list[Record]:
        """Every stream after ``after_position``, in commit order."""

    def subscribe(
        self,
        after_position: int = 0,
        *,
        types: Collection[str] | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.25,
        retry_delay: float = 0.1,
        max_retry_delay: float = 5.0,
    ) -> AsyncIterator[Record]:
        """Every record after ``after_position``, the history then live, forever; through
        an outage of the database it waits and resumes where it was."""

    async def streams(
        self, prefix: str = "", *, after: str = "", limit: int = 1000
    ) -> list[StreamInfo]:
        """The streams whose id starts with ``prefix``, in id order, after ``after``."""

    async def last_position(self) -> int:
        """The position of the last record committed; 0 for an empty log."""

    async def health(self, timeout: float = 5.0) -> StoreHealth:
        """Whether the database answers a trivial query within ``timeout`` seconds; never
        raises."""

    async def verify(
        self,
        stream_id: str | None = None,
        *,
        page_size: int = 2000,
        keys: PublicKeys | None = None,
        sealed: bool = False,
        against: NotedHead | None = None,
    ) -> VerifyReport:
        """Recompute the chains of one stream or of the whole log (checkpoint signatures
        against ``keys``; ``sealed``: every record signed; ``against``: a noted head must
        still be there); the report's ``head`` is the last record that verified."""
