"""``orchestrator verify``: the chains of one stream, or of the whole store, its
checkpoints' signatures, and the head an auditor notes down and later holds it to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore import EventLog, NotedHead, PublicKeys, VerifyReport
from orchestrator.audit.checks import EXIT_CHAIN_BROKEN, EXIT_OK
from orchestrator.audit.views import broken_json
from orchestrator.errors import OrchestratorError

__all__ = ["StoreVerification", "read_heads", "verify_store", "write_heads"]


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
        report = self.report
        broken = report.first_broken
        head = report.head
        return {
            "ok": report.ok,
            "stream_id": self.stream_id,
            "records_checked": report.records_checked,
            "streams_checked": report.streams_checked,
            "last_position": self.last_position,
            "last_hash": self.last_hash,
            "last_log_hash": head.log_hash if head is not None and head.log_hash else None,
            "log_chain": report.log_chain,
            "checkpoints": {
                "count": report.checkpoints,
                "signatures_checked": report.signatures_checked,
                "signed_through": report.signed_through,
                "unsigned_after": report.unsigned,
            },
            "first_broken": None if broken is None else broken_json(broken),
        }


async def verify_store(
    store: EventLog,
    stream_id: str | None = None,
    *,
    page_size: int = 2000,
    keys: PublicKeys | None = None,
    sealed: bool = False,
    against: NotedHead | None = None,
) -> StoreVerification:
    """Recompute the chains of one stream, or of the whole store in commit order.

    The whole store is also checked for gaps in its positions and along its store-wide
    chain: a deleted record is caught even when it was the last of its stream.
    """
    report = await store.verify(
        stream_id, page_size=page_size, keys=keys, sealed=sealed, against=against
    )
    return StoreVerification(report, stream_id)


def write_heads(path: str | Path, result: StoreVerification, store_url: str) -> dict[str, Any]:
    """Write the head of a verified store to ``path``, for an auditor to keep."""
    head = result.report.head
    if head is None:
        raise OrchestratorError("the store is empty: there is no head to note down")
    doc = {
        "store": store_url,
        "position": head.position,
        "log_hash": head.log_hash,
        "hash": head.hash,
        "stream_id": head.stream_id,
        "version": head.version,
    }
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OrchestratorError(f"cannot write the heads file {path}: {exc}") from exc
    return doc


def read_heads(path: str | Path) -> NotedHead:
    """The head noted in ``path`` by ``write_heads``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise OrchestratorError(f"cannot read the heads file {path}: {exc}") from exc
    except ValueError as exc:
        raise OrchestratorError(f"the heads file {path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise OrchestratorError(f"the heads file {path} must hold a JSON object")
    position, log_hash, hash_ = doc.get("position"), doc.get("log_hash"), doc.get("hash")
    if type(position) is not int or position < 1:
        raise OrchestratorError(f"the heads file {path}: position must be a positive integer")
    if not isinstance(log_hash, str) or not isinstance(hash_, str):
        raise OrchestratorError(f"the heads file {path}: log_hash and hash must be text")
    return NotedHead(position, log_hash, hash_)
