"""``orchestrator verify``: the chain of one stream, or of the whole store, and its head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventstore import EventLog, VerifyReport
from orchestrator.audit.checks import EXIT_CHAIN_BROKEN, EXIT_OK
from orchestrator.audit.views import broken_json

__all__ = ["StoreVerification", "verify_store"]


@dataclass(frozen=True, slots=True)
class StoreVerification:
    """``orchestrator verify``: the chain report and the head it ends on."""

    report: VerifyReport
    stream_id: str | None

    @property
    def last_position(self) -> int:
        """Position of the last record verified (0: none)."""
        return 0 if self.report.head is None else self.report.head.position

    @property
    def last_hash(self) -> str | None:
        """Hash of the last record verified: note it down to detect a truncation later."""
        return None if self.report.head is None else self.report.head.hash

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.report.ok else EXIT_CHAIN_BROKEN

    def to_json(self) -> dict[str, Any]:
        broken = self.report.first_broken
        return {
            "ok": self.report.ok,
            "stream_id": self.stream_id,
            "records_checked": self.report.records_checked,
            "streams_checked": self.report.streams_checked,
            "last_position": self.last_position,
            "last_hash": self.last_hash,
            "first_broken": None if broken is None else broken_json(broken),
        }


async def verify_store(
    store: EventLog, stream_id: str | None = None, *, page_size: int = 2000
) -> StoreVerification:
    """Recompute the chain of one stream, or of the whole store in commit order.

    The whole store is also checked for gaps in its positions (``ChainVerifier``'s
    ``contiguous``): a deleted record is caught even when it was the last of its stream.
    """
    return StoreVerification(await store.verify(stream_id, page_size=page_size), stream_id)
